//! The live handle: the compiled document behind an `ArcSwap`, local kill overrides, sources
//! with hot reload, and status.
//!
//! Evaluation loads the current document with one atomic read and never waits for a reload: a
//! new document is read, validated and compiled on the reloading thread and swapped in whole. A
//! document that fails to load never replaces the last good one; the failure is kept in
//! [`Status`] until the next successful load.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use rustc_hash::FxHashMap;
use serde_json::{json, Value};

use crate::context::Context;
use crate::document::Document;
use crate::error::{Error, Result};
use crate::evaluate::{decision_json, At, Decision, KillSource, Now, Overlay, Reason};
use crate::runtime::budget::BudgetRef;
use crate::runtime::budget::{Budget, BudgetBook};
use crate::runtime::sticky::{conversation_of, PinEffect, PinLookup};
use crate::runtime::{Runtime, Trip};
use crate::time::{format_timestamp, now_millis, Millis};

/// How often a watched file is checked for changes. A change is live within one interval plus
/// the time to compile it.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A source of wall-clock time, injectable so that ramps can be tested.
pub trait Clock: Send + Sync {
    fn now_millis(&self) -> Millis;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> Millis {
        now_millis()
    }
}

/// A clock that only moves when told to (tests, simulations).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(at: Millis) -> Self {
        ManualClock(AtomicI64::new(at))
    }
    pub fn set(&self, at: Millis) {
        self.0.store(at, Ordering::SeqCst);
    }
    pub fn advance(&self, by: Millis) {
        self.0.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

impl Clock for Arc<ManualClock> {
    fn now_millis(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

struct ClockNow<'a>(&'a dyn Clock);

impl Now for ClockNow<'_> {
    #[inline]
    fn now(&self) -> Millis {
        self.0.now_millis()
    }
}

/// One local kill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalKill {
    pub reason: Option<String>,
    pub at: Millis,
}

/// What this process overlays on the document: kills applied with [`Flags::kill`] and
/// tripped guardrails. Neither touches the document.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub all: Option<LocalKill>,
    pub flags: FxHashMap<Box<str>, LocalKill>,
    /// Tripped (or half-open) guardrails by flag key.
    pub trips: FxHashMap<Arc<str>, Vec<Trip>>,
}

impl Overrides {
    fn is_empty(&self) -> bool {
        self.all.is_none() && self.flags.is_empty() && self.trips.is_empty()
    }
}

impl Overlay for Overrides {
    #[inline]
    fn all_killed(&self) -> bool {
        self.all.is_some()
    }
    #[inline]
    fn flag_killed(&self, flag: &str) -> bool {
        !self.flags.is_empty() && self.flags.contains_key(flag)
    }
    #[inline]
    fn trips(&self, flag: &str) -> &[Trip] {
        if self.trips.is_empty() {
            return &[];
        }
        self.trips.get(flag).map_or(&[], Vec::as_slice)
    }
    /// Budgets and pins are runtime state, not overrides: see [`LiveOverlay`].
    fn budget_exhausted(&self, _budget: &Budget, _scope: &str) -> bool {
        false
    }
    fn pin(&self, _flag: &crate::document::Flag, _conversation: &str) -> PinLookup {
        PinLookup::Absent
    }
}

/// Where the live document comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    Static,
    File(PathBuf),
    /// A source implemented outside the core ([`ExternalSource`]), by its description
    /// (`url:https://…`).
    External(String),
}

impl SourceKind {
    fn describe(&self) -> String {
        match self {
            SourceKind::Static => "static".to_string(),
            SourceKind::File(path) => format!("file:{}", path.display()),
            SourceKind::External(description) => description.clone(),
        }
    }
}

/// A source of documents that lives outside the core (the HTTP source of `flagrail-sources`),
/// so that network code never links into the evaluation path. The core owns its poller
/// thread: [`Flags::start_watching`] spawns one that calls [`ExternalSource::run`], and
/// [`Flags::stop_watching`] (a binding's `close()`), dropping the last handle, or a restart
/// after `fork()` ends it.
pub trait ExternalSource: Send + Sync + 'static {
    /// What `status()["source"]` says, such as `url:https://cdn.example/flags.json`.
    fn describe(&self) -> String;
    /// Source-specific state, reported as `status()["remote"]`.
    fn status_json(&self, now: Millis) -> Value;
    /// Polls until [`Poller::sleep`] or [`Poller::flags`] says to stop. Runs on a thread of
    /// its own; called again on a new thread after a restart (a forked child), so it must
    /// not reuse locks or connections a previous run may have held at the fork.
    fn run(&self, poller: Poller);
}

/// What a poller thread of an [`ExternalSource`] holds: a weak reference to the handle (so the
/// thread never keeps it alive) and the generation it was started for.
pub struct Poller {
    shared: Weak<Shared>,
    generation: u64,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("generation", &self.generation)
            .finish()
    }
}

