//! The autopilot's evidence in Redis: per unit of randomisation, per live ramp step, what
//! `flagrail autopilot --redis` decides on (docs/autopilot.md, "Inputs from Redis").
//!
//! Each process of a fleet listens to its own events (an event sink on the handle, installed
//! once the document has an autopilot ramp): an `exposure` decided by an autopilot ramp's
//! rule names the run's unit and arm (candidate or control), its first `outcome` adds success
//! or error, latency and cost, its `feedback` adds quality and score. These are the events the
//! `--events` reader joins, read the same way, so both inputs give the same evidence.
//! What the sink keeps is added into a pending table in memory (one [`UnitTotals`] per unit
//! and step); the fleet's background thread adds it into Redis every 250 ms with one script
//! per batch, off the call path.
//!
//! **Keys** (all under the document key's hash tag, so one Cluster slot):
//!
//! | key | type | what |
//! |---|---|---|
//! | `autopilot:<flag>:<rule>:<step began, ms>` | hash | unit → `"<arm> <10 numbers>"` (arm `t` candidate, `c` control; the numbers of [`UnitTotals::to_fields`]) |
//! | `autopilot:<flag>:<rule>:<step began, ms>:dropped` | string | units not stored because the hash was full |
//!
//! A unit's arm is the arm it was first stored with; totals of the other arm are ignored (the
//! events reader keeps a unit in the arm of its first run the same way). Both keys expire
//! [`EVIDENCE_TTL_MS`] after their last write, and a step's hash holds at most
//! [`MAX_UNITS_PER_STEP`] units: the bound on Redis memory.
//!
//! **Memory in a process** is bounded too: the runs whose outcome or feedback may still come
//! ([`MAX_TRACKED_RUNS`], oldest forgotten first) and the pending units
//! ([`MAX_PENDING_UNITS`], reached only while Redis is unreachable; new units are then
//! dropped and counted in `status()["fleet"]["autopilot"]`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use flagrail_core::autopilot::events::{arms_from_units, UnitTotals};
use flagrail_core::autopilot::{look, ArmEvidence, GovernedState};
use flagrail_core::document::Action;
use flagrail_core::live::WeakFlags;
use flagrail_core::runtime::events::{Event, EventSink};
use flagrail_core::time::{parse_timestamp, Millis};
use flagrail_core::Document;
use rustc_hash::FxHashMap;
use serde_json::{json, Value};

use crate::connection::{FleetError, KeySpace, RedisConnection};
use crate::shared::series::{PendingSeries, SeriesMetric};

/// How long a step's evidence outlives its last write (7 days: longer than any sensible hold).
pub const EVIDENCE_TTL_MS: Millis = 7 * 24 * 3_600_000;
/// The most units one step's hash holds (about 100 bytes each in Redis: some 20 MB).
pub const MAX_UNITS_PER_STEP: u64 = 200_000;
/// The most runs a process remembers for their outcome and feedback.
pub const MAX_TRACKED_RUNS: usize = 100_000;
/// The most units a process holds before they reach Redis.
pub const MAX_PENDING_UNITS: usize = 50_000;
/// Units per script call (one call must not hold Redis for long).
const UNITS_PER_CALL: usize = 500;

