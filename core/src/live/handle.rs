//! The live handle: the compiled document behind an `ArcSwap`, local kill overrides, sources
//! with hot reload, and status.
//!
//! Evaluation loads the current document with one atomic read and never waits for a reload: a
//! new document is read, validated and compiled on the reloading thread and swapped in whole. A
//! document that fails to load never replaces the last good one; the failure is kept in
//! [`Status`] until the next successful load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::Value;

use crate::context::Context;
use crate::document::budget::Budget;
use crate::document::Document;
use crate::error::{Error, Result};
use crate::evaluate::{Explanation, FlagRef, Trip};
use crate::live::clock::{Clock, SystemClock};
use crate::live::overrides::{LocalKill, Overrides};
use crate::live::recent;
use crate::live::snapshot::{EvalOptions, Evaluation, Snapshot};
use crate::live::source::{DocumentVerifier, ExternalSource, Fingerprint, SourceKind};
use crate::live::status::{LoadFailure, Status};
use crate::runtime::Runtime;
use crate::time::{format_timestamp, Millis};

/// What a reload did, for listeners (logging in the bindings).
#[derive(Debug, Clone)]
pub enum ReloadEvent {
    Applied { previous: String, revision: String },
    Rejected { error: Error },
}

/// How loud a reload is in a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// A new document went live.
    Info,
    /// The source could not be read: often transient (a deploy in progress).
    Warning,
    /// A document was refused (invalid, or not signed by the key): a failed change someone has
    /// to fix, or someone writing where they should not.
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
        }
    }
}

impl ReloadEvent {
    /// The log line of this event for a source described as `source`: one level and one text
    /// for both bindings (Python's `flagrail` logger, Node's console), decided here.
    pub fn log_line(&self, source: &str) -> (LogLevel, String) {
        match self {
            ReloadEvent::Applied { previous, revision } => (
                LogLevel::Info,
                format!("flag document reloaded from {source}: revision {previous} -> {revision}"),
            ),
            ReloadEvent::Rejected { error } => {
                let level = match error {
                    Error::InvalidDocument { .. } | Error::SignatureInvalid { .. } => {
                        LogLevel::Error
                    }
                    _ => LogLevel::Warning,
                };
                (
                    level,
                    format!(
                        "flag document from {source} rejected, the previous revision stays live: {error} [{}]",
                        error.code()
                    ),
                )
            }
        }
    }
}

type Listener = Arc<dyn Fn(&ReloadEvent) + Send + Sync>;

/// Numbers every document installed in any handle of this process, so that one id names one
/// document of one handle (see [`Flags::document_id`]).
static DOCUMENT_IDS: AtomicU64 = AtomicU64::new(1);

fn next_document_id() -> u64 {
    DOCUMENT_IDS.fetch_add(1, Ordering::Relaxed)
}

pub(crate) struct Shared {
    pub(super) document: ArcSwap<Document>,
    /// The id of `document` (see [`Flags::document_id`]); written after each swap.
    pub(super) document_id: AtomicU64,
    /// Outcomes, guardrail windows and event sinks of the runtime around the call.
    pub(super) runtime: Runtime,
    pub(super) overrides: ArcSwap<Overrides>,
    /// Whether any local kill is in force. Evaluation reads this flag instead of loading the
    /// overrides, which saves an atomic load on every call in the usual case (no local kills).
    pub(super) has_overrides: AtomicBool,
    pub(super) source: SourceKind,
    /// The implementation of a [`SourceKind::External`] source.
    pub(super) external: Option<Arc<dyn ExternalSource>>,
    /// The signature check of a signed file source: every version must carry a matching
    /// `<path>.sig`.
    pub(super) verifier: Option<Arc<dyn DocumentVerifier>>,
    pub(super) clock: Arc<dyn Clock>,
    // Lock-free (copy on write) rather than mutexes: a process may fork() while the reload
    // thread is updating these, and a mutex held at that instant would stay locked forever in
    // the child (gunicorn --preload, celery prefork).
    pub(super) state: ArcSwap<LoadState>,
    pub(super) listeners: ArcSwap<Vec<Listener>>,
    /// Bumped to stop the current watcher thread (on drop, or before a restart after fork).
    pub(super) watcher_generation: AtomicU64,
    pub(super) watching: AtomicBool,
}

