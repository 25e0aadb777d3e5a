//! A file source kept live: loading a file into a handle, and the background thread that polls
//! it and reloads it when it changes.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::live::handle::{Flags, LoadState, Shared};
use crate::live::source::{
    fingerprint, load_file, rewrite_in_progress, FileOptions, Fingerprint, SourceKind,
};
use crate::time::Millis;

/// The longest a signature mismatch is put down to a rewrite in progress (a kill that has
/// replaced the document but not yet its `.sig`) before it is reported: a writer that died
/// holding the lock must not hide a bad pair for ever.
const REWRITE_GRACE_MILLIS: Millis = 5_000;

impl Flags {
    /// Loads a file, watching it for changes.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Flags> {
        Self::from_file_with(path, FileOptions::default())
    }

    /// Loads a file with options: watching, poll interval, clock, and a signature check
    /// ([`FileOptions::verifier`]: the document must carry a matching `<path>.sig`, or this
    /// fails with `SIGNATURE_INVALID`).
    pub fn from_file_with(path: impl AsRef<Path>, options: FileOptions) -> Result<Flags> {
        let path = path.as_ref().to_path_buf();
        let before = fingerprint(&path, options.verifier.is_some());
        let document = load_file(&path, options.verifier.as_deref())?;
        let mut flags = Flags::new(document, SourceKind::File(path), options.clock, before);
        // Just created: this is the only reference.
        if let Some(shared) = Arc::get_mut(&mut flags.shared) {
            shared.verifier = options.verifier;
        }
        if options.reload {
            flags.start_watching(options.poll_interval);
        }
        Ok(flags)
    }

    /// Checks a file source now and reloads it when it changed. Returns whether a new document
    /// went live. Static sources return `Ok(false)`.
    pub fn reload_if_changed(&self) -> Result<bool> {
        reload_if_changed(&self.shared)
    }

    /// Starts (or restarts) the background watcher of a file source. A restart stops the
    /// previous watcher first. After `fork()` the child has no watcher thread: call this in the
    /// child to resume reloading there (the bindings do it automatically).
    pub fn start_watching(&self, interval: Duration) {
        if let Some(external) = &self.shared.external {
            self.start_polling(Arc::clone(external));
            return;
        }
        let SourceKind::File(_) = &self.shared.source else {
            return;
        };
        let generation = self
            .shared
            .watcher_generation
            .fetch_add(1, Ordering::SeqCst)
            + 1;
        self.shared.watching.store(true, Ordering::SeqCst);
        if !shared_watcher::watch(Arc::downgrade(&self.shared), generation, interval) {
            self.shared.watching.store(false, Ordering::SeqCst);
        }
    }

    /// Stops the background watcher or poller, if any.
    pub fn stop_watching(&self) {
        self.shared
            .watcher_generation
            .fetch_add(1, Ordering::SeqCst);
        self.shared.watching.store(false, Ordering::SeqCst);
    }

    /// Whether a watcher was started for this handle (in this process).
    pub fn is_watching(&self) -> bool {
        self.shared.watching.load(Ordering::SeqCst)
    }
}

fn reload_if_changed(shared: &Arc<Shared>) -> Result<bool> {
    let SourceKind::File(path) = &shared.source else {
        return Ok(false);
    };
    let signed = shared.verifier.is_some();
    // Taken before reading: a change during the read shows at the next check.
    let current = fingerprint(path, signed);
    if current.is_some() && current == shared.state.load().fingerprint {
        let now = shared.clock.now_millis();
        shared.state.rcu(|state| LoadState {
            last_check: Some(now),
            ..LoadState::clone(state)
        });
        return Ok(false);
    }
    shared.state.rcu(|state| LoadState {
        fingerprint: current,
        ..LoadState::clone(state)
    });
    let flags = Flags {
        shared: Arc::clone(shared),
    };
    let loaded = load_file(path, shared.verifier.as_deref());
    if matches!(loaded, Err(Error::SignatureInvalid { .. })) && pair_in_flux(shared, path, current)
    {
        // Not a verdict yet: look at the pair again at the next check.
        return Ok(false);
    }
    shared.state.rcu(|state| LoadState {
        mismatch_deferred_since: None,
        ..LoadState::clone(state)
    });
    flags.apply(loaded).map(|_| true)
}

/// Whether a signature mismatch is a pair caught half-written rather than a bad pair: the
/// document or its `.sig` changed while they were read, or a rewrite (`flagrail kill`) holds
/// the document's lock between replacing the two. Then nothing is reported and the fingerprint
/// is forgotten, so the next check reads the pair again; the live document stays either way.
/// Bounded by [`REWRITE_GRACE_MILLIS`].
fn pair_in_flux(shared: &Shared, path: &Path, read: Option<Fingerprint>) -> bool {
    let now = shared.clock.now_millis();
    let changed = fingerprint(path, true) != read;
    if !changed && !rewrite_in_progress(path) {
        return false;
    }
    let since = shared.state.load().mismatch_deferred_since.unwrap_or(now);
    if now.saturating_sub(since) > REWRITE_GRACE_MILLIS {
        return false;
    }
    shared.state.rcu(|state| LoadState {
        fingerprint: None,
        last_check: Some(now),
        mismatch_deferred_since: Some(since),
        ..LoadState::clone(state)
    });
    true
}