/// How often a sleeping poller checks whether it was stopped: the bound on how long a closed
/// or dropped handle's poller thread outlives it.
const POLLER_STOP_CHECK: Duration = Duration::from_millis(50);

impl Poller {
    /// The handle, or `None` once it was dropped, closed or restarted: then stop.
    pub fn flags(&self) -> Option<Flags> {
        let shared = self.shared.upgrade()?;
        (shared.watcher_generation.load(Ordering::SeqCst) == self.generation)
            .then_some(Flags { shared })
    }

    /// Whether this poller should stop.
    pub fn stopped(&self) -> bool {
        self.flags().is_none()
    }

    /// Sleeps `duration` unless stopped first; returns `false` when the poller should stop.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = std::time::Instant::now() + duration;
        loop {
            if self.stopped() {
                return false;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return true;
            }
            thread::sleep(left.min(POLLER_STOP_CHECK));
        }
    }
}

/// The last failed load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFailure {
    pub at: Millis,
    pub error: Error,
}

/// What [`Flags::status`] reports.
#[derive(Debug, Clone)]
pub struct Status {
    pub source: String,
    /// What an external source reports about itself (URL, ETag, last success …).
    pub remote: Option<Value>,
    pub revision: String,
    /// When the live document was loaded.
    pub loaded_at: Millis,
    /// When the source was last checked (successfully read or not).
    pub last_check: Option<Millis>,
    /// The most recent failure since the live document was loaded, if any.
    pub last_error: Option<LoadFailure>,
    pub reloads: u64,
    pub rejected: u64,
    pub watching: bool,
    pub overrides: Overrides,
    /// Each budget's state (see [`Flags::budget_states`]).
    pub budgets: Vec<Value>,
    /// Conversation pins held in memory.
    pub pins: usize,
    pub now: Millis,
}

impl Status {
    /// Milliseconds since the live document was loaded.
    pub fn age_millis(&self) -> Millis {
        self.now - self.loaded_at
    }

    pub fn to_json(&self) -> Value {
        let mut flags: Vec<_> = self.overrides.trips.iter().collect();
        flags.sort_by(|a, b| a.0.cmp(b.0));
        let trips: Vec<Value> = flags
            .into_iter()
            .flat_map(|(flag, trips)| trips.iter().map(|t| t.to_json(flag, self.now)))
            .collect();
        let kills: serde_json::Map<String, Value> = self
            .overrides
            .flags
            .iter()
            .map(|(flag, kill)| {
                (
                    flag.to_string(),
                    json!({ "reason": kill.reason, "at": format_timestamp(kill.at) }),
                )
            })
            .collect();
        let mut status = json!({
            "source": self.source,
            "revision": self.revision,
            "loaded_at": format_timestamp(self.loaded_at),
            "age_seconds": self.age_millis() as f64 / 1000.0,
            "last_check": self.last_check.map(format_timestamp),
            "last_error": self.last_error.as_ref().map(|f| json!({
                "at": format_timestamp(f.at),
                "code": f.error.code(),
                "message": f.error.to_string(),
                "problems": f.error.problems().iter().map(|p| json!({
                    "path": p.path, "code": p.code(), "message": p.message,
                })).collect::<Vec<_>>(),
            })),
            "reloads": self.reloads,
            "rejected": self.rejected,
            "watching": self.watching,
            "local_kills": {
                "all": self.overrides.all.as_ref().map(|k| json!({
                    "reason": k.reason, "at": format_timestamp(k.at),
                })),
                "flags": kills,
            },
            "guardrails": trips,
            "budgets": self.budgets,
            "sticky_pins": self.pins,
        });
        // Always present (null for file and static sources), so every status has one shape.
        status["remote"] = self.remote.clone().unwrap_or(Value::Null);
        status
    }
}

/// What a reload did, for listeners (logging in the bindings).
#[derive(Debug, Clone)]
pub enum ReloadEvent {
    Applied { previous: String, revision: String },
    Rejected { error: Error },
}

type Listener = Arc<dyn Fn(&ReloadEvent) + Send + Sync>;

pub(crate) struct Shared {
    document: ArcSwap<Document>,
    /// Outcomes, guardrail windows and event sinks of the runtime around the call.
    pub(crate) runtime: Runtime,
    overrides: ArcSwap<Overrides>,
    /// Whether any local kill is in force. Evaluation reads this flag instead of loading the
    /// overrides, which saves an atomic load on every call in the usual case (no local kills).
    has_overrides: AtomicBool,
    source: SourceKind,
    /// The implementation of a [`SourceKind::External`] source.
    external: Option<Arc<dyn ExternalSource>>,
    clock: Arc<dyn Clock>,
    // Lock-free (copy on write) rather than mutexes: a process may fork() while the reload
    // thread is updating these, and a mutex held at that instant would stay locked forever in
    // the child (gunicorn --preload, celery prefork).
    state: ArcSwap<LoadState>,
    listeners: ArcSwap<Vec<Listener>>,
    /// Bumped to stop the current watcher thread (on drop, or before a restart after fork).
    watcher_generation: AtomicU64,
    watching: AtomicBool,
}

