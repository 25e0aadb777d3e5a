//! Runtime state of one handle: outcomes and metrics ([`metrics`]), guardrail windows
//! ([`guardrail`]), budget books ([`budget`]), conversation pins ([`sticky`]), event sinks
//! ([`events`]) and the exposures of plain reads ([`exposures`]).
//!
//! The document says what budgets, guardrails and pins *are* ([`crate::document`]); this
//! layer keeps what they have *seen*. The call around the model that feeds it is
//! [`crate::live::run`].

pub mod attempt_text;
pub mod budget;
pub mod classify;
pub mod events;
pub mod evidence;
pub mod exposures;
pub mod guardrail;
pub mod metrics;
pub mod run_id;
pub mod shared;
pub mod stats;
pub mod sticky;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use arc_swap::{ArcSwap, ArcSwapOption};
use events::{BudgetChange, EventBody};
use rustc_hash::FxHashMap;

use crate::document::guardrail::Guardrail;
use crate::document::{Flag, Variant};
use crate::time::{format_timestamp, Millis};

pub use attempt_text::{attempt_message, parse_error_kind, timeout_message};
pub use classify::{classify, ErrorFacts, ErrorKind};
pub(crate) use events::UnitHasher;
pub use events::{CallbackSink, Event, EventSink, JsonLinesSink};
pub use evidence::{check_feedback, check_tokens, check_usage};
pub use run_id::reseed_run_ids;

use budget::{BudgetBook, BudgetTransition};
use guardrail::{GuardState, Transition};
use metrics::{AttemptSample, MetricsStore};
use stats::Tally;
use sticky::MemoryPins;

/// Runs remembered for `feedback(run_id, …)`: the runs of the last this-many run numbers of the
/// process (older ones are forgotten).
pub const MAX_RECENT_RUNS: usize = 100_000;

/// The context attribute whose string value labels metrics by segment.
pub const SEGMENT_ATTRIBUTE: &str = "segment";

/// What `feedback` needs to know about a finished run.
#[derive(Debug, Clone)]
pub(crate) struct RunRecord {
    pub(crate) flag: Arc<str>,
    pub(crate) variant: Arc<str>,
    pub(crate) segment: Option<Box<str>>,
    pub(crate) revision: Arc<str>,
    pub(crate) model: Option<Arc<str>>,
    /// Whether a feedback score / a quality score was counted for this run: the first of each
    /// counts, later ones are ignored (a replayed feedback cannot outvote other runs).
    pub(crate) scored: bool,
    pub(crate) rated: bool,
}

/// Recent runs in a ring indexed by the run number every run id carries
/// ([`run_id::run_number`]): remembering a run writes one slot, next to the previous one, and
/// overwrites the run [`MAX_RECENT_RUNS`] numbers older. (A hash map of random ids cost a
/// cache miss or two on every call.)
#[derive(Default)]
pub(crate) struct RecentRuns {
    slots: Vec<Option<(u128, RunRecord)>>,
}

impl RunRecord {
    pub(crate) fn new(
        flag: &Flag,
        variant: &Variant,
        segment: Option<&str>,
        revision: &Arc<str>,
    ) -> RunRecord {
        RunRecord {
            flag: Arc::clone(&flag.key),
            variant: Arc::clone(&variant.id),
            segment: segment.map(Box::from),
            revision: Arc::clone(revision),
            model: variant.model.clone(),
            scored: false,
            rated: false,
        }
    }
}

impl RecentRuns {
    fn slot(id: u128) -> usize {
        (run_id::run_number(id) % MAX_RECENT_RUNS as u64) as usize
    }

    pub(crate) fn insert(&mut self, id: u128, record: RunRecord) {
        let index = Self::slot(id);
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some((id, record));
        }
    }

    pub(crate) fn get_mut(&mut self, id: u128) -> Option<&mut RunRecord> {
        match self.slots.get_mut(Self::slot(id))? {
            Some((key, record)) if *key == id => Some(record),
            _ => None,
        }
    }
}

/// Key of one guardrail's state: flag, watched variant, guardrail id.
type GuardKey = (Arc<str>, Arc<str>, Arc<str>);

