//! What the live handle reports and learns after a call: event sinks, recorded attempts and
//! feedback (which feed the guardrails), and metrics.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::document::guardrail::Guardrail;
use crate::document::Flag;
use crate::evaluate::overlay::Trip;
use crate::hash::SaltedHasher;
use crate::live::handle::Flags;
use crate::runtime::events::{
    Event, EventBody, EventSink, Feedback, GuardrailChange, JsonLinesSink, UnitHasher,
};
use crate::runtime::evidence::check_feedback;
use crate::runtime::exposures::{ExposureLog, ExposureOptions};
use crate::runtime::guardrail::Transition;
use crate::runtime::metrics;
use crate::runtime::run_id::parse_run_id;
use crate::runtime::{observe, AttemptRecord, RunRecord};
use crate::time::{format_timestamp, Millis};

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

    /// Stops sending events to `sink` (found by identity, as given to
    /// [`Flags::add_event_sink`]). Returns whether it was there.
    pub fn remove_event_sink(&self, sink: &Arc<dyn EventSink>) -> bool {
        let runtime = &self.shared.runtime;
        let mut removed = false;
        runtime.sinks.rcu(|sinks| {
            let next: Vec<Arc<dyn EventSink>> = sinks
                .iter()
                .filter(|kept| !Arc::ptr_eq(kept, sink))
                .cloned()
                .collect();
            removed = next.len() < sinks.len();
            next
        });
        // `has_sinks` stays set: clearing it could race with a sink being added, and it only
        // spares building events nobody reads.
        removed
    }

    /// Appends every future event to a JSON-lines file.
    pub fn write_events_to(&self, path: impl AsRef<std::path::Path>) -> crate::error::Result<()> {
        let sink = JsonLinesSink::open(path)?;
        self.add_event_sink(Arc::new(sink));
        Ok(())
    }

    /// Turns on exposures of plain reads (see [`crate::runtime::exposures`]): from now on each
    /// read of a known flag is counted per variant, and the first read of each unit, flag and
    /// revision in the window whose unit is sampled sends an `exposure` event (`source`
    /// `"read"`). Once per handle, at construction: `INVALID_ARGUMENT` when they are on already.
    pub fn enable_exposures(&self, options: ExposureOptions) -> crate::error::Result<()> {
        self.shared
            .runtime
            .exposures
            .set(ExposureLog::new(options))
            .map_err(|_| crate::error::Error::InvalidArgument {
                message: "exposures: already on for this handle (set them once, at construction)"
                    .into(),
            })
    }

    /// Whether exposures of plain reads are on ([`Flags::enable_exposures`]): a binding then
    /// reads the unit and the segment label for reads too (the flag's `run_attributes`).
    pub fn exposures_enabled(&self) -> bool {
        self.shared.runtime.exposures.get().is_some()
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
            // Shadow attempts never feed guardrails, nor do errors that say nothing about the
            // variant (the request's fault, or no call thread free in this process).
            if record.sample.shadow
                || record
                    .sample
                    .error
                    .is_some_and(|kind| !kind.counts_against_variant())
            {
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

    /// Attaches user feedback (`score`, −1 to 1) and/or a quality score (0 to 1) to the run
    /// that served it: metrics, quality guardrails and a `feedback` event.
    ///
    /// One score and one quality count per run: the first of each wins, later ones are
    /// ignored. Returns `Ok(false)` when the run is unknown (never seen, or older than the last
    /// [`crate::runtime::MAX_RECENT_RUNS`] runs) or when every value given was already counted
    /// for it, and `INVALID_ARGUMENT` for a value outside its range
    /// ([`crate::runtime::evidence::check_feedback`]), before anything is recorded.
    pub fn feedback(
        &self,
        run_id: &str,
        score: Option<f64>,
        quality: Option<f64>,
    ) -> crate::error::Result<bool> {
        check_feedback(score, quality)?;
        let now = self.now_millis();
        let document = self.document();
        let mut transitions = Vec::new();
        let (record, score, quality) = {
            let mut state = self.shared.runtime.lock();
            let Some(record) = parse_run_id(run_id).and_then(|key| state.runs.get_mut(key)) else {
                return Ok(false);
            };
            let asked = score.is_some() || quality.is_some();
            let score = score.filter(|_| !record.scored);
            let quality = quality.filter(|_| !record.rated);
            let counted = score.is_some() || quality.is_some();
            record.scored |= score.is_some();
            record.rated |= quality.is_some();
            let record = record.clone();
            if !counted {
                // A call with neither value (a known run: `true`), or a replay (`false`).
                return Ok(!asked);
            }
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
            (record, score, quality)
        };
        let mut events = Vec::new();
        if let Some(flag) = document.flag(&record.flag) {
            self.apply_transitions(flag, transitions, now, &mut events);
        }
        if self.shared.runtime.wants_events() {
            let body = EventBody::Feedback(Feedback {
                time: format_timestamp(now),
                run_id,
                flag: &record.flag,
                variant: &record.variant,
                revision: &record.revision,
                model: record.model.as_deref(),
                segment: record.segment.as_deref(),
                score,
                quality,
            });
            events.insert(0, body.to_event());
        }
        self.shared.runtime.emit(&events);
        Ok(true)
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
        self.offer_trips_to_fleet(flag, &transitions);
        if changes_trips {
            let trips = self.active_trips(&flag.key);
            self.publish_trips(&flag.key, trips);
        }
        let document = self.document();
        let revision = document.revision();
        for (variant, guardrail, transition) in transitions {
            let reading = match transition {
                Transition::Tripped(r) | Transition::Recovered(r) => Some(r),
                Transition::Probing => None,
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
            let change = GuardrailChange {
                time: format_timestamp(now),
                flag: &flag.key,
                variant: &variant,
                revision,
                guardrail: &guardrail.id,
                metric: guardrail.metric.as_str(),
                threshold: guardrail.threshold,
                action: guardrail.action.as_str(),
                samples: reading.map(|r| r.samples),
                observed: reading.map(|r| r.observed),
                bound: reading.map(|r| r.bound),
                since: since.map(|(s, _)| format_timestamp(s)),
                probe_from: since.map(|(_, p)| format_timestamp(p)),
            };
            let body = match transition {
                Transition::Tripped(_) => EventBody::GuardrailTrip(change),
                Transition::Recovered(_) => EventBody::GuardrailRecover(change),
                _ => EventBody::GuardrailProbe(change),
            };
            events.push(body.to_event());
        }
    }

    /// Every trip of a flag's guardrails, as evaluation reads them.
    pub(crate) fn active_trips(&self, flag_key: &Arc<str>) -> Vec<Trip> {
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
        if let (Some(log), Value::Object(map)) = (self.shared.runtime.exposures.get(), &mut out) {
            // The same counts as `status()["exposures"]`, beside the outcomes they explain.
            map.insert("$exposures".into(), log.to_json());
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
            let body = metrics::GuardrailReport {
                metric: entry.config.metric.as_str(),
                threshold: entry.config.threshold,
                action: entry.config.action.as_str(),
                state,
                since: trip.map(|(s, _)| format_timestamp(s)),
                probe_from: trip.map(|(_, p)| format_timestamp(p)),
                samples: reading.samples,
                observed: reading.observed,
                bound: reading.bound,
            }
            .to_json();
            let Value::Object(flags) = &mut out else {
                break;
            };
            let variants = flags
                .entry(flag.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(variants) = variants {
                let entry = variants
                    .entry(variant.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
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
        if let Some(log) = self.shared.runtime.exposures.get() {
            log.to_prometheus(&mut text);
        }
        let status = self.status();
        metrics::document_to_prometheus(
            &status.revision,
            status.loaded_at,
            status.reloads,
            status.rejected,
            &mut text,
        );
        if let Some(fleet) = &status.fleet {
            // Only with shared state: whether this process reaches the fleet's Redis now (0
            // means it enforces budgets locally; docs/fleet.md, "When Redis is down").
            let connected = fleet.get("connected").and_then(Value::as_bool) == Some(true);
            text.push_str(
                "# HELP flagrail_fleet_connected Whether shared fleet state (Redis) is reachable from this process.\n\
                 # TYPE flagrail_fleet_connected gauge\n",
            );
            text.push_str(if connected {
                "flagrail_fleet_connected 1\n"
            } else {
                "flagrail_fleet_connected 0\n"
            });
        }
        text
    }
}
