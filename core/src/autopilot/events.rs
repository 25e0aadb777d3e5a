//! The autopilot's input from events JSON lines (what `call`, trackers and `feedback` write,
//! see `runtime::events`): the runs of a flag, and each arm's per-unit evidence in a step.
//!
//! A run is joined from its events by `run_id`: the `exposure` says which variant, rule, unit
//! and revision, the first non-shadow `outcome` says success or error, latency and cost, and
//! `feedback` adds quality and score. **The unit of analysis is the unit of randomisation**:
//! each unit contributes one value per metric (its error share, its mean latency, cost,
//! quality, score over its runs), never one value per request.
//!
//! Reading is lenient the way a log reader must be: lines that are not JSON objects, or events
//! of kinds the autopilot does not use, are counted and skipped, never fatal.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::decide::ArmEvidence;
use crate::time::{parse_timestamp, Millis};

/// One run of a flag: an exposure and what followed it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Run {
    pub run_id: String,
    pub flag: String,
    pub variant: Option<String>,
    pub revision: String,
    pub reason: Option<String>,
    pub rule_id: Option<String>,
    /// The unit as recorded (hashed `h:…` when the process hashes units; `null` when the
    /// context had none).
    pub unit: Option<String>,
    pub segment: Option<String>,
    /// RFC 3339, as recorded.
    pub time: String,
    #[serde(skip)]
    pub time_ms: Millis,
    /// `success` or `error` of the first attempt, `null` while none was recorded.
    pub outcome: Option<String>,
    /// The variant that finally served, when a fallback did.
    pub served_by: Option<String>,
    pub error_kind: Option<String>,
    pub latency_ms: Option<f64>,
    pub cost: Option<f64>,
    pub quality: Option<f64>,
    pub score: Option<f64>,
}

/// A guardrail, budget or reload event kept as recorded (for reports).
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub kind: String,
    pub time_ms: Millis,
    pub flag: Option<String>,
    pub event: Value,
}

/// Everything read from events files.
#[derive(Debug, Clone, Default)]
pub struct EventLog {
    /// Runs in the order their exposures were read.
    pub runs: Vec<Run>,
    /// Guardrail trips, probes and recoveries, budget exhaustion and restoration, reloads.
    pub notices: Vec<Notice>,
    /// Lines that were not events this reader understands (not JSON, no `type`, no time).
    pub skipped_lines: u64,
    index: HashMap<String, usize>,
}

#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    time: Option<String>,
    run_id: Option<String>,
    flag: Option<String>,
    variant: Option<String>,
    revision: Option<String>,
    reason: Option<String>,
    rule_id: Option<String>,
    unit: Option<String>,
    segment: Option<String>,
    #[serde(default)]
    shadow: bool,
    /// `"read"` for the exposure of a plain read (no run to join), `"run"` or absent otherwise.
    source: Option<String>,
    attempt: Option<u64>,
    outcome: Option<String>,
    error_kind: Option<String>,
    latency_ms: Option<f64>,
    cost: Option<f64>,
    quality: Option<f64>,
    score: Option<f64>,
}