#[derive(Clone)]
struct LoadState {
    loaded_at: Millis,
    last_check: Option<Millis>,
    last_error: Option<LoadFailure>,
    reloads: u64,
    rejected: u64,
    /// Identity of the file last read (mtime, length, inode) to skip unchanged files cheaply.
    fingerprint: Option<Fingerprint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    modified_nanos: i128,
    len: u64,
    inode: u64,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = std::fs::metadata(path).ok()?;
    let modified_nanos = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Fingerprint {
        modified_nanos,
        len: meta.len(),
        inode,
    })
}

/// The live flags of a process: cheap to clone and to share between threads.
#[derive(Clone)]
pub struct Flags {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flags")
            .field("source", &self.shared.source)
            .field("revision", &self.shared.document.load().revision())
            .finish()
    }
}

/// Options for [`Flags::from_file_with`].
#[derive(Clone)]
pub struct FileOptions {
    /// Watch the file and reload on change.
    pub reload: bool,
    pub poll_interval: Duration,
    pub clock: Arc<dyn Clock>,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            reload: true,
            poll_interval: DEFAULT_POLL_INTERVAL,
            clock: Arc::new(SystemClock),
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|err| Error::SourceUnreachable {
        source: path.display().to_string(),
        detail: err.to_string(),
    })
}

impl Flags {
    fn new(
        document: Document,
        source: SourceKind,
        clock: Arc<dyn Clock>,
        fingerprint: Option<Fingerprint>,
    ) -> Flags {
        let now = clock.now_millis();
        Flags {
            shared: Arc::new(Shared {
                runtime: Runtime::default(),
                document: ArcSwap::from_pointee(document),
                overrides: ArcSwap::from_pointee(Overrides::default()),
                has_overrides: AtomicBool::new(false),
                source,
                external: None,
                clock,
                state: ArcSwap::from_pointee(LoadState {
                    loaded_at: now,
                    last_check: Some(now),
                    last_error: None,
                    reloads: 0,
                    rejected: 0,
                    fingerprint,
                }),
                listeners: ArcSwap::from_pointee(Vec::new()),
                watcher_generation: AtomicU64::new(0),
                watching: AtomicBool::new(false),
            }),
        }
    }

    /// Live flags over a fixed document.
    pub fn from_document(document: Document) -> Flags {
        Self::from_document_with_clock(document, Arc::new(SystemClock))
    }

    pub fn from_document_with_clock(document: Document, clock: Arc<dyn Clock>) -> Flags {
        Flags::new(document, SourceKind::Static, clock, None)
    }

    /// Parses JSON text into static flags.
    pub fn from_json(text: &str) -> Result<Flags> {
        Ok(Flags::from_document(Document::from_json(text)?))
    }

    /// Validates a JSON value into static flags.
    pub fn from_value(value: Value) -> Result<Flags> {
        Ok(Flags::from_document(Document::from_value(value)?))
    }

