//! `fork()` with live handles (gunicorn `--preload`, celery prefork, `multiprocessing` with
//! `fork`): the three hooks the package registers with `os.register_at_fork`.
//!
//! - `_before_fork` takes every lock of every live handle (the core's
//!   [`flagrail_core::Flags::hold_for_fork`], and the handle's fleet slot) so that no other
//!   thread — the application's, or a fleet's — is halfway through an update at the instant
//!   of the fork. It never blocks while holding the interpreter: a
//!   hold that meets a busy lock lets go of everything, detaches, and tries again, for at
//!   most [`FORK_WAIT`].
//! - `_after_fork_in_parent` lets go.
//! - `_after_fork_in_child` lets go (the child's copies of the locks were held by this very
//!   thread, the only one the child has), starts the child's metrics from zero
//!   ([`flagrail_core::Flags::forget_parent_counts`]), then restarts what threads did in the
//!   parent: reload watchers and pollers, and the fleet's state and thread.
//!
//! `unsafe` here only widens the lifetime of lock guards kept between two hooks, next to the
//! `Arc` that keeps their locks alive (see [`hold`]).
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use flagrail_core::runtime::{try_hold, ForkHold};
use pyo3::prelude::*;

use crate::handle::{live_handles, try_registry, FleetEntry, Inner, Registry};

/// How long `_before_fork` waits for locks other threads hold (each is held for one update,
/// or for one Redis round trip of a budget lease, which its timeouts bound). Past it the fork
/// goes ahead unheld, as it would without these hooks.
const FORK_WAIT: Duration = Duration::from_secs(2);

/// Between two attempts at holding every lock, with the interpreter released.
const RETRY_PAUSE: Duration = Duration::from_micros(200);

/// One handle's locks, held from `_before_fork` to the after-fork hook of this thread.
struct Held {
    // Fields drop in order: the guards before the handle they borrow from.
    runtime: ForkHold<'static>,
    fleet: MutexGuard<'static, Option<FleetEntry>>,
    handle: Arc<Inner>,
}

/// Everything `_before_fork` took: the registry of handles (so that no constructor is halfway
/// through adding one) and each handle's locks.
struct HeldAcrossFork {
    handles: Vec<Held>,
    _registry: Registry,
}

thread_local! {
    /// The forking thread's holds, between the before and after hooks. Thread-local: the
    /// hooks of one fork run on one thread, which is also the child's only thread.
    static HELD: RefCell<Option<HeldAcrossFork>> = const { RefCell::new(None) };
}

/// Every lock of `inner`, if no other thread holds one.
fn hold(inner: &Arc<Inner>) -> Option<Held> {
    let handle = Arc::clone(inner);
    let runtime = handle.core.hold_for_fork()?;
    let fleet = try_hold(handle.fleet.slot())?;
    // SAFETY: both guards borrow from `handle`'s heap allocation (the core handle and the
    // fleet slot inside the `Inner` that the `Arc` owns), which `Held` keeps alive and never
    // moves; `Held` drops the guards before that `Arc`. Only the lifetime changes.
    unsafe {
        let runtime = std::mem::transmute::<ForkHold<'_>, ForkHold<'static>>(runtime);
        let fleet = std::mem::transmute::<
            MutexGuard<'_, Option<FleetEntry>>,
            MutexGuard<'static, Option<FleetEntry>>,
        >(fleet);
        Some(Held {
            runtime,
            fleet,
            handle,
        })
    }
}

/// Every lock of every live handle; all or nothing.
fn hold_all(handles: &[Arc<Inner>]) -> Option<Vec<Held>> {
    handles.iter().map(hold).collect()
}

fn release() {
    HELD.with(|held| held.borrow_mut().take());
}