#[derive(Clone)]
pub(crate) struct LoadState {
    pub(super) loaded_at: Millis,
    pub(super) last_check: Option<Millis>,
    pub(super) last_error: Option<LoadFailure>,
    pub(super) reloads: u64,
    pub(super) rejected: u64,
    /// Identity of the file (and signature) last read (mtime, length, inode) to skip unchanged
    /// files cheaply.
    pub(super) fingerprint: Option<Fingerprint>,
    /// Since when a signature mismatch has been put down to a rewrite in progress (see
    /// `watch::reload_if_changed`); `None` when none is.
    pub(super) mismatch_deferred_since: Option<Millis>,
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

impl Flags {
    pub(super) fn new(
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
                document_id: AtomicU64::new(next_document_id()),
                overrides: ArcSwap::from_pointee(Overrides::default()),
                has_overrides: AtomicBool::new(false),
                source,
                external: None,
                verifier: None,
                clock,
                state: ArcSwap::from_pointee(LoadState {
                    loaded_at: now,
                    last_check: Some(now),
                    last_error: None,
                    reloads: 0,
                    rejected: 0,
                    fingerprint,
                    mismatch_deferred_since: None,
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

    /// Parses JSON bytes into static flags (the text entry for bytes a binding has not decoded:
    /// invalid UTF-8 is then named, not replaced).
    pub fn from_slice(bytes: &[u8]) -> Result<Flags> {
        Ok(Flags::from_document(Document::from_slice(bytes)?))
    }

    /// Validates a JSON value into static flags.
    pub fn from_value(value: Value) -> Result<Flags> {
        Ok(Flags::from_document(Document::from_value(value)?))
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

    pub(super) fn apply(&self, loaded: Result<Document>) -> Result<String> {
        let now = self.shared.clock.now_millis();
        let event = match loaded {
            Ok(document) => {
                let revision = document.revision().to_string();
                let previous = self.shared.document.swap(Arc::new(document));
                // Release, after the swap: whoever reads the new id reads the new document
                // (see `document_and_id`).
                self.shared
                    .document_id
                    .store(next_document_id(), Ordering::Release);
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
        // The event first: a listener may push the news to another thread (Node's event loop)
        // that then collects the queued events, and must find this one there.
        self.emit_load_event(&event, now);
        for listener in self.shared.listeners.load().iter() {
            listener(&event);
        }
        result
    }

    /// The `reload` / `reload_rejected` event of a load (before the listeners).
    fn emit_load_event(&self, event: &ReloadEvent, now: Millis) {
        use crate::runtime::events::{EventBody, Reload, ReloadRejected};
        let runtime = &self.shared.runtime;
        if !runtime.wants_events() {
            return;
        }
        let state = self.shared.state.load();
        let source = self.shared.source.describe();
        let live = self.shared.document.load();
        let body = match event {
            ReloadEvent::Applied { previous, revision } => EventBody::Reload(Reload {
                time: format_timestamp(now),
                source: &source,
                previous,
                revision,
                reloads: state.reloads,
            }),
            ReloadEvent::Rejected { error } => EventBody::ReloadRejected(ReloadRejected::new(
                format_timestamp(now),
                &source,
                live.revision(),
                error,
                state.rejected,
            )),
        };
        runtime.emit(&[body.to_event()]);
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

    /// The runtime state behind this handle (metrics, guardrail windows, budget books, pins,
    /// sinks): what a [`crate::live::Run`] records into, without reaching into the handle.
    #[inline]
    pub(crate) fn runtime(&self) -> &Runtime {
        &self.shared.runtime
    }

    /// The live document.
    #[inline]
    pub fn document(&self) -> Arc<Document> {
        self.shared.document.load_full()
    }

    /// The id of the live document: changed by every replacement, and never given to another
    /// document of any handle in this process. A plain atomic read: a binding that keeps the
    /// live document between calls ([`Flags::document_and_id`]) checks with it that the
    /// document is still live, then evaluates on it with [`Flags::snapshot_of`] — without
    /// [`Flags::snapshot`]'s load of the shared pointer, whose read-modify-write pair (taking
    /// and returning a slot) costs about as much as deciding a flag.
    #[inline]
    pub fn document_id(&self) -> u64 {
        // Acquire pairs with the Release in `apply`.
        self.shared.document_id.load(Ordering::Acquire)
    }

    /// The live document and its id ([`Flags::document_id`]). The id is read first, so the
    /// document is never older than the id says: if a replacement lands in between, the id
    /// is already stale and the caller's next comparison with [`Flags::document_id`] fails.
    pub fn document_and_id(&self) -> (u64, Arc<Document>) {
        let id = self.document_id();
        (id, self.shared.document.load_full())
    }

    /// A consistent view for several evaluations: one document, one set of overrides.
    ///
    /// The document comes from this thread's recent entries when the live id matches one
    /// (`live/recent.rs`): a plain atomic read, no read-modify-write. Otherwise it is loaded
    /// and kept there.
    #[inline]
    pub fn snapshot(&self) -> Snapshot<'_> {
        // The id first: a document found or loaded after it is never older than the id says.
        let id = self.document_id();
        let document = match recent::find(id) {
            Some(document) => document,
            None => recent::remember(id, self.shared.document.load_full()),
        };
        self.snapshot_over(document)
    }

    /// [`Flags::snapshot`] over `document`, a live document the caller keeps: read with
    /// [`Flags::document_and_id`], and checked against [`Flags::document_id`] just before.
    /// (Any other document is evaluated as given, with this handle's kills and state.)
    #[inline]
    pub fn snapshot_of<'a>(
        &'a self,
        document: &'a Arc<Document>,
    ) -> Snapshot<'a, &'a Arc<Document>> {
        self.snapshot_over(document)
    }

    #[inline(always)]
    fn snapshot_over<D>(&self, document: D) -> Snapshot<'_, D> {
        Snapshot {
            document,
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

    /// Evaluates `flag` (a key, or an index into the live document) for `ctx` into an owned
    /// result (see [`Snapshot::evaluate`]; several evaluations that must see one document use
    /// one [`Flags::snapshot`]). Never fails. A read: counted as an exposure when exposures are
    /// on ([`Flags::enable_exposures`]).
    #[inline]
    pub fn evaluate<'k, C: Context + ?Sized>(
        &self,
        flag: impl Into<FlagRef<'k>>,
        ctx: &C,
        options: EvalOptions<'_>,
    ) -> Evaluation {
        let flag = flag.into();
        let snapshot = self.snapshot();
        let decision = snapshot.evaluate(flag, ctx, options);
        Evaluation::of_decision(&decision, flag, snapshot.document_arc())
    }

    /// Evaluates with the steps that led to the decision (see [`Snapshot::explain`]).
    pub fn explain<'k, C: Context + ?Sized>(
        &self,
        flag: impl Into<FlagRef<'k>>,
        ctx: &C,
        options: EvalOptions<'_>,
    ) -> Explanation {
        self.snapshot().explain(flag, ctx, options)
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
            fleet: self.fleet_status(now),
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
            autopilot: crate::live::status::autopilot_ramps(&self.shared.document.load(), now),
            exposures: self.shared.runtime.exposures.get().map(|log| log.to_json()),
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