    /// Loads a file, watching it for changes.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Flags> {
        Self::from_file_with(path, FileOptions::default())
    }

    pub fn from_file_with(path: impl AsRef<Path>, options: FileOptions) -> Result<Flags> {
        let path = path.as_ref().to_path_buf();
        let before = fingerprint(&path);
        let document = Document::from_slice(&read_file(&path)?)?;
        let flags = Flags::new(document, SourceKind::File(path), options.clock, before);
        if options.reload {
            flags.start_watching(options.poll_interval);
        }
        Ok(flags)
    }

    /// Live flags over `document` (the first one an external source fetched, or its cached
    /// copy) that `source` keeps current once [`Flags::start_watching`] starts its poller.
    pub fn from_external(
        document: Document,
        source: Arc<dyn ExternalSource>,
        clock: Arc<dyn Clock>,
    ) -> Flags {
        let mut flags = Flags::new(
            document,
            SourceKind::External(source.describe()),
            clock,
            None,
        );
        if let Some(shared) = Arc::get_mut(&mut flags.shared) {
            shared.external = Some(source);
        }
        flags
    }

    /// Offers a document an external source fetched (or the error that kept it from getting
    /// one): a valid document goes live; an error is recorded in the status and sent to the
    /// reload listeners, and the live document stays. Returns the new revision.
    pub fn offer(&self, loaded: Result<Document>) -> Result<String> {
        self.apply(loaded)
    }

    /// Replaces the document (static sources, tests, programmatic updates). An invalid
    /// document is rejected and the live one stays.
    pub fn replace_json(&self, text: &str) -> Result<String> {
        self.apply(Document::from_json(text))
    }

    /// Replaces the document with an already-compiled one.
    pub fn replace(&self, document: Document) -> String {
        let revision = document.revision().to_string();
        let _ = self.apply(Ok(document));
        revision
    }

    fn apply(&self, loaded: Result<Document>) -> Result<String> {
        let now = self.shared.clock.now_millis();
        let event = match loaded {
            Ok(document) => {
                let revision = document.revision().to_string();
                let previous = self.shared.document.swap(Arc::new(document));
                self.shared.state.rcu(|state| LoadState {
                    last_check: Some(now),
                    loaded_at: now,
                    last_error: None,
                    reloads: state.reloads + 1,
                    ..LoadState::clone(state)
                });
                Ok(ReloadEvent::Applied {
                    previous: previous.revision().to_string(),
                    revision,
                })
            }
            Err(error) => {
                self.shared.state.rcu(|state| LoadState {
                    last_check: Some(now),
                    rejected: state.rejected + 1,
                    last_error: Some(LoadFailure {
                        at: now,
                        error: error.clone(),
                    }),
                    ..LoadState::clone(state)
                });
                Err(error)
            }
        };
        let (result, event) = match event {
            Ok(applied) => {
                let revision = match &applied {
                    ReloadEvent::Applied { revision, .. } => revision.clone(),
                    ReloadEvent::Rejected { .. } => String::new(),
                };
                (Ok(revision), applied)
            }
            Err(error) => (Err(error.clone()), ReloadEvent::Rejected { error }),
        };
        for listener in self.shared.listeners.load().iter() {
            listener(&event);
        }
        result
    }

    /// Checks a file source now and reloads it when it changed. Returns whether a new document
    /// went live. Static sources return `Ok(false)`.
    pub fn reload_if_changed(&self) -> Result<bool> {
        reload_if_changed(&self.shared)
    }

    /// Registers a listener for reload events (applied / rejected).
    pub fn on_reload(&self, listener: impl Fn(&ReloadEvent) + Send + Sync + 'static) {
        let listener: Listener = Arc::new(listener);
        self.shared.listeners.rcu(|current| {
            let mut next = Vec::clone(current);
            next.push(Arc::clone(&listener));
            next
        });
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
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        let spawned = thread::Builder::new()
            .name("flagrail-reload".to_string())
            .spawn(move || watch(weak, generation, interval));
        if spawned.is_err() {
            self.shared.watching.store(false, Ordering::SeqCst);
        }
    }

    /// Starts the poller thread of an external source (stopping a previous one).
    fn start_polling(&self, external: Arc<dyn ExternalSource>) {
        let generation = self
            .shared
            .watcher_generation
            .fetch_add(1, Ordering::SeqCst)
            + 1;
        self.shared.watching.store(true, Ordering::SeqCst);
        let poller = Poller {
            shared: Arc::downgrade(&self.shared),
            generation,
        };
        let spawned = thread::Builder::new()
            .name("flagrail-poll".to_string())
            .spawn(move || external.run(poller));
        if spawned.is_err() {
            self.shared.watching.store(false, Ordering::SeqCst);
        }
    }

    /// Stops the background watcher, if any.
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

    /// The live document.
    #[inline]
    pub fn document(&self) -> Arc<Document> {
        self.shared.document.load_full()
    }

    /// A consistent view for several evaluations: one document, one set of overrides.
    #[inline]
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            document: self.shared.document.load(),
            // Acquire pairs with the Release in `kill`: a kill is visible to the next evaluation.
            overrides: self
                .shared
                .has_overrides
                .load(Ordering::Acquire)
                .then(|| self.shared.overrides.load()),
            clock: &*self.shared.clock,
            runtime: &self.shared.runtime,
        }
    }

    /// Evaluates a flag and returns an owned result. Never fails.
    #[inline]
    pub fn evaluate<C: Context + ?Sized>(&self, flag: &str, ctx: &C) -> Evaluation {
        self.snapshot().evaluate_owned(flag, ctx)
    }

    /// Evaluates a flag as of instant `at` (ramps read `at` instead of the clock).
    pub fn evaluate_at<C: Context + ?Sized>(&self, flag: &str, ctx: &C, at: Millis) -> Evaluation {
        self.snapshot().evaluate_owned_at(flag, ctx, At(at))
    }

    /// Evaluates with the steps that led to the decision, as JSON.
    pub fn explain<C: Context + ?Sized>(&self, flag: &str, ctx: &C) -> Value {
        let snapshot = self.snapshot();
        snapshot.explain(flag, ctx)
    }

    /// `explain` as of instant `at`.
    pub fn explain_at<C: Context + ?Sized>(&self, flag: &str, ctx: &C, at: Millis) -> Value {
        self.snapshot().explain_at(flag, ctx, at)
    }

    /// Kills one flag (`Some`) or every flag (`None`) in this process, without touching the
    /// document. Safety first: takes effect for the very next evaluation.
    pub fn kill(&self, flag: Option<&str>, reason: Option<&str>) {
        let kill = LocalKill {
            reason: reason.map(str::to_string),
            at: self.shared.clock.now_millis(),
        };
        self.shared.overrides.rcu(|current| {
            let mut next = Overrides::clone(current);
            match flag {
                Some(flag) => {
                    next.flags.insert(flag.into(), kill.clone());
                }
                None => next.all = Some(kill.clone()),
            }
            next
        });
        self.shared.has_overrides.store(true, Ordering::Release);
    }

    /// Lifts a local kill of one flag (`Some`) or every local kill (`None`). A kill written in
    /// the document stays in force: only a new document lifts it, so that one process cannot
    /// undo a fleet-wide kill by accident.
    pub fn unkill(&self, flag: Option<&str>) {
        self.shared.overrides.rcu(|current| {
            let mut next = Overrides::clone(current);
            match flag {
                Some(flag) => {
                    next.flags.remove(flag);
                }
                None => {
                    next.all = None;
                    next.flags.clear();
                }
            }
            next
        });
        self.refresh_has_overrides();
    }

    fn refresh_has_overrides(&self) {
        let any = !self.shared.overrides.load().is_empty();
        self.shared.has_overrides.store(any, Ordering::Release);
    }

    /// Replaces the trips of one flag (the runtime calls this when a guardrail trips or
    /// recovers); the next evaluation sees them.
    pub(crate) fn publish_trips(&self, flag: &Arc<str>, trips: Vec<Trip>) {
        self.shared.overrides.rcu(|current| {
            let mut next = Overrides::clone(current);
            if trips.is_empty() {
                next.trips.remove(flag);
            } else {
                next.trips.insert(Arc::clone(flag), trips.clone());
            }
            next
        });
        self.refresh_has_overrides();
    }

    /// Source, live revision, age, last error and local kills.
    pub fn status(&self) -> Status {
        let state = self.shared.state.load();
        let now = self.shared.clock.now_millis();
        Status {
            remote: self.shared.external.as_ref().map(|e| e.status_json(now)),
            source: self.shared.source.describe(),
            revision: self.shared.document.load().revision().to_string(),
            loaded_at: state.loaded_at,
            last_check: state.last_check,
            last_error: state.last_error.clone(),
            reloads: state.reloads,
            rejected: state.rejected,
            watching: self.is_watching(),
            overrides: Overrides::clone(&self.shared.overrides.load()),
            budgets: self.budget_states(),
            pins: self.shared.runtime.pins.len(),
            now,
        }
    }

    /// The state of every budget of the live document (document-wide first, then each flag's,
    /// then shadow caps): limit, window, action, and spent / reserved / remaining for a single
    /// scope, or counts of tracked and exhausted scopes for a per-unit budget.
    pub fn budget_states(&self) -> Vec<Value> {
        let document = self.document();
        let now = self.now_millis();
        let budgets: Vec<&Budget> = document
            .budgets()
            .iter()
            .chain(document.flags().iter().flat_map(|f| &f.budgets))
            .chain(
                document
                    .flags()
                    .iter()
                    .filter_map(|f| f.shadow.as_ref()?.cap.as_ref()),
            )
            .collect();
        if budgets.is_empty() {
            return Vec::new();
        }
        let mut book = self.shared.runtime.budgets();
        budgets.into_iter().map(|b| book.describe(b, now)).collect()
    }

    /// The clock this handle evaluates ramps with.
    pub fn now_millis(&self) -> Millis {
        self.shared.clock.now_millis()
    }
}