/// Adds per-unit totals into a step's hash.
///
/// `KEYS[1]` the step's hash, `KEYS[2]` its dropped counter. ARGV: the unit cap, the TTL (ms),
/// then per unit: unit, arm (`t` / `c`), and the ten numbers. Returns how many new units did
/// not fit.
pub const EVIDENCE_SCRIPT: &str = r"
local cap = tonumber(ARGV[1])
local size = redis.call('HLEN', KEYS[1])
local dropped = 0
for i = 3, #ARGV, 12 do
  local unit = ARGV[i]
  local arm = ARGV[i + 1]
  local old = redis.call('HGET', KEYS[1], unit)
  if not old then
    if size < cap then
      local parts = {arm}
      for j = 2, 11 do parts[j] = ARGV[i + j] end
      redis.call('HSET', KEYS[1], unit, table.concat(parts, ' '))
      size = size + 1
    else
      dropped = dropped + 1
    end
  else
    local fields = {}
    for word in string.gmatch(old, '%S+') do fields[#fields + 1] = word end
    if fields[1] == arm and #fields == 11 then
      for j = 2, 11 do
        fields[j] = string.format('%.17g', tonumber(fields[j]) + tonumber(ARGV[i + j]))
      end
      redis.call('HSET', KEYS[1], unit, table.concat(fields, ' '))
    end
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if dropped > 0 then
  redis.call('INCRBY', KEYS[2], dropped)
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return dropped
";

/// The hash of one ramp step's evidence.
pub fn step_key(keys: &KeySpace, flag: &str, rule_id: &str, step_began: Millis) -> String {
    keys.sibling(&format!("autopilot:{flag}:{rule_id}:{step_began}"))
}

/// The counter of units that did not fit in the step's hash.
pub fn dropped_key(keys: &KeySpace, flag: &str, rule_id: &str, step_began: Millis) -> String {
    format!("{}:dropped", step_key(keys, flag, rule_id, step_began))
}

/// Whether `document` has a ramp with an autopilot (the sink is worth installing).
pub fn has_autopilot(document: &Document) -> bool {
    document.flags().iter().any(|flag| {
        flag.rules.iter().any(|rule| match &rule.action {
            Action::Ramp(ramp) => flag.autopilot_of(ramp).is_some(),
            _ => false,
        })
    })
}

/// Which step a ramp run counts in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StepId {
    pub flag: Box<str>,
    pub rule_id: Box<str>,
    pub step_began: Millis,
}

/// A run whose outcome or feedback may still come.
#[derive(Debug)]
struct TrackedRun {
    step: Arc<StepId>,
    unit: Box<str>,
    candidate: bool,
    outcome_seen: bool,
    /// The variant the run was served and when: where its values go in the series
    /// ([`super::series`]).
    variant: Box<str>,
    time_ms: Millis,
}

/// What a process holds before it reaches Redis.
#[derive(Debug, Default)]
pub struct PendingEvidence {
    runs: FxHashMap<Box<str>, TrackedRun>,
    order: VecDeque<Box<str>>,
    units: FxHashMap<(Arc<StepId>, Box<str>), (bool, UnitTotals)>,
    /// Units (with their runs) left out because the pending table was full.
    pub dropped_units: u64,
    /// Units a step's hash in Redis had no room for.
    pub dropped_in_redis: u64,
    /// Units written into Redis (new or added to).
    pub flushed_units: u64,
    /// The fleet state was closed: nothing flushes any more, so the sink (which stays on the
    /// handle) keeps nothing either.
    pub closed: bool,
    /// The same runs' values over time, for the report.
    pub series: PendingSeries,
}

impl PendingEvidence {
    fn track(&mut self, run_id: &str, run: TrackedRun) {
        if self.runs.len() >= MAX_TRACKED_RUNS {
            if let Some(oldest) = self.order.pop_front() {
                self.runs.remove(&oldest);
            }
        }
        self.order.push_back(Box::from(run_id));
        self.runs.insert(Box::from(run_id), run);
    }

    /// The unit's pending totals, when it may be counted in `candidate`'s arm.
    fn unit(&mut self, step: &Arc<StepId>, unit: &str, candidate: bool) -> Option<&mut UnitTotals> {
        let key = (Arc::clone(step), Box::from(unit));
        if !self.units.contains_key(&key) && self.units.len() >= MAX_PENDING_UNITS {
            self.dropped_units += 1;
            return None;
        }
        let entry = self
            .units
            .entry(key)
            .or_insert_with(|| (candidate, UnitTotals::default()));
        (entry.0 == candidate).then_some(&mut entry.1)
    }

