//! The threads that run the timed steps and the shadow attempts of a sync `Flags.call`.
//!
//! A step with a timeout runs the user's function on a worker and waits for it at most that
//! long, with the GIL released. A Python function cannot be cancelled, so a late one is
//! abandoned: it runs to its end on its worker, whose result is then dropped.
//!
//! Workers are Python daemon threads (`flagrail._call._work`) that take their jobs here
//! ([`_next_call_job`], which waits with the GIL released) and run them in Python, so the
//! interpreter knows them and nothing but Python and C frames is on their stack while they
//! run user code (a daemon thread is stopped at interpreter exit by unwinding its stack). Once
//! the interpreter is exiting ([`_stop_call_threads`], from `atexit`), an idle worker that
//! wakes up never attaches again.
//!
//! Bounds: at most [`call_threads`] workers per process (`FLAGRAIL_CALL_THREADS`, default
//! [`DEFAULT_CALL_THREADS`]), busy or idle. A job never waits behind another one: it goes to
//! an idle worker or a new one, and when every worker is busy (in practice: stuck in
//! attempts that outlived their timeouts, on a hung provider) it is refused at once
//! ([`Submitted::Refused`]) and the step fails with kind `timeout` without running. An idle
//! worker exits after [`IDLE`]; the pool grows again on demand.
//!
//! The hand-off costs two thread wake-ups. Both sides spin for a few microseconds before
//! they sleep on a condition variable, so that a function that returns quickly does not pay
//! for the scheduler (bench/python_call.py, docs/benchmarks.md).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyTuple};

/// Workers when `FLAGRAIL_CALL_THREADS` is unset or not a whole number of 1 or more.
pub(crate) const DEFAULT_CALL_THREADS: usize = 256;
/// The environment variable that sets the cap.
pub(crate) const CALL_THREADS_VARIABLE: &str = "FLAGRAIL_CALL_THREADS";
/// How long an idle worker waits for work before it exits.
const IDLE: Duration = Duration::from_secs(30);
/// How long each side spins before it sleeps (a quick function returns within it).
const SPIN: Duration = Duration::from_micros(50);

static START_WORKER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Set once the interpreter is exiting: workers that wake up then never attach again.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// A job as a worker thread receives it: `(callable, args, slot or None)`.
type JobTuple = (Py<PyAny>, Py<PyTuple>, Option<PySlot>);

/// What a worker runs: `callable(*args)`, its result to `slot` when someone waits for it.
struct Job {
    callable: Py<PyAny>,
    args: Py<PyTuple>,
    slot: Option<Arc<Slot>>,
}

/// Where the result of a waited-for job goes.
struct Slot {
    state: AtomicU8,
    result: Mutex<Option<PyResult<Py<PyAny>>>>,
    done: Condvar,
}

const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