fn reload_if_changed(shared: &Arc<Shared>) -> Result<bool> {
    let SourceKind::File(path) = &shared.source else {
        return Ok(false);
    };
    let current = fingerprint(path);
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
    let loaded = read_file(path).and_then(|bytes| Document::from_slice(&bytes));
    flags.apply(loaded).map(|_| true)
}

fn watch(shared: Weak<Shared>, generation: u64, interval: Duration) {
    loop {
        thread::sleep(interval);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.watcher_generation.load(Ordering::SeqCst) != generation {
            return;
        }
        // Errors are recorded in the status and sent to listeners by `apply`.
        let _ = reload_if_changed(&shared);
    }
}

/// A consistent view of the live flags (see [`Flags::snapshot`]).
pub struct Snapshot<'a> {
    document: Guard<Arc<Document>>,
    /// `None` when no local kill was in force at the snapshot.
    overrides: Option<Guard<Arc<Overrides>>>,
    clock: &'a dyn Clock,
    runtime: &'a Runtime,
}

/// Where the pin of a sticky flag comes from for one evaluation.
#[derive(Clone, Copy)]
pub enum PinSource<'a> {
    /// The handle's in-memory store (the default).
    Memory,
    /// A binding read the pin from its shared store: the stored variant id, if any.
    Given(Option<&'a str>),
}

