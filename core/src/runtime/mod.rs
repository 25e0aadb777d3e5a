//! The runtime around the call: fallback chains ([`call`]), outcomes and metrics
//! ([`metrics`]), guardrails ([`guardrail`]) and telemetry ([`events`]).
//!
//! The flag decides the variant; this module decides what happens around the user's model
//! call: which variant to try next, how an outcome changes the aggregates and the guardrails,
//! and which events go out. Bindings only run the user's function in their async idiom and
//! report back what happened (`Run::succeed` / `Run::fail`).

pub mod attempt_text;
pub mod budget;
pub mod call;
pub mod classify;
pub mod events;
pub mod guardrail;
pub mod metrics;
pub mod stats;
pub mod sticky;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustc_hash::FxHashMap;
use serde_json::{json, Map, Value};

use crate::document::{Flag, Variant};
use crate::hash::SaltedHasher;
use crate::live::Flags;
use crate::time::{format_timestamp, Millis};

pub use attempt_text::{attempt_message, parse_error_kind, timeout_message};
pub use call::{reseed_run_ids, Attempt, Run, Step, Usage};
pub use classify::{classify, ErrorFacts, ErrorKind};
pub use events::{CallbackSink, Event, EventSink, JsonLinesSink, UnitHasher};
pub use guardrail::{GuardAction, Guardrail, Metric, Trip};

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
struct RunRecord {
    flag: Arc<str>,
    variant: Arc<str>,
    segment: Option<Box<str>>,
    revision: Arc<str>,
    model: Option<Arc<str>>,
}

/// Recent runs in a ring indexed by the run number every run id carries
/// ([`call::run_number`]): remembering a run writes one slot, next to the previous one, and
/// overwrites the run [`MAX_RECENT_RUNS`] numbers older. (A hash map of random ids cost a
/// cache miss or two on every call.)
#[derive(Default)]
struct RecentRuns {
    slots: Vec<Option<(u128, RunRecord)>>,
}

impl RunRecord {
    fn new(
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
        }
    }
}

impl RecentRuns {
    fn slot(id: u128) -> usize {
        (call::run_number(id) % MAX_RECENT_RUNS as u64) as usize
    }

    fn insert(&mut self, id: u128, record: RunRecord) {
        let index = Self::slot(id);
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some((id, record));
        }
    }

    fn get(&self, id: u128) -> Option<&RunRecord> {
        match self.slots.get(Self::slot(id))? {
            Some((key, record)) if *key == id => Some(record),
            _ => None,
        }
    }
}

/// Key of one guardrail's state: flag, watched variant, guardrail id.
type GuardKey = (Arc<str>, Arc<str>, Arc<str>);

struct GuardEntry {
    config: Guardrail,
    state: GuardState,
    /// The flag's salt, for the probe draw.
    salt: Box<str>,
}

#[derive(Default)]
struct RuntimeState {
    metrics: MetricsStore,
    guards: FxHashMap<GuardKey, GuardEntry>,
    runs: RecentRuns,
}

/// The mutable state of a handle's runtime: aggregates, guardrail windows, recent runs and
/// sinks. One mutex guards the aggregates: a recorded outcome touches a few counters, far less
/// than the model call it describes.
pub struct Runtime {
    state: Mutex<RuntimeState>,
    /// Budget windows and reservations: their own lock, taken by evaluations of flags with
    /// budgets (never by others).
    budgets: Mutex<BudgetBook>,
    /// Conversation pins of sticky flags (the default store).
    pub(crate) pins: MemoryPins,
    sinks: ArcSwap<Vec<Arc<dyn EventSink>>>,
    has_sinks: AtomicBool,
    unit_hasher: ArcSwapOption<UnitHasher>,
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
        }
    }
}

impl Runtime {
    fn lock(&self) -> MutexGuard<'_, RuntimeState> {
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