impl EventLog {
    /// Adds the events of one JSON-lines text.
    pub fn read(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if !self.add_line(line) {
                self.skipped_lines += 1;
            }
        }
    }

    fn add_line(&mut self, line: &str) -> bool {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            return false;
        };
        let Ok(event) = Line::deserialize(&value) else {
            return false;
        };
        let Some(time_ms) = event.time.as_deref().and_then(parse_timestamp) else {
            return false;
        };
        match event.kind.as_str() {
            // A plain read's exposure has no run (and no outcome): nothing to join.
            "exposure" if event.source.as_deref() == Some("read") => true,
            "exposure" => {
                let (Some(run_id), Some(flag)) = (event.run_id, event.flag) else {
                    return false;
                };
                if event.shadow {
                    return true;
                }
                let run = Run {
                    run_id: run_id.clone(),
                    flag,
                    variant: event.variant,
                    revision: event.revision.unwrap_or_default(),
                    reason: event.reason,
                    rule_id: event.rule_id,
                    unit: event.unit,
                    segment: event.segment,
                    time: event.time.unwrap_or_default(),
                    time_ms,
                    ..Run::default()
                };
                self.index.insert(run_id, self.runs.len());
                self.runs.push(run);
                true
            }
            "outcome" => {
                let Some(run) = self.run_mut(event.run_id.as_deref()) else {
                    return !event.shadow && event.run_id.is_some();
                };
                if event.shadow {
                    return true;
                }
                if event.attempt == Some(1) || run.outcome.is_none() {
                    run.outcome = event.outcome.clone();
                    run.error_kind = event.error_kind;
                    run.latency_ms = event.latency_ms;
                    run.cost = event.cost;
                }
                if event.outcome.as_deref() == Some("success")
                    && event.variant.is_some()
                    && event.variant != run.variant
                {
                    run.served_by = event.variant;
                }
                true
            }
            "feedback" => {
                let Some(run) = self.run_mut(event.run_id.as_deref()) else {
                    return event.run_id.is_some();
                };
                if event.quality.is_some() {
                    run.quality = event.quality;
                }
                if event.score.is_some() {
                    run.score = event.score;
                }
                true
            }
            kind if kind.starts_with("guardrail_")
                || kind.starts_with("budget_")
                || kind.starts_with("reload") =>
            {
                self.notices.push(Notice {
                    kind: kind.to_string(),
                    time_ms,
                    flag: event.flag,
                    event: value,
                });
                true
            }
            _ => false,
        }
    }

    fn run_mut(&mut self, run_id: Option<&str>) -> Option<&mut Run> {
        let at = *self.index.get(run_id?)?;
        self.runs.get_mut(at)
    }
}

/// Which runs form the two arms of a ramp.
#[derive(Debug, Clone, Copy)]
pub struct Arms<'a> {
    pub flag: &'a str,
    /// The ramp rule's id: only runs the ramp decided count (not targeting, not kills).
    pub rule_id: &'a str,
    pub candidate: &'a str,
    pub control: &'a str,
    /// The step's window, inclusive of `from`, exclusive of `until`.
    pub from: Millis,
    pub until: Millis,
}

/// One unit's runs in a step, summed: what the autopilot keeps per unit of randomisation.
///
/// The events reader builds one per unit from its runs; a fleet adds these up across
/// processes (the sums and counts add; `flagrail-fleet` keeps them per unit in Redis). Either
/// way [`arms_from_units`] turns them into the per-unit values the test needs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UnitTotals {
    /// Runs with a recorded first outcome, and how many of those were errors.
    pub with_outcome: u64,
    pub(crate) errors: u64,
    /// `(sum, count)` of each measurement over the unit's runs that reported it.
    pub(crate) latency: (f64, u64),
    pub(crate) cost: (f64, u64),
    pub(crate) quality: (f64, u64),
    pub(crate) score: (f64, u64),
}

impl UnitTotals {
    /// The fields in a fixed order (the order `flagrail-fleet` stores them in).
    pub const FIELDS: usize = 10;

    fn add(&mut self, run: &Run) {
        if let Some(outcome) = run.outcome.as_deref() {
            self.add_outcome(outcome == "error", run.latency_ms, run.cost);
        }
        self.add_feedback(run.quality, run.score);
    }

    /// Counts a run's first outcome (non-finite measurements are left out, as the events
    /// reader does).
    pub fn add_outcome(&mut self, error: bool, latency_ms: Option<f64>, cost: Option<f64>) {
        self.with_outcome += 1;
        self.errors += u64::from(error);
        Self::add_value(&mut self.latency, latency_ms);
        Self::add_value(&mut self.cost, cost);
    }