/// How an evaluation reads budgets: locking the book per look (plain evaluation), or through a
/// book the caller already holds (a call that checks and reserves atomically).
pub(crate) enum BudgetAccess<'a> {
    Lock,
    Held(std::cell::RefCell<&'a mut BudgetBook>),
}

/// What a live evaluation overlays on the document: the snapshot's local kills and trips, the
/// runtime's budgets and the conversation pins.
pub struct LiveOverlay<'s> {
    overrides: Option<&'s Overrides>,
    runtime: &'s Runtime,
    clock: &'s dyn Clock,
    pins: PinSource<'s>,
    budgets: BudgetAccess<'s>,
}

impl Overlay for LiveOverlay<'_> {
    #[inline]
    fn all_killed(&self) -> bool {
        self.overrides.is_some_and(Overrides::all_killed)
    }
    #[inline]
    fn flag_killed(&self, flag: &str) -> bool {
        self.overrides.is_some_and(|o| o.flag_killed(flag))
    }
    #[inline]
    fn trips(&self, flag: &str) -> &[Trip] {
        self.overrides.map_or(&[], |o| o.trips(flag))
    }
    fn budget_exhausted(&self, budget: &Budget, scope: &str) -> bool {
        let now = self.clock.now_millis();
        match &self.budgets {
            BudgetAccess::Held(book) => book.borrow_mut().is_exhausted(budget, scope, now),
            BudgetAccess::Lock => self
                .runtime
                .with_budgets(now, |book| book.is_exhausted(budget, scope, now)),
        }
    }
    fn pin(&self, flag: &crate::document::Flag, conversation: &str) -> PinLookup {
        match self.pins {
            PinSource::Given(stored) => PinLookup::of(flag, stored),
            PinSource::Memory => {
                let stored =
                    self.runtime
                        .pins
                        .get(&flag.key, conversation, self.clock.now_millis());
                PinLookup::of(flag, stored.as_deref())
            }
        }
    }
}

impl<'a> Snapshot<'a> {
    pub fn document(&self) -> &Document {
        &self.document
    }