    /// Takes everything pending, grouped by step.
    pub fn take(&mut self) -> BTreeMap<StepOrder, Vec<(Box<str>, bool, UnitTotals)>> {
        let mut by_step: BTreeMap<StepOrder, Vec<(Box<str>, bool, UnitTotals)>> = BTreeMap::new();
        for ((step, unit), (candidate, totals)) in self.units.drain() {
            by_step
                .entry(StepOrder(step))
                .or_default()
                .push((unit, candidate, totals));
        }
        for units in by_step.values_mut() {
            units.sort_by(|a, b| a.0.cmp(&b.0));
        }
        by_step
    }

    /// Puts back what could not be written (Redis failed), merged with what came since.
    pub fn put_back(&mut self, step: &Arc<StepId>, units: Vec<(Box<str>, bool, UnitTotals)>) {
        for (unit, candidate, totals) in units {
            let key = (Arc::clone(step), unit);
            let full = self.units.len() >= MAX_PENDING_UNITS;
            match self.units.get_mut(&key) {
                Some(entry) if entry.0 == candidate => entry.1.merge(&totals),
                Some(_) => {}
                None if !full => {
                    self.units.insert(key, (candidate, totals));
                }
                None => self.dropped_units += 1,
            }
        }
    }

    pub fn status_json(&self) -> Value {
        json!({
            "tracked_runs": self.runs.len(),
            "pending_units": self.units.len(),
            "dropped_units": self.dropped_units,
            "dropped_in_redis": self.dropped_in_redis,
            "flushed_units": self.flushed_units,
            "pending_points": self.series.len(),
            "dropped_points": self.series.dropped_points,
        })
    }
}

/// A step, ordered for a deterministic flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOrder(pub Arc<StepId>);

impl PartialOrd for StepOrder {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for StepOrder {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.0.flag, &self.0.rule_id, self.0.step_began).cmp(&(
            &other.0.flag,
            &other.0.rule_id,
            other.0.step_began,
        ))
    }
}

/// The event sink that feeds [`PendingEvidence`] (memory only: it runs on the thread that
/// produced the event).
pub struct EvidenceSink {
    pub(crate) pending: Weak<Mutex<PendingEvidence>>,
    pub(crate) flags: WeakFlags,
}

fn text<'a>(event: &'a Event, field: &str) -> Option<&'a str> {
    event.get(field).and_then(Value::as_str)
}

/// Where a run of `flag` decided by `rule_id` at `at` counts: its step, and the ids of the
/// candidate and the control. `None` when the rule is no autopilot ramp or the ramp has no
/// control arm at `at`.
fn step_of(document: &Document, flag: &str, rule_id: &str, at: Millis) -> Option<StepSeen> {
    let flag = document.flag(flag)?;
    let rule = flag.rules.iter().find(|r| &*r.id == rule_id)?;
    let Action::Ramp(ramp) = &rule.action else {
        return None;
    };
    let spec = flag.autopilot_of(ramp)?;
    let seen = look(ramp, spec, at);
    if matches!(
        seen.state,
        GovernedState::RolledBack | GovernedState::NotStarted | GovernedState::Complete
    ) {
        return None;
    }
    Some(StepSeen {
        step_began: seen.step_began_ms?,
        candidate: flag.variants.get(ramp.variant)?.id.to_string(),
        control: spec.control.clone(),
    })
}

struct StepSeen {
    step_began: Millis,
    candidate: String,
    control: String,
}