    /// Counts a run's quality and score.
    pub fn add_feedback(&mut self, quality: Option<f64>, score: Option<f64>) {
        Self::add_value(&mut self.quality, quality);
        Self::add_value(&mut self.score, score);
    }

    fn add_value(slot: &mut (f64, u64), value: Option<f64>) {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            slot.0 += v;
            slot.1 += 1;
        }
    }

    /// Adds another partial total of the same unit.
    pub fn merge(&mut self, other: &UnitTotals) {
        self.with_outcome += other.with_outcome;
        self.errors += other.errors;
        for (mine, theirs) in [
            (&mut self.latency, other.latency),
            (&mut self.cost, other.cost),
            (&mut self.quality, other.quality),
            (&mut self.score, other.score),
        ] {
            mine.0 += theirs.0;
            mine.1 += theirs.1;
        }
    }

    /// The fields as numbers: outcomes, errors, then sum and count of latency, cost,
    /// quality and score.
    pub fn to_fields(&self) -> [f64; Self::FIELDS] {
        [
            self.with_outcome as f64,
            self.errors as f64,
            self.latency.0,
            self.latency.1 as f64,
            self.cost.0,
            self.cost.1 as f64,
            self.quality.0,
            self.quality.1 as f64,
            self.score.0,
            self.score.1 as f64,
        ]
    }

    /// The inverse of [`UnitTotals::to_fields`] (counts are rounded down to whole numbers;
    /// negative or non-finite counts read as 0).
    pub fn from_fields(fields: &[f64; Self::FIELDS]) -> UnitTotals {
        let count = |x: f64| {
            if x.is_finite() && x > 0.0 {
                x as u64
            } else {
                0
            }
        };
        UnitTotals {
            with_outcome: count(fields[0]),
            errors: count(fields[1]),
            latency: (fields[2], count(fields[3])),
            cost: (fields[4], count(fields[5])),
            quality: (fields[6], count(fields[7])),
            score: (fields[8], count(fields[9])),
        }
    }

    fn into_evidence(self, evidence: &mut ArmEvidence) {
        evidence.units += 1;
        let mut push = |name: &str, value: Option<f64>| {
            if let Some(v) = value {
                evidence
                    .metrics
                    .entry(name.to_string())
                    .or_default()
                    .push(v);
            }
        };
        let mean = |(sum, n): (f64, u64)| (n > 0).then(|| sum / n as f64);
        push(
            "error_rate",
            (self.with_outcome > 0).then(|| self.errors as f64 / self.with_outcome as f64),
        );
        push("latency_ms", mean(self.latency));
        push("cost", mean(self.cost));
        push("quality", mean(self.quality));
        push("score", mean(self.score));
    }
}

/// The control's and the candidate's evidence (`(control, candidate)`) from per-unit totals,
/// each with whether the unit is in the candidate's arm. Each unit contributes one value per
/// metric. The order of `units` is the order values are added in: give it sorted by unit (as
/// [`arm_evidence`] does) for results that match to the last bit.
pub fn arms_from_units(
    units: impl IntoIterator<Item = (bool, UnitTotals)>,
) -> (ArmEvidence, ArmEvidence) {
    let mut control = ArmEvidence::default();
    let mut candidate = ArmEvidence::default();
    for (is_candidate, totals) in units {
        totals.into_evidence(if is_candidate {
            &mut candidate
        } else {
            &mut control
        });
    }
    (control, candidate)
}