    /// The overlay of this snapshot: local kills, trips, budgets, pins.
    pub fn overlay(&self, pins: PinSource<'a>) -> LiveOverlay<'_> {
        LiveOverlay {
            overrides: self.overrides.as_deref().map(|o| &**o),
            runtime: self.runtime,
            clock: self.clock,
            pins,
            budgets: BudgetAccess::Lock,
        }
    }

    pub(crate) fn overlay_holding<'b>(
        &'b self,
        book: &'b mut BudgetBook,
        pins: PinSource<'b>,
    ) -> LiveOverlay<'b> {
        LiveOverlay {
            overrides: self.overrides.as_deref().map(|o| &**o),
            runtime: self.runtime,
            clock: self.clock,
            pins,
            budgets: BudgetAccess::Held(std::cell::RefCell::new(book)),
        }
    }

    /// Carries out a decision's pin effect on the in-memory store.
    #[inline]
    pub(crate) fn keep_pin<C: Context + ?Sized>(&self, decision: &Decision<'_>, ctx: &C) {
        if matches!(decision.pin, PinEffect::None | PinEffect::Keep) {
            return;
        }
        let (Some(flag), Some(sticky)) =
            (decision.flag, decision.flag.and_then(|f| f.sticky.as_ref()))
        else {
            return;
        };
        let Some(conversation) = conversation_of(sticky, ctx) else {
            return;
        };
        let pins = &self.runtime.pins;
        match (decision.pin, decision.variant()) {
            (PinEffect::Write, Some(variant)) => pins.set(
                &flag.key,
                &conversation,
                &variant.id,
                self.clock.now_millis().saturating_add(sticky.ttl),
            ),
            (PinEffect::Delete, _) => pins.delete(&flag.key, &conversation),
            _ => {}
        }
    }

    /// Evaluates with the in-memory pins (written or removed as the decision says).
    #[inline]
    fn decide<C: Context + ?Sized>(
        &self,
        flag: FlagAt<'_>,
        ctx: &C,
        now: &impl Now,
    ) -> Decision<'_> {
        let overlay = self.overlay(PinSource::Memory);
        let decision = match flag {
            FlagAt::Key(key) => self.document.evaluate(key, ctx, now, &overlay),
            FlagAt::Index(index) => self.document.evaluate_index(index, ctx, now, &overlay),
        };
        self.keep_pin(&decision, ctx);
        decision
    }

    /// Evaluates with a pin a binding read from its own store: nothing is written; the caller
    /// carries out `decision.pin` on that store.
    #[inline]
    pub fn evaluate_index_pinned<C: Context + ?Sized>(
        &self,
        flag_index: usize,
        ctx: &C,
        pin: Option<&str>,
        at: Option<Millis>,
    ) -> Decision<'_> {
        let overlay = self.overlay(PinSource::Given(pin));
        match at {
            None => self
                .document
                .evaluate_index(flag_index, ctx, &ClockNow(self.clock), &overlay),
            Some(at) => self
                .document
                .evaluate_index(flag_index, ctx, &At(at), &overlay),
        }
    }

    /// Evaluates as of instant `at`; the decision borrows from the snapshot.
    #[inline]
    pub fn evaluate_at<C: Context + ?Sized>(
        &self,
        flag: &str,
        ctx: &C,
        at: Millis,
    ) -> Decision<'_> {
        self.decide(FlagAt::Key(flag), ctx, &At(at))
    }

    /// `explain` against this snapshot's document (the one whose attributes a binding read).
    /// Reads pins and budgets; writes nothing.
    pub fn explain<C: Context + ?Sized>(&self, flag: &str, ctx: &C) -> Value {
        self.document.explain(
            flag,
            ctx,
            &ClockNow(self.clock),
            &self.overlay(PinSource::Memory),
        )
    }

    /// `explain` as of instant `at`.
    pub fn explain_at<C: Context + ?Sized>(&self, flag: &str, ctx: &C, at: Millis) -> Value {
        self.document
            .explain(flag, ctx, &At(at), &self.overlay(PinSource::Memory))
    }

    /// `explain` with a pin read from a binding's store.
    pub fn explain_pinned<C: Context + ?Sized>(
        &self,
        flag: &str,
        ctx: &C,
        pin: Option<&str>,
        at: Option<Millis>,
    ) -> Value {
        let overlay = self.overlay(PinSource::Given(pin));
        match at {
            None => self
                .document
                .explain(flag, ctx, &ClockNow(self.clock), &overlay),
            Some(at) => self.document.explain(flag, ctx, &At(at), &overlay),
        }
    }

    /// Evaluates the flag at `flag_index` of [`Snapshot::document`] (no second key lookup).
    #[inline]
    pub fn evaluate_index<C: Context + ?Sized>(&self, flag_index: usize, ctx: &C) -> Decision<'_> {
        self.decide(FlagAt::Index(flag_index), ctx, &ClockNow(self.clock))
    }

    /// `evaluate_index` as of instant `at`.
    #[inline]
    pub fn evaluate_index_at<C: Context + ?Sized>(
        &self,
        flag_index: usize,
        ctx: &C,
        at: Millis,
    ) -> Decision<'_> {
        self.decide(FlagAt::Index(flag_index), ctx, &At(at))
    }

    /// The snapshot's document, shared (for caches keyed by document).
    pub fn document_arc(&self) -> &Arc<Document> {
        &self.document
    }

    /// Evaluates a flag against this snapshot; the decision borrows from it.
    #[inline]
    pub fn evaluate<C: Context + ?Sized>(&self, flag: &str, ctx: &C) -> Decision<'_> {
        self.decide(FlagAt::Key(flag), ctx, &ClockNow(self.clock))
    }

    /// Evaluates a flag and keeps the document alive in the result.
    #[inline]
    pub fn evaluate_owned<C: Context + ?Sized>(&self, flag: &str, ctx: &C) -> Evaluation {
        self.evaluate_owned_at(flag, ctx, ClockNow(self.clock))
    }

    /// `evaluate_owned` with an explicit source of "now".
    #[inline]
    pub fn evaluate_owned_at<C: Context + ?Sized>(
        &self,
        flag: &str,
        ctx: &C,
        now: impl Now,
    ) -> Evaluation {
        let decision = self.decide(FlagAt::Key(flag), ctx, &now);
        Evaluation::of_decision(&decision, flag, &self.document)
    }

    /// Evaluates the flag at `flag_index` (named `flag`) into an owned result, with the pins of
    /// `pins`: the memory store is read and written, a given pin only read.
    pub(crate) fn evaluate_index_owned<C: Context + ?Sized>(
        &self,
        flag_index: usize,
        flag: &str,
        ctx: &C,
        pins: PinSource<'_>,
    ) -> Evaluation {
        let decision = match pins {
            PinSource::Memory => self.decide(FlagAt::Index(flag_index), ctx, &ClockNow(self.clock)),
            PinSource::Given(pin) => self.evaluate_index_pinned(flag_index, ctx, pin, None),
        };
        Evaluation::of_decision(&decision, flag, &self.document)
    }
}