impl Slot {
    fn new() -> Arc<Slot> {
        Arc::new(Slot {
            state: AtomicU8::new(RUNNING),
            result: Mutex::new(None),
            done: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<PyResult<Py<PyAny>>>> {
        self.result.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The worker's side, with the GIL released: keeps the result for the caller, or hands it
    /// back when the caller has given up (to be dropped with the GIL).
    fn fill(&self, result: PyResult<Py<PyAny>>) -> Result<(), PyResult<Py<PyAny>>> {
        let mut kept = self.lock();
        if self.state.load(Ordering::Acquire) == ABANDONED {
            return Err(result);
        }
        *kept = Some(result);
        self.state.store(DONE, Ordering::Release);
        drop(kept);
        self.done.notify_one();
        Ok(())
    }

    /// The caller's side, without the GIL: the result, or `None` at `timeout` (the job is
    /// then abandoned: its result will be dropped by the worker).
    fn wait(&self, timeout: Duration) -> Option<PyResult<Py<PyAny>>> {
        let started = Instant::now();
        let spin_until = started + SPIN.min(timeout);
        while Instant::now() < spin_until {
            if self.state.load(Ordering::Acquire) == DONE {
                return self.lock().take();
            }
            // Yield rather than burn the core: on a busy machine the worker needs it.
            std::thread::yield_now();
        }
        let deadline = started + timeout;
        let mut kept = self.lock();
        loop {
            if let Some(result) = kept.take() {
                return Some(result);
            }
            let now = Instant::now();
            if now >= deadline {
                self.state.store(ABANDONED, Ordering::Release);
                return None;
            }
            kept = self
                .done
                .wait_timeout(kept, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

/// Whether a job was handed to a worker.
enum Submitted {
    Started,
    /// Every one of the `cap` workers is busy.
    Refused {
        cap: usize,
    },
}

struct State {
    queue: VecDeque<Job>,
    /// Workers waiting for work.
    idle: usize,
    /// Workers alive, busy or idle.
    threads: usize,
}

struct Pool {
    cap: usize,
    state: Mutex<State>,
    work: Condvar,
}

/// The pool of this process; replaced in a forked child (its workers did not survive fork).
static POOL: Mutex<Option<Arc<Pool>>> = Mutex::new(None);

/// The cap on workers: `FLAGRAIL_CALL_THREADS`, read once per process.
pub(crate) fn call_threads() -> usize {
    static CAP: OnceLock<usize> = OnceLock::new();
    *CAP.get_or_init(|| {
        std::env::var(CALL_THREADS_VARIABLE)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n >= 1)
            .unwrap_or(DEFAULT_CALL_THREADS)
    })
}

fn pool() -> Arc<Pool> {
    let mut current = POOL.lock().unwrap_or_else(|p| p.into_inner());
    Arc::clone(current.get_or_insert_with(|| {
        Arc::new(Pool {
            cap: call_threads(),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                idle: 0,
                threads: 0,
            }),
            work: Condvar::new(),
        })
    }))
}

/// Forgets the worker threads of sync ``call`` after ``fork()`` in the child (they did not
/// survive it). Registered by ``flagrail._call``; not meant to be called directly.
// The next job starts a pool of its own.
#[pyfunction]
pub(crate) fn _forget_call_threads() {
    // Only the forking thread exists in the child; never block it on a lock a vanished
    // thread held at the fork.
    if let Ok(mut current) = POOL.try_lock() {
        *current = None;
    }
}

/// The interpreter is exiting: idle worker threads of sync ``call`` never attach to it
/// again. Registered with ``atexit`` by ``flagrail._call``; not meant to be called directly.
// Idle workers that wake up from now on stay parked instead of attaching to a finalizing
// interpreter.
#[pyfunction]
pub(crate) fn _stop_call_threads() {
    STOPPING.store(true, Ordering::SeqCst);
    if let Ok(current) = POOL.try_lock() {
        if let Some(pool) = current.as_ref() {
            pool.work.notify_all();
        }
    }
}

/// The next job of a worker thread of sync ``call``, waited for with the GIL released, or
/// ``None`` when the worker has idled long enough. ``done`` is ``[]`` or the outcome of the
/// job just run, ``[slot, ok, value]``, emptied here. Not public API.
// The loop is `flagrail._call._work`; a job is `(callable, args, slot or None)`. The outcome
// goes to its slot only once this thread has released the GIL, so that the caller waiting
// for it (spinning, see `Slot::wait`) takes the GIL back at once instead of sleeping until
// this worker lets go of it.
#[pyfunction]
pub(crate) fn _next_call_job(
    py: Python<'_>,
    done: &Bound<'_, PyList>,
) -> PyResult<Option<JobTuple>> {
    let finished = if done.len() == 3 {
        let slot = done.get_item(0)?;
        let ok = done.get_item(1)?.is_truthy()?;
        let value = done.get_item(2)?;
        let result = if ok {
            Ok(value.unbind())
        } else {
            Err(PyErr::from_value(value))
        };
        let slot = slot
            .cast::<PySlot>()
            .ok()
            .map(|s| Arc::clone(&s.get().inner));
        done.del_slice(0, 3)?;
        Some((slot, result))
    } else {
        None
    };
    let pool = pool();
    let unclaimed = py.detach(|| {
        let (slot, result) = finished?;
        // Idle before the caller resumes: a caller whose next step comes at once finds this
        // worker instead of starting another.
        pool.lock().idle += 1;
        match slot {
            Some(slot) => slot.fill(result).err(),
            // A shadow's outcome is recorded by the shadow itself.
            None => Some(result),
        }
    });
    // Dropped with the GIL.
    drop(unclaimed);
    let job = py.detach(|| {
        let job = pool.next_job();
        if STOPPING.load(Ordering::SeqCst) {
            // Attaching to an interpreter that is being finalized can crash it; this thread
            // is a daemon that nothing waits for.
            loop {
                std::thread::park();
            }
        }
        job
    });
    Ok(job.map(|job| {
        (
            job.callable,
            job.args,
            job.slot.map(|inner| PySlot { inner }),
        )
    }))
}

/// Where a worker reports the result of a job someone waits for. Not public API.
#[pyclass(frozen, module = "flagrail._flagrail", name = "_Slot")]
pub struct PySlot {
    inner: Arc<Slot>,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job` for an idle worker, or hands it back when there is none.
    fn try_hand(&self, job: Job) -> Result<(), Job> {
        let mut state = self.lock();
        if state.queue.len() < state.idle {
            state.queue.push_back(job);
            drop(state);
            self.work.notify_one();
            return Ok(());
        }
        Err(job)
    }

    fn submit(&self, py: Python<'_>, job: Job) -> Submitted {
        let mut state = self.lock();
        if state.queue.len() < state.idle {
            state.queue.push_back(job);
            drop(state);
            self.work.notify_one();
            return Submitted::Started;
        }
        if state.threads >= self.cap {
            return Submitted::Refused { cap: self.cap };
        }
        state.threads += 1;
        state.queue.push_back(job);
        // Counted as idle until it takes its first job: the next submission spawns another.
        state.idle += 1;
        drop(state);
        let started = START_WORKER
            .import(py, "flagrail._call", "_start_worker")
            .and_then(|start| start.call0());
        if let Err(err) = started {
            err.write_unraisable(py, None);
            let mut state = self.lock();
            state.threads -= 1;
            state.idle -= 1;
            // The job stays queued only if another idle worker will take it.
            if state.queue.len() > state.idle {
                let job = state.queue.pop_back();
                drop(state);
                drop(job);
                return Submitted::Refused { cap: self.cap };
            }
        }
        Submitted::Started
    }

    /// The next job, or `None` when the worker has idled for [`IDLE`] (it is then gone).
    /// A worker is counted idle from its start (see `submit`) and from the end of each job
    /// (`_call_job_done`).
    fn next_job(&self) -> Option<Job> {
        // A job submitted right after the last one ended is taken without sleeping.
        let spin_until = Instant::now() + SPIN;
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                state.idle -= 1;
                return Some(job);
            }
            if STOPPING.load(Ordering::SeqCst) {
                return None;
            }
            if Instant::now() < spin_until {
                drop(state);
                std::thread::yield_now();
                state = self.lock();
                continue;
            }
            let (next, waited) = self
                .work
                .wait_timeout(state, IDLE)
                .unwrap_or_else(|p| p.into_inner());
            state = next;
            if waited.timed_out() && state.queue.is_empty() {
                state.idle -= 1;
                state.threads -= 1;
                return None;
            }
        }
    }
}

/// How a timed step ended.
pub(crate) enum Timed {
    /// The function returned or raised in time.
    Returned(PyResult<Py<PyAny>>),
    /// It was still running at the timeout: abandoned.
    Late,
    /// No worker was free (every one of `cap` is busy): the function was not called.
    Refused { cap: usize },
}

/// Runs `callable(*args)` on a worker and waits at most `timeout` for it, with the GIL
/// released.
pub(crate) fn run_timed(
    py: Python<'_>,
    timeout: Duration,
    callable: Py<PyAny>,
    args: Py<PyTuple>,
) -> Timed {
    let slot = Slot::new();
    let job = Job {
        callable,
        args,
        slot: Some(Arc::clone(&slot)),
    };
    let pool = pool();
    // The common case: an idle worker takes the job while this thread has already released
    // the GIL, so the worker finds it free instead of sleeping until it is.
    let handed = py.detach(|| match pool.try_hand(job) {
        Ok(()) => Ok(slot.wait(timeout)),
        Err(job) => Err(job),
    });
    let waited = match handed {
        Ok(waited) => waited,
        Err(job) => {
            // No idle worker: starting one needs the interpreter.
            if let Submitted::Refused { cap } = pool.submit(py, job) {
                return Timed::Refused { cap };
            }
            py.detach(|| slot.wait(timeout))
        }
    };
    match waited {
        Some(result) => Timed::Returned(result),
        None => Timed::Late,
    }
}

/// Runs `callable(*args)` on a worker without waiting for it; `false` when no worker was
/// free.
pub(crate) fn spawn(py: Python<'_>, callable: Py<PyAny>, args: Py<PyTuple>) -> bool {
    let job = Job {
        callable,
        args,
        slot: None,
    };
    matches!(pool().submit(py, job), Submitted::Started)
}