impl EventSink for EvidenceSink {
    fn emit(&self, event: &Event) {
        let Some(pending) = self.pending.upgrade() else {
            return;
        };
        if event.get("shadow").and_then(Value::as_bool) == Some(true) {
            return;
        }
        let Some(run_id) = text(event, "run_id") else {
            return;
        };
        match text(event, "type") {
            Some("exposure") => {
                let (Some(flag), Some(rule_id), Some(variant)) = (
                    text(event, "flag"),
                    text(event, "rule_id"),
                    text(event, "variant"),
                ) else {
                    return;
                };
                let Some(at) = text(event, "time").and_then(parse_timestamp) else {
                    return;
                };
                let Some(flags) = self.flags.upgrade() else {
                    return;
                };
                let Some(seen) = step_of(&flags.document(), flag, rule_id, at) else {
                    return;
                };
                let candidate = if variant == seen.candidate {
                    true
                } else if variant == seen.control {
                    false
                } else {
                    return;
                };
                let step = Arc::new(StepId {
                    flag: Box::from(flag),
                    rule_id: Box::from(rule_id),
                    step_began: seen.step_began,
                });
                // A run without a recorded unit counts as its own unit (as the events reader).
                let unit = text(event, "unit").unwrap_or(run_id);
                let mut pending = crate::shared::lock(&pending);
                if pending.closed {
                    return;
                }
                if pending.unit(&step, unit, candidate).is_none() {
                    return;
                }
                pending.track(
                    run_id,
                    TrackedRun {
                        step,
                        unit: Box::from(unit),
                        candidate,
                        outcome_seen: false,
                        variant: Box::from(variant),
                        time_ms: at,
                    },
                );
            }
            Some("outcome") => {
                let mut pending = crate::shared::lock(&pending);
                if pending.closed {
                    return;
                }
                let Some(run) = pending.runs.get_mut(run_id) else {
                    return;
                };
                if run.outcome_seen {
                    return;
                }
                run.outcome_seen = true;
                let (step, unit, candidate) =
                    (Arc::clone(&run.step), run.unit.clone(), run.candidate);
                let (variant, time_ms) = (run.variant.clone(), run.time_ms);
                let error = text(event, "outcome") == Some("error");
                let number = |field: &str| event.get(field).and_then(Value::as_f64);
                let (latency, cost) = (number("latency_ms"), number("cost"));
                if let Some(totals) = pending.unit(&step, &unit, candidate) {
                    totals.add_outcome(error, latency, cost);
                }
                let series = &mut pending.series;
                let error_rate = if error { 1.0 } else { 0.0 };
                series.add(
                    &step.flag,
                    &variant,
                    time_ms,
                    SeriesMetric::ErrorRate,
                    error_rate,
                );
                for (metric, value) in [
                    (SeriesMetric::LatencyMs, latency),
                    (SeriesMetric::Cost, cost),
                ] {
                    if let Some(value) = value {
                        series.add(&step.flag, &variant, time_ms, metric, value);
                    }
                }
            }
            Some("feedback") => {
                let mut pending = crate::shared::lock(&pending);
                if pending.closed {
                    return;
                }
                let Some(run) = pending.runs.get(run_id) else {
                    return;
                };
                let (step, unit, candidate) =
                    (Arc::clone(&run.step), run.unit.clone(), run.candidate);
                let (variant, time_ms) = (run.variant.clone(), run.time_ms);
                let number = |field: &str| event.get(field).and_then(Value::as_f64);
                let (quality, score) = (number("quality"), number("score"));
                if let Some(totals) = pending.unit(&step, &unit, candidate) {
                    totals.add_feedback(quality, score);
                }
                if let Some(quality) = quality {
                    let series = &mut pending.series;
                    series.add(
                        &step.flag,
                        &variant,
                        time_ms,
                        SeriesMetric::Quality,
                        quality,
                    );
                }
            }
            _ => {}
        }
    }
}

/// Shortest text that reads back as the same `f64` (Rust's `Display`; Lua's `tonumber`).
fn number_text(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "0".to_string()
    }
}

/// Adds one batch of a step's units (at most [`chunk_size`]) into its
/// hash `hash` in one script call. Returns how many new units the hash had no room for.
pub fn write_units(
    connection: &mut RedisConnection,
    script: &redis::Script,
    hash: &str,
    dropped_counter: &str,
    units: &[(Box<str>, bool, UnitTotals)],
) -> redis::RedisResult<u64> {
    let mut invocation = script.prepare_invoke();
    invocation
        .key(hash)
        .key(dropped_counter)
        .arg(MAX_UNITS_PER_STEP)
        .arg(EVIDENCE_TTL_MS);
    for (unit, candidate, totals) in units {
        invocation
            .arg(&**unit)
            .arg(if *candidate { "t" } else { "c" });
        for x in totals.to_fields() {
            invocation.arg(number_text(x));
        }
    }
    invocation.invoke::<u64>(connection)
}