/// The control's and the candidate's per-unit evidence in the step (`(control, candidate)`).
///
/// A unit belongs to the arm of its first run in the window (a sticky pin or a fallback can
/// show it on the other variant later; switching arms would count it twice). A run without a
/// recorded unit counts as its own unit.
pub fn arm_evidence(log: &EventLog, arms: &Arms<'_>) -> (ArmEvidence, ArmEvidence) {
    let mut units: BTreeMap<&str, (bool, UnitTotals)> = BTreeMap::new();
    for run in &log.runs {
        if run.flag != arms.flag
            || run.rule_id.as_deref() != Some(arms.rule_id)
            || run.time_ms < arms.from
            || run.time_ms >= arms.until
        {
            continue;
        }
        let is_candidate = match run.variant.as_deref() {
            Some(v) if v == arms.candidate => true,
            Some(v) if v == arms.control => false,
            _ => continue,
        };
        let unit = run.unit.as_deref().unwrap_or(&run.run_id);
        let entry = units
            .entry(unit)
            .or_insert_with(|| (is_candidate, UnitTotals::default()));
        if entry.0 == is_candidate {
            entry.1.add(run);
        }
    }
    arms_from_units(units.into_values())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> String {
        let mut text = String::new();
        let mut add = |v: Value| {
            text.push_str(&v.to_string());
            text.push('\n');
        };
        for (i, (variant, unit, outcome, quality)) in [
            ("v2", "u1", "success", Some(0.9)),
            ("v2", "u1", "error", None),
            ("stable", "u2", "success", Some(0.5)),
            ("stable", "u3", "success", None),
            ("v2", "u4", "success", None),
        ]
        .iter()
        .enumerate()
        {
            let run = format!("r{i}");
            let time = format!("2026-12-01T10:00:0{i}Z");
            add(
                serde_json::json!({"type": "exposure", "time": time, "run_id": run, "flag": "bot",
                "variant": variant, "revision": "r1", "reason": "SPLIT", "rule_id": "canary",
                "bucket": 5, "unit": unit, "shadow": false}),
            );
            add(
                serde_json::json!({"type": "outcome", "time": time, "run_id": run, "flag": "bot",
                "variant": variant, "attempt": 1, "shadow": false, "outcome": outcome,
                "latency_ms": 100.0 * (i as f64 + 1.0), "cost": 0.01}),
            );
            if let Some(q) = quality {
                add(
                    serde_json::json!({"type": "feedback", "time": time, "run_id": run,
                    "flag": "bot", "variant": variant, "quality": q, "score": null}),
                );
            }
        }
        // The exposure of a plain read (exposures on): no run to join, and not unreadable.
        add(
            serde_json::json!({"type": "exposure", "time": "2026-12-01T10:00:10Z", "run_id": null,
            "flag": "bot", "variant": "v2", "revision": "r1", "unit": "u9", "source": "read"}),
        );
        text.push_str("not json\n{\"type\": \"guardrail_trip\", \"time\": \"2026-12-01T10:00:09Z\", \"flag\": \"bot\"}\n");
        text
    }

    #[test]
    fn runs_join_their_events_and_units_are_the_analysis_unit() {
        let mut log = EventLog::default();
        log.read(&lines());
        assert_eq!(log.runs.len(), 5);
        assert_eq!(log.skipped_lines, 1);
        assert_eq!(log.notices.len(), 1);
        assert_eq!(log.runs[0].quality, Some(0.9));
        assert_eq!(log.runs[1].outcome.as_deref(), Some("error"));
        let arms = Arms {
            flag: "bot",
            rule_id: "canary",
            candidate: "v2",
            control: "stable",
            from: 0,
            until: Millis::MAX,
        };
        let (control, candidate) = arm_evidence(&log, &arms);
        assert_eq!((control.units, candidate.units), (2, 2));
        // u1 had one success and one error: one unit with an error share of 0.5.
        let errors = candidate.metrics["error_rate"];
        assert_eq!((errors.n, errors.sum), (2, 0.5));
        assert_eq!(candidate.metrics["quality"].n, 1);
        assert_eq!(control.metrics["latency_ms"].sum, 300.0 + 400.0);
        // The window excludes runs outside the step.
        let late = Arms {
            from: parse_timestamp("2026-12-01T10:00:03Z").unwrap_or(0),
            ..arms
        };
        let (control, candidate) = arm_evidence(&log, &late);
        assert_eq!((control.units, candidate.units), (1, 1));
    }
}