pub(crate) struct GuardEntry {
    pub(crate) config: Guardrail,
    pub(crate) state: GuardState,
    /// The flag's salt, for the probe draw.
    pub(crate) salt: Box<str>,
}

#[derive(Default)]
pub(crate) struct RuntimeState {
    pub(crate) metrics: MetricsStore,
    pub(crate) guards: FxHashMap<GuardKey, GuardEntry>,
    pub(crate) runs: RecentRuns,
    /// The fleet, when the handle shares state: told of every guardrail observation.
    pub(crate) shared: shared::SharedHook,
}

/// Every lock of one handle's runtime, held by one thread: across `fork()`, so that the child
/// never starts with a lock that a thread of the parent held at the instant of the fork (that
/// thread does not exist in the child, and the lock would stay held for ever). Taken just
/// before the fork and dropped right after it, in the parent and in the child; while it is
/// held, no other thread is halfway through an update, so the child's copy is consistent.
/// See [`crate::Flags::hold_for_fork`].
pub struct ForkHold<'a> {
    _state: MutexGuard<'a, RuntimeState>,
    _budgets: MutexGuard<'a, BudgetBook>,
    _pins: MutexGuard<'a, sticky::PinTable>,
    _exposures: Option<MutexGuard<'a, exposures::LogState>>,
}

impl std::fmt::Debug for ForkHold<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForkHold")
    }
}

/// `mutex`'s lock if no other thread holds it. A poisoned lock counts as free: every update
/// under these locks leaves the state consistent (see [`Runtime::lock`]). Public for the
/// bindings' own locks held across `fork()`.
pub fn try_hold<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// The mutable state of a handle's runtime: aggregates, guardrail windows, recent runs and
/// sinks. One mutex guards the aggregates: a recorded outcome touches a few counters, far less
/// than the model call it describes.
pub(crate) struct Runtime {
    state: Mutex<RuntimeState>,
    /// Budget windows and reservations: their own lock, taken by evaluations of flags with
    /// budgets (never by others).
    budgets: Mutex<BudgetBook>,
    /// Conversation pins of sticky flags (the default store).
    pub(crate) pins: MemoryPins,
    pub(crate) sinks: ArcSwap<Vec<Arc<dyn EventSink>>>,
    pub(crate) has_sinks: AtomicBool,
    pub(crate) unit_hasher: ArcSwapOption<UnitHasher>,
    /// Exposures of plain reads, when the handle opted in at construction (see
    /// [`exposures`]); empty otherwise, which evaluation checks with one load.
    pub(crate) exposures: OnceLock<exposures::ExposureLog>,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            state: Mutex::new(RuntimeState::default()),
            budgets: Mutex::new(BudgetBook::default()),
            pins: MemoryPins::default(),
            sinks: ArcSwap::from_pointee(Vec::new()),
            has_sinks: AtomicBool::new(false),
            unit_hasher: ArcSwapOption::empty(),
            exposures: OnceLock::new(),
        }
    }
}

impl Runtime {
    pub(crate) fn lock(&self) -> MutexGuard<'_, RuntimeState> {
        // A sink or a binding that panicked while holding the lock leaves counters that are
        // still consistent (every update is a few additions): keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn budgets(&self) -> MutexGuard<'_, BudgetBook> {
        // Ledgers stay consistent across a panic elsewhere (each update is a few additions).
        self.budgets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every lock of this runtime at once, if no other thread holds any of them (see
    /// [`ForkHold`]). All or nothing: a lock held elsewhere releases the ones already taken.
    pub(crate) fn try_hold(&self) -> Option<ForkHold<'_>> {
        Some(ForkHold {
            _state: try_hold(&self.state)?,
            _budgets: try_hold(&self.budgets)?,
            _pins: self.pins.try_hold()?,
            _exposures: match self.exposures.get() {
                Some(log) => Some(log.try_hold()?),
                None => None,
            },
        })
    }