/// [`release`] in the child. A handle the application dropped while the fork was under way is
/// kept only by the hold: it is leaked rather than dropped, because dropping it would join
/// its fleet thread, which only exists in the parent.
fn release_in_child() {
    let Some(all) = HELD.with(|held| held.borrow_mut().take()) else {
        return;
    };
    for held in all.handles {
        let Held {
            runtime,
            fleet,
            handle,
        } = held;
        drop(runtime);
        drop(fleet);
        if Arc::strong_count(&handle) == 1 {
            std::mem::forget(handle);
        }
    }
}

/// Takes every lock of every live ``Flags`` before a ``fork()``, so that the child starts
/// with none held by a thread it does not have.
///
/// Registered by the package with ``os.register_at_fork(before=...)``; not meant to be called
/// directly.
#[pyfunction]
pub(crate) fn _before_fork(py: Python<'_>) {
    release();
    let deadline = Instant::now() + FORK_WAIT;
    loop {
        if let Some(registry) = try_registry() {
            if let Some(holds) = hold_all(&live_handles(&registry)) {
                let all = HeldAcrossFork {
                    handles: holds,
                    _registry: registry,
                };
                HELD.with(|held| *held.borrow_mut() = Some(all));
                return;
            }
        }
        if Instant::now() >= deadline {
            return;
        }
        // Detached: the thread holding the lock may need the interpreter to finish.
        py.detach(|| std::thread::sleep(RETRY_PAUSE));
    }
}

/// Lets go of what ``_before_fork`` took, in the parent.
///
/// Registered by the package with ``os.register_at_fork(after_in_parent=...)``; not meant to
/// be called directly.
#[pyfunction]
pub(crate) fn _after_fork_in_parent() {
    release();
}

/// Lets go of what ``_before_fork`` took, starts every live ``Flags``' metrics from zero in
/// a forked child, restarts their reload watchers and pollers, attaches a fresh fleet state
/// where the parent shared one, and draws a new seed for run ids.
///
/// Registered by the package with ``os.register_at_fork(after_in_child=...)``; not meant to be
/// called directly.
#[pyfunction]
pub(crate) fn _after_fork_in_child() {
    release_in_child();
    crate::live::forget_listeners_after_fork();
    // The child must not repeat the parent's run ids.
    flagrail_core::runtime::reseed_run_ids();
    // Free unless `_before_fork` gave up waiting; never block a child on it.
    let handles = try_registry().map_or_else(Vec::new, |registry| live_handles(&registry));
    for inner in handles {
        // Metrics are per process (a fleet adds them up): the parent's stay the parent's.
        inner.core.forget_parent_counts();
        // `is_watching` is the parent's state, copied by fork: restart what was running.
        if inner.core.is_watching() {
            inner.core.start_watching(inner.poll_interval);
        }
        crate::fleet::after_fork(&inner);
    }
}

/// Holds every lock of ``flags`` on a new thread for ``seconds``, and returns once they are
/// held: the state a fork meets when another thread is inside an update. For tests.
#[pyfunction]
pub(crate) fn _hold_locks_for_tests(
    py: Python<'_>,
    flags: &Bound<'_, crate::live::Flags>,
    seconds: f64,
) -> PyResult<()> {
    let inner = flags.get().inner_arc();
    let duration = Duration::try_from_secs_f64(seconds)
        .map_err(|err| crate::error::invalid_argument(py, format!("seconds: {err}")))?;
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("flagrail-test-hold".into())
        .spawn(move || {
            let started = Instant::now();
            let hold = loop {
                if let Some(hold) = hold(&inner) {
                    break Some(hold);
                }
                if started.elapsed() > FORK_WAIT {
                    break None;
                }
                std::thread::sleep(RETRY_PAUSE);
            };
            let _ = held_tx.send(hold.is_some());
            if hold.is_some() {
                std::thread::sleep(duration);
            }
            drop(hold);
        })
        .map_err(|err| pyo3::exceptions::PyRuntimeError::new_err(err.to_string()))?;
    match py.detach(move || held_rx.recv()) {
        Ok(true) => Ok(()),
        _ => Err(pyo3::exceptions::PyRuntimeError::new_err(
            "could not take the handle's locks",
        )),
    }
}