    /// Turns budget transitions into `budget_exhausted` / `budget_restored` events.
    fn emit_budget_transitions(&self, transitions: Vec<BudgetTransition>, now: Millis) {
        if transitions.is_empty() || !self.wants_events() {
            return;
        }
        let events: Vec<Event> = transitions
            .into_iter()
            .map(|t| {
                let scope = if t.budget.per.is_some() {
                    self.unit_label(Some(&t.scope))
                } else {
                    Value::Null
                };
                json!({
                    "type": if t.exhausted { "budget_exhausted" } else { "budget_restored" },
                    "time": format_timestamp(now),
                    "flag": t.budget.flag.as_deref(),
                    "budget": &*t.budget.id,
                    "per": t.budget.per.as_deref(),
                    "scope": scope,
                    "measure": t.budget.measure.as_str(),
                    "limit": t.budget.limit,
                    "window": crate::time::format_duration(t.budget.window),
                    "action": t.budget.action_str(),
                    "spent": t.spent,
                    "reserved": t.reserved,
                })
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
    pub(crate) fn unit_label(&self, unit: Option<&str>) -> Value {
        match (unit, &*self.unit_hasher.load()) {
            (None, _) => Value::Null,
            (Some(unit), Some(hasher)) => Value::String(hasher.hash(unit)),
            (Some(unit), None) => Value::String(unit.to_string()),
        }
    }
}

/// One recorded attempt, for the runtime.
pub(crate) struct AttemptRecord<'a> {
    pub flag: &'a Flag,
    pub variant: usize,
    pub segment: Option<&'a str>,
    pub sample: AttemptSample,
    pub now: Millis,
    /// A successful attempt serves the run: remember it for `feedback` (run id, revision),
    /// under the same lock as the aggregates.
    pub serves_run: Option<(u128, &'a Arc<str>)>,
}

impl Flags {
    /// Sends every future event to `sink` as well.
    pub fn add_event_sink(&self, sink: Arc<dyn EventSink>) {
        let runtime = &self.shared.runtime;
        runtime.sinks.rcu(|sinks| {
            let mut next = Vec::clone(sinks);
            next.push(Arc::clone(&sink));
            next
        });
        runtime.has_sinks.store(true, Ordering::Release);
    }

    /// Appends every future event to a JSON-lines file.
    pub fn write_events_to(&self, path: impl AsRef<std::path::Path>) -> crate::error::Result<()> {
        let sink = JsonLinesSink::open(path)?;
        self.add_event_sink(Arc::new(sink));
        Ok(())
    }

    /// Hashes unit ids in events with this key (HMAC-SHA-256); `None` sends them as they are.
    pub fn set_unit_hash_key(&self, key: Option<&[u8]>) {
        self.shared
            .runtime
            .unit_hasher
            .store(key.map(|k| Arc::new(UnitHasher::new(k))));
    }

    /// Records one attempt: aggregates, guardrail windows (maybe a trip), and returns the
    /// guardrail events (the caller emits them with its own events, outside the lock).
    pub(crate) fn record_attempt(&self, record: &AttemptRecord<'_>, events: &mut Vec<Event>) {
        let flag = record.flag;
        let Some(variant) = flag.variants.get(record.variant) else {
            return;
        };
        let mut transitions = Vec::new();
        {
            let mut state = self.shared.runtime.lock();
            state
                .metrics
                .record_attempt(&flag.key, &variant.id, record.segment, &record.sample);
            if let Some((run_id, revision)) = record.serves_run {
                state.runs.insert(
                    run_id,
                    RunRecord::new(flag, variant, record.segment, revision),
                );
            }
            if record.sample.shadow {
                return;
            }
            for guardrail in flag
                .guardrails
                .iter()
                .filter(|g| g.variants.contains(&record.variant))
            {
                let failed = record.sample.error.is_some();
                let Some(observation) =
                    guardrail.observe(failed, record.sample.latency_ms, record.sample.cost)
                else {
                    continue;
                };
                if let Some(t) = observe(
                    &mut state,
                    flag,
                    &variant.id,
                    guardrail,
                    record.now,
                    observation,
                ) {
                    transitions.push(t);
                }
            }
        }
        self.apply_transitions(flag, transitions, record.now, events);
    }

    pub(crate) fn record_static(&self, flag: &Flag, variant: usize, segment: Option<&str>) {
        if let Some(v) = flag.variants.get(variant) {
            self.shared
                .runtime
                .lock()
                .metrics
                .record_static(&flag.key, &v.id, segment);
        }
    }

    pub(crate) fn remember_run(
        &self,
        run_id: u128,
        flag: &Flag,
        variant: usize,
        segment: Option<&str>,
        revision: &Arc<str>,
    ) {
        let Some(v) = flag.variants.get(variant) else {
            return;
        };
        let record = RunRecord::new(flag, v, segment, revision);
        self.shared.runtime.lock().runs.insert(run_id, record);
    }

    /// Attaches user feedback (`score`, e.g. +1/−1) and/or a quality score to the run that
    /// served it: metrics, quality guardrails and a `feedback` event. Returns `false` when the
    /// run is unknown (never seen, or older than the last [`MAX_RECENT_RUNS`] runs).
    pub fn feedback(&self, run_id: &str, score: Option<f64>, quality: Option<f64>) -> bool {
        let now = self.now_millis();
        let document = self.document();
        let mut transitions = Vec::new();
        let record = {
            let mut state = self.shared.runtime.lock();
            let Some(record) = call::parse_run_id(run_id)
                .and_then(|key| state.runs.get(key))
                .cloned()
            else {
                return false;
            };
            state.metrics.record_feedback(
                &record.flag,
                &record.variant,
                record.segment.as_deref(),
                score,
                quality,
            );
            if let (Some(quality), Some(flag)) = (quality, document.flag(&record.flag)) {
                let variant = flag.variant_position(&record.variant);
                for guardrail in flag
                    .guardrails
                    .iter()
                    .filter(|g| variant.is_some_and(|v| g.variants.contains(&v)))
                {
                    if let Some(observation) = guardrail.observe_quality(quality) {
                        if let Some(t) = observe(
                            &mut state,
                            flag,
                            &record.variant,
                            guardrail,
                            now,
                            observation,
                        ) {
                            transitions.push(t);
                        }
                    }
                }
            }
            record
        };
        let mut events = Vec::new();
        if let Some(flag) = document.flag(&record.flag) {
            self.apply_transitions(flag, transitions, now, &mut events);
        }
        if self.shared.runtime.wants_events() {
            events.insert(
                0,
                json!({
                    "type": "feedback",
                    "time": format_timestamp(now),
                    "run_id": run_id,
                    "flag": &*record.flag,
                    "variant": &*record.variant,
                    "revision": &*record.revision,
                    "model": record.model.as_deref(),
                    "segment": record.segment.as_deref(),
                    "score": score,
                    "quality": quality,
                }),
            );
        }
        self.shared.runtime.emit(&events);
        true
    }

    /// Publishes trips and recoveries to evaluation and turns them into events.
    fn apply_transitions(
        &self,
        flag: &Flag,
        transitions: Vec<(Arc<str>, Guardrail, Transition)>,
        now: Millis,
        events: &mut Vec<Event>,
    ) {
        if transitions.is_empty() {
            return;
        }
        let changes_trips = transitions
            .iter()
            .any(|(_, _, t)| matches!(t, Transition::Tripped(_) | Transition::Recovered(_)));
        if changes_trips {
            let trips = self.active_trips(&flag.key);
            self.publish_trips(&flag.key, trips);
        }
        let revision = self.document().revision().to_string();
        for (variant, guardrail, transition) in transitions {
            let (kind, reading) = match transition {
                Transition::Tripped(r) => ("guardrail_trip", Some(r)),
                Transition::Recovered(r) => ("guardrail_recover", Some(r)),
                Transition::Probing => ("guardrail_probe", None),
                Transition::None => continue,
            };
            let since = self
                .shared
                .runtime
                .lock()
                .guards
                .get(&(
                    Arc::clone(&flag.key),
                    Arc::clone(&variant),
                    Arc::clone(&guardrail.id),
                ))
                .and_then(|e| e.state.trip());
            events.push(json!({
                "type": kind,
                "time": format_timestamp(now),
                "flag": &*flag.key,
                "variant": &*variant,
                "revision": revision,
                "guardrail": &*guardrail.id,
                "metric": guardrail.metric.as_str(),
                "threshold": guardrail.threshold,
                "action": guardrail.action.as_str(),
                "samples": reading.map(|r| r.samples),
                "observed": reading.map(|r| r.observed),
                "bound": reading.map(|r| r.bound),
                "since": since.map(|(s, _)| format_timestamp(s)),
                "probe_from": since.map(|(_, p)| format_timestamp(p)),
            }));
        }
    }

    /// Every trip of a flag's guardrails, as evaluation reads them.
    fn active_trips(&self, flag_key: &Arc<str>) -> Vec<Trip> {
        let state = self.shared.runtime.lock();
        let mut trips: Vec<Trip> = state
            .guards
            .iter()
            .filter(|((flag, _, _), _)| flag == flag_key)
            .filter_map(|((_, variant, _), entry)| {
                let (since, probe_from) = entry.state.trip()?;
                Some(Trip {
                    guardrail: Arc::clone(&entry.config.id),
                    variant: Arc::clone(variant),
                    action: entry.config.action,
                    since,
                    probe_from,
                    probe_share: entry.config.probe_share,
                    probe_hasher: SaltedHasher::new(&format!(
                        "{}/probe/{}",
                        entry.salt, entry.config.id
                    )),
                })
            })
            .collect();
        trips.sort_by(|a, b| (a.since, &a.guardrail).cmp(&(b.since, &b.guardrail)));
        trips
    }

    /// Aggregates per flag × variant (× segment) with each variant's guardrail readings.
    pub fn metrics(&self) -> Value {
        let now = self.now_millis();
        let state = self.shared.runtime.lock();
        let mut out = state.metrics.to_json();
        let budgets = self.budget_states();
        if let (false, Value::Object(map)) = (budgets.is_empty(), &mut out) {
            // "$" cannot start a flag key: this entry never collides with a flag.
            map.insert("$budgets".into(), Value::Array(budgets));
        }
        let mut guards: Vec<_> = state.guards.iter().collect();
        guards.sort_by(|a, b| a.0.cmp(b.0));
        for ((flag, variant, id), entry) in guards {
            let reading = entry.state.reading(&entry.config, now);
            let trip = entry.state.trip();
            let state = match trip {
                None => "closed",
                Some((_, probe_from)) if now >= probe_from => "half_open",
                Some(_) => "tripped",
            };
            let body = json!({
                "metric": entry.config.metric.as_str(),
                "threshold": entry.config.threshold,
                "action": entry.config.action.as_str(),
                "state": state,
                "since": trip.map(|(s, _)| format_timestamp(s)),
                "probe_from": trip.map(|(_, p)| format_timestamp(p)),
                "samples": reading.samples,
                "observed": reading.observed,
                "bound": reading.bound,
            });
            let Value::Object(flags) = &mut out else {
                break;
            };
            let variants = flags
                .entry(flag.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(variants) = variants {
                let entry = variants
                    .entry(variant.to_string())
                    .or_insert_with(|| json!({}));
                if let Value::Object(entry) = entry {
                    let guardrails = entry
                        .entry("guardrails")
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(g) = guardrails {
                        g.insert(id.to_string(), body);
                    }
                }
            }
        }
        out
    }

    /// [`Flags::metrics`] in the Prometheus text exposition format.
    pub fn metrics_text(&self) -> String {
        let now = self.now_millis();
        let state = self.shared.runtime.lock();
        let mut guardrails: Vec<_> = state
            .guards
            .iter()
            .map(|((flag, variant, id), entry)| {
                let code = match entry.state.trip() {
                    None => 0,
                    Some((_, probe_from)) if now >= probe_from => 2,
                    Some(_) => 1,
                };
                (Arc::clone(flag), Arc::clone(variant), Arc::clone(id), code)
            })
            .collect();
        guardrails.sort();
        let mut text = state.metrics.to_prometheus(&guardrails);
        drop(state);
        metrics::budgets_to_prometheus(&self.budget_states(), &mut text);
        text
    }
}

/// Feeds one observation to a guardrail's state (created on first use).
fn observe(
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
    (transition != Transition::None).then(|| (Arc::clone(variant), guardrail.clone(), transition))
}