/// One watcher thread for every watched file of the process (issue 13: a thread per handle
/// meant 1,300 threads for 1,300 dropped Node handles).
///
/// The registry is copy-on-write behind an `ArcSwap`, not a mutex: a process may fork while
/// the watcher thread updates it, and a mutex held at that instant would stay locked forever
/// in the child. Threads do not survive `fork()`, so the thread is tied to the pid that
/// started it: a child's first `start_watching` (the bindings call it after a fork) finds a
/// different pid and starts its own thread.
mod shared_watcher {
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use std::sync::{Arc, OnceLock, Weak};
    use std::thread;
    use std::time::{Duration, Instant};

    use arc_swap::{ArcSwap, ArcSwapOption};

    use crate::live::handle::Shared;

    /// The longest the thread sleeps: how soon it notices a registry emptied by drops.
    const MAX_SLEEP: Duration = Duration::from_millis(250);

    struct Entry {
        shared: Weak<Shared>,
        generation: u64,
        interval: Duration,
        /// When the next check is due, in nanoseconds since [`epoch`].
        due: AtomicU64,
    }

    impl Entry {
        fn live(&self) -> Option<Arc<Shared>> {
            let shared = self.shared.upgrade()?;
            (shared.watcher_generation.load(Ordering::SeqCst) == self.generation).then_some(shared)
        }
    }

    static REGISTRY: OnceLock<ArcSwap<Vec<Arc<Entry>>>> = OnceLock::new();
    /// The pid whose watcher thread is running (0: none).
    static RUNNING_IN: AtomicU32 = AtomicU32::new(0);
    /// The running thread, to wake it when a handle is added.
    static THREAD: ArcSwapOption<thread::Thread> = ArcSwapOption::const_empty();

    fn registry() -> &'static ArcSwap<Vec<Arc<Entry>>> {
        REGISTRY.get_or_init(|| ArcSwap::from_pointee(Vec::new()))
    }

    fn epoch() -> Instant {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    fn nanos(at: Instant) -> u64 {
        at.saturating_duration_since(epoch()).as_nanos() as u64
    }

    /// Adds a handle (replacing its older registration); `false` when no thread could be
    /// started.
    pub(super) fn watch(shared: Weak<Shared>, generation: u64, interval: Duration) -> bool {
        let entry = Arc::new(Entry {
            shared,
            generation,
            interval,
            due: AtomicU64::new(nanos(Instant::now() + interval)),
        });
        registry().rcu(|current| {
            let mut next: Vec<Arc<Entry>> = current
                .iter()
                .filter(|e| !Weak::ptr_eq(&e.shared, &entry.shared) && e.live().is_some())
                .cloned()
                .collect();
            next.push(Arc::clone(&entry));
            next
        });
        ensure_thread()
    }

    fn ensure_thread() -> bool {
        let pid = std::process::id();
        let running = RUNNING_IN.load(Ordering::SeqCst);
        if running == pid {
            if let Some(thread) = THREAD.load_full() {
                thread.unpark();
            }
            return true;
        }
        // No thread in this process (first use, or a forked child): start one.
        if RUNNING_IN
            .compare_exchange(running, pid, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return true;
        }
        let spawned = thread::Builder::new()
            .name("flagrail-reload".to_string())
            .spawn(move || run(pid));
        match spawned {
            Ok(handle) => {
                THREAD.store(Some(Arc::new(handle.thread().clone())));
                true
            }
            Err(_) => {
                RUNNING_IN.store(0, Ordering::SeqCst);
                false
            }
        }
    }

    /// Called with an empty registry: the thread ends (no idle thread once every handle is
    /// dropped or closed) unless a handle was added meanwhile. Returns whether to go on.
    fn stay(pid: u32) -> bool {
        if RUNNING_IN
            .compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        // A `watch` between the emptiness check and the store above saw this thread running
        // and only woke it: take the registration back on, unless a new thread already did.
        !registry().load().is_empty()
            && RUNNING_IN
                .compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
    }

    fn run(pid: u32) {
        loop {
            if RUNNING_IN.load(Ordering::SeqCst) != pid {
                return;
            }
            let entries = registry().load_full();
            let mut dead = false;
            let mut next_wake = Instant::now() + MAX_SLEEP;
            for entry in entries.iter() {
                let Some(shared) = entry.live() else {
                    dead = true;
                    continue;
                };
                let now = Instant::now();
                if nanos(now) >= entry.due.load(Ordering::Relaxed) {
                    // Errors are recorded in the status and sent to listeners by `apply`.
                    let _ = super::reload_if_changed(&shared);
                    entry
                        .due
                        .store(nanos(Instant::now() + entry.interval), Ordering::Relaxed);
                }
                drop(shared);
                let due = epoch() + Duration::from_nanos(entry.due.load(Ordering::Relaxed));
                next_wake = next_wake.min(due);
            }
            if dead {
                registry().rcu(|current| {
                    current
                        .iter()
                        .filter(|e| e.live().is_some())
                        .cloned()
                        .collect::<Vec<_>>()
                });
            }
            if registry().load().is_empty() && !stay(pid) {
                return;
            }
            thread::park_timeout(next_wake.saturating_duration_since(Instant::now()));
        }
    }
}