/// How many units one script call carries (one call must not hold Redis for long).
pub const fn chunk_size() -> usize {
    UNITS_PER_CALL
}

/// One step's evidence as stored in Redis.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredStep {
    /// Per unit (sorted by unit): whether it is in the candidate's arm, and its totals.
    pub units: BTreeMap<String, (bool, UnitTotals)>,
    /// Units the hash had no room for.
    pub dropped_units: u64,
    /// Fields that could not be read (not written by this module).
    pub unreadable: u64,
}

impl StoredStep {
    /// `(control, candidate)`, exactly as the events reader builds them from the same runs.
    pub fn arms(&self) -> (ArmEvidence, ArmEvidence) {
        arms_from_units(self.units.values().copied())
    }
}

fn parse_unit(value: &str) -> Option<(bool, UnitTotals)> {
    let mut words = value.split(' ');
    let candidate = match words.next()? {
        "t" => true,
        "c" => false,
        _ => return None,
    };
    let mut fields = [0.0; UnitTotals::FIELDS];
    for slot in &mut fields {
        *slot = words.next()?.parse::<f64>().ok()?;
    }
    if words.next().is_some() {
        return None;
    }
    Some((candidate, UnitTotals::from_fields(&fields)))
}

/// Reads one step's evidence (`HSCAN`, so a large hash does not block Redis).
pub fn read_step(
    connection: &mut RedisConnection,
    target: &str,
    keys: &KeySpace,
    flag: &str,
    rule_id: &str,
    step_began: Millis,
) -> std::result::Result<StoredStep, FleetError> {
    let hash = step_key(keys, flag, rule_id, step_began);
    let fail = |error: redis::RedisError| FleetError::from_redis(target, &error);
    let mut stored = StoredStep::default();
    let mut cursor: u64 = 0;
    loop {
        let (next, flat): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg(&hash)
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query(connection)
            .map_err(fail)?;
        for pair in flat.chunks(2) {
            let (Some(unit), Some(value)) = (pair.first(), pair.get(1)) else {
                continue;
            };
            match parse_unit(value) {
                Some(entry) => {
                    stored.units.insert(unit.clone(), entry);
                }
                None => stored.unreadable += 1,
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let dropped: Option<u64> = redis::cmd("GET")
        .arg(dropped_key(keys, flag, rule_id, step_began))
        .query(connection)
        .map_err(fail)?;
    stored.dropped_units = dropped.unwrap_or(0);
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_units_read_back_exactly() {
        let mut totals = UnitTotals::default();
        totals.add_outcome(true, Some(123.456_789_012_345), Some(0.1));
        totals.add_feedback(Some(0.3), None);
        let text = format!(
            "t {}",
            totals
                .to_fields()
                .iter()
                .map(|x| number_text(*x))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert_eq!(parse_unit(&text), Some((true, totals)));
        assert_eq!(parse_unit("x 1 2"), None);
        assert_eq!(parse_unit("c 1 2 3"), None);
    }

    #[test]
    fn a_unit_keeps_the_arm_it_was_first_seen_in_and_the_table_is_bounded() {
        let mut pending = PendingEvidence::default();
        let step = Arc::new(StepId {
            flag: "bot".into(),
            rule_id: "canary".into(),
            step_began: 0,
        });
        assert!(pending.unit(&step, "u1", true).is_some());
        assert!(pending.unit(&step, "u1", false).is_none());
        for i in 0..MAX_PENDING_UNITS {
            let _ = pending.unit(&step, &format!("x{i}"), false);
        }
        assert_eq!(pending.units.len(), MAX_PENDING_UNITS);
        assert!(pending.dropped_units > 0);
        let taken = pending.take();
        assert_eq!(taken.len(), 1);
        assert!(pending.units.is_empty());
    }
}