    /// Runs `work` on the budget book under its lock, then (after the lock) sends the
    /// exhausted / restored events it caused.
    pub(crate) fn with_budgets<R>(
        &self,
        now: Millis,
        work: impl FnOnce(&mut BudgetBook) -> R,
    ) -> R {
        let (result, transitions) = {
            let mut book = self.budgets();
            let result = work(&mut book);
            (result, book.take_transitions())
        };
        self.emit_budget_transitions(transitions, now);
        result
    }

    /// Shares this handle's budgets and guardrail evidence with a fleet (`None`: stop
    /// sharing; every process then enforces on its own book again).
    pub(crate) fn set_shared(&self, hook: shared::SharedHook) {
        self.budgets().shared = hook.clone();
        self.lock().shared = hook;
    }

    /// The fleet hook, if any.
    pub(crate) fn shared(&self) -> shared::SharedHook {
        self.lock().shared.clone()
    }

    /// Turns budget transitions into `budget_exhausted` / `budget_restored` events.
    fn emit_budget_transitions(&self, transitions: Vec<BudgetTransition>, now: Millis) {
        if transitions.is_empty() || !self.wants_events() {
            return;
        }
        let events: Vec<Event> = transitions
            .into_iter()
            .map(|t| {
                let change = BudgetChange {
                    time: format_timestamp(now),
                    flag: t.budget.flag.as_deref(),
                    budget: &t.budget.id,
                    per: t.budget.per.as_deref(),
                    scope: t
                        .budget
                        .per
                        .as_ref()
                        .and_then(|_| self.unit_label(Some(&t.scope))),
                    measure: t.budget.measure.as_str(),
                    limit: t.budget.limit,
                    window: crate::time::format_duration(t.budget.window),
                    action: t.budget.action_str(),
                    spent: t.spent,
                    reserved: t.reserved,
                };
                if t.exhausted {
                    EventBody::BudgetExhausted(change).to_event()
                } else {
                    EventBody::BudgetRestored(change).to_event()
                }
            })
            .collect();
        self.emit(&events);
    }

    pub(crate) fn wants_events(&self) -> bool {
        self.has_sinks.load(Ordering::Acquire)
    }

    pub(crate) fn emit(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let sinks = self.sinks.load();
        for event in events {
            for sink in sinks.iter() {
                sink.emit(event);
            }
        }
    }

    /// The unit as it may appear in events: hashed when a key is set.
    pub(crate) fn unit_label(&self, unit: Option<&str>) -> Option<String> {
        match (unit, &*self.unit_hasher.load()) {
            (None, _) => None,
            (Some(unit), Some(hasher)) => Some(hasher.hash(unit)),
            (Some(unit), None) => Some(unit.to_string()),
        }
    }
}

/// One recorded attempt, for the runtime.
pub(crate) struct AttemptRecord<'a> {
    pub(crate) flag: &'a Flag,
    pub(crate) variant: usize,
    pub(crate) segment: Option<&'a str>,
    pub(crate) sample: AttemptSample,
    pub(crate) now: Millis,
    /// A successful attempt serves the run: remember it for `feedback` (run id, revision),
    /// under the same lock as the aggregates.
    pub(crate) serves_run: Option<(u128, &'a Arc<str>)>,
}

/// Feeds one observation to a guardrail's state (created on first use).
pub(crate) fn observe(
    state: &mut RuntimeState,
    flag: &Flag,
    variant: &Arc<str>,
    guardrail: &Guardrail,
    now: Millis,
    observation: Tally,
) -> Option<(Arc<str>, Guardrail, Transition)> {
    let key = (
        Arc::clone(&flag.key),
        Arc::clone(variant),
        Arc::clone(&guardrail.id),
    );
    let entry = state.guards.entry(key).or_insert_with(|| GuardEntry {
        config: guardrail.clone(),
        state: GuardState::new(guardrail),
        salt: flag.salt.clone(),
    });
    // A reloaded document may have changed the threshold or the action: read the new one.
    entry.config = guardrail.clone();
    let transition = entry.state.observe(guardrail, now, observation);
    if let Some(fleet) = state.shared.get() {
        fleet.guardrail_observed(&flag.key, variant, guardrail, observation, now);
    }
    (transition != Transition::None).then(|| (Arc::clone(variant), guardrail.clone(), transition))
}