/// A flag named by key or by its index in the snapshot's document.
#[derive(Clone, Copy)]
enum FlagAt<'k> {
    Key(&'k str),
    Index(usize),
}

/// An owned evaluation result: compact indices into the document that made it.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub document: Arc<Document>,
    pub flag_index: Option<usize>,
    pub variant_index: Option<usize>,
    pub rule_index: Option<usize>,
    pub reason: Reason,
    pub bucket: Option<u32>,
    pub kill_source: Option<KillSource>,
    pub guardrail: Option<usize>,
    pub replaced_variant: Option<usize>,
    pub budget: Option<BudgetRef>,
    pub shadow: Option<usize>,
    pub pin: PinEffect,
    /// The requested key when the flag does not exist.
    missing_flag: Option<Box<str>>,
}

impl Evaluation {
    /// Rebuilds the evaluation of a found flag from the indices a binding kept in its result
    /// object (for trackers). Which guardrail re-routed it is not kept there: no tracker
    /// outcome depends on it.
    #[allow(clippy::too_many_arguments)]
    pub fn of_found(
        document: Arc<Document>,
        flag_index: usize,
        variant_index: Option<usize>,
        rule_index: Option<usize>,
        reason: Reason,
        bucket: Option<u32>,
        kill_source: Option<KillSource>,
    ) -> Evaluation {
        Evaluation {
            document,
            flag_index: Some(flag_index),
            variant_index,
            rule_index,
            reason,
            bucket,
            kill_source,
            guardrail: None,
            replaced_variant: None,
            budget: None,
            shadow: None,
            pin: PinEffect::None,
            missing_flag: None,
        }
    }

    /// The owned form of a decision of `document`.
    pub fn of_decision(
        decision: &Decision<'_>,
        flag: &str,
        document: &Arc<Document>,
    ) -> Evaluation {
        Evaluation {
            flag_index: decision.flag_index,
            variant_index: decision.variant_index,
            rule_index: decision.rule_index,
            reason: decision.reason,
            bucket: decision.bucket,
            kill_source: decision.kill_source,
            guardrail: decision.guardrail,
            replaced_variant: decision.replaced_variant,
            budget: decision.budget,
            shadow: decision.shadow,
            pin: decision.pin,
            missing_flag: match decision.flag_index {
                Some(_) => None,
                None => Some(flag.into()),
            },
            document: Arc::clone(document),
        }
    }

    pub fn flag_key(&self) -> &str {
        match self.flag_index {
            Some(i) => &self.document.flags[i].key,
            None => self.missing_flag.as_deref().unwrap_or(""),
        }
    }

    /// The same result as a borrowed [`Decision`] (whose accessors resolve the indices).
    pub fn decision(&self) -> Decision<'_> {
        Decision {
            flag: self.flag_index.map(|i| &self.document.flags[i]),
            flag_index: self.flag_index,
            variant_index: self.variant_index,
            reason: self.reason,
            rule_index: self.rule_index,
            bucket: self.bucket,
            kill_source: self.kill_source,
            guardrail: self.guardrail,
            replaced_variant: self.replaced_variant,
            budget: self.budget,
            shadow: self.shadow,
            pin: self.pin,
        }
    }

    /// The flag definition (`None` for an unknown flag).
    pub fn flag(&self) -> Option<&crate::document::Flag> {
        self.flag_index.and_then(|i| self.document.flags.get(i))
    }

    pub fn variant_id(&self) -> Option<&str> {
        self.decision().variant_id()
    }

    pub fn payload(&self) -> Option<&Value> {
        self.decision().payload()
    }

    pub fn payload_arc(&self) -> Option<&Arc<Value>> {
        self.decision().variant().map(|v| &v.payload)
    }

    pub fn rule_id(&self) -> Option<&str> {
        self.decision().rule_id()
    }

    pub fn revision(&self) -> &str {
        self.document.revision()
    }

    pub fn revision_arc(&self) -> &Arc<str> {
        self.document.revision_arc()
    }

    /// The cache key of the served variant with `parts` (see [`crate::cache_key`]); `None`
    /// for an unknown flag.
    pub fn cache_key(&self, parts: &[crate::cache_key::KeyPart<'_>]) -> Option<String> {
        let variant = self.decision().variant()?;
        Some(crate::cache_key::cache_key(
            self.flag_key(),
            &variant.id,
            &variant.payload_hash,
            parts,
        ))
    }

    /// The result as JSON (`variant` falls back to `caller_default` when the flag is unknown).
    pub fn to_json(&self, caller_default: Option<&str>) -> Value {
        decision_json(
            &self.document,
            self.flag_key(),
            &self.decision(),
            caller_default,
        )
    }
}
