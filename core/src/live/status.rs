//! What [`crate::Flags::status`] reports, and its JSON form as typed serde structs.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::autopilot::{look, RampLook};
use crate::document::{Action, Document};
use crate::error::Error;
use crate::evaluate::Trip;
use crate::live::overrides::{LocalKill, Overrides};
use crate::time::{format_timestamp, Millis};

/// The last failed load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFailure {
    pub(crate) at: Millis,
    pub error: Error,
}

/// What [`crate::Flags::status`] reports.
#[derive(Debug, Clone)]
pub struct Status {
    pub source: String,
    /// What an external source reports about itself (URL, ETag, last success …).
    pub remote: Option<Value>,
    /// What the shared fleet state reports (connection, fallback), when attached.
    pub fleet: Option<Value>,
    pub revision: String,
    /// When the live document was loaded.
    pub(crate) loaded_at: Millis,
    /// When the source was last checked (successfully read or not).
    pub(crate) last_check: Option<Millis>,
    /// The most recent failure since the live document was loaded, if any.
    pub last_error: Option<LoadFailure>,
    pub reloads: u64,
    pub rejected: u64,
    pub(crate) watching: bool,
    pub overrides: Overrides,
    /// Each budget's state (see [`crate::Flags::budget_states`]).
    pub(crate) budgets: Vec<Value>,
    /// Conversation pins held in memory.
    pub(crate) pins: usize,
    /// Every ramp of the live document that an autopilot governs, where it stands now.
    pub(crate) autopilot: Vec<AutopilotReport>,
    /// Exposures of plain reads (settings and counts, see
    /// [`crate::runtime::exposures::ExposureReport`]); `None` when they are off.
    pub(crate) exposures: Option<Value>,
    pub(crate) now: Millis,
}

impl Status {
    /// Milliseconds since the live document was loaded.
    pub(crate) fn age_millis(&self) -> Millis {
        self.now - self.loaded_at
    }

    /// The report as typed serde values ([`StatusReport`]).
    pub(crate) fn report(&self) -> StatusReport {
        let mut flags: Vec<_> = self.overrides.trips.iter().collect();
        flags.sort_by(|a, b| a.0.cmp(b.0));
        let guardrails = flags
            .into_iter()
            .flat_map(|(flag, trips)| trips.iter().map(|t| TripReport::new(flag, t, self.now)))
            .collect();
        StatusReport {
            source: self.source.clone(),
            revision: self.revision.clone(),
            loaded_at: format_timestamp(self.loaded_at),
            age_seconds: self.age_millis() as f64 / 1000.0,
            last_check: self.last_check.map(format_timestamp),
            last_error: self.last_error.as_ref().map(ErrorReport::new),
            reloads: self.reloads,
            rejected: self.rejected,
            watching: self.watching,
            local_kills: LocalKillsReport {
                all: self.overrides.all.as_ref().map(KillReport::new),
                flags: self
                    .overrides
                    .flags
                    .iter()
                    .map(|(flag, kill)| (flag.to_string(), KillReport::new(kill)))
                    .collect(),
            },
            guardrails,
            autopilot: self.autopilot.clone(),
            budgets: self.budgets.clone(),
            sticky_pins: self.pins,
            remote: self.remote.clone(),
            fleet: self.fleet.clone(),
            exposures: self.exposures.clone(),
        }
    }

    /// The report as JSON (the shape `status()` returns in both bindings and the CLI prints).
    pub fn to_json(&self) -> Value {
        self.report().to_value()
    }
}

/// [`Status`] as JSON: keys in this order, nulls included.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    pub(crate) source: String,
    pub(crate) revision: String,
    pub(crate) loaded_at: String,
    pub(crate) age_seconds: f64,
    pub(crate) last_check: Option<String>,
    pub(crate) last_error: Option<ErrorReport>,
    pub(crate) reloads: u64,
    pub(crate) rejected: u64,
    pub(crate) watching: bool,
    pub(crate) local_kills: LocalKillsReport,
    pub(crate) guardrails: Vec<TripReport>,
    /// The autopilot ramps: the slow statistical gate beside the guardrails' fast stop.
    pub(crate) autopilot: Vec<AutopilotReport>,
    /// Each budget's state, as [`crate::Flags::budget_states`] describes it.
    pub(crate) budgets: Vec<Value>,
    pub(crate) sticky_pins: usize,
    /// What an external source reports about itself; always present (null for file and
    /// static sources), so that every status has one shape.
    pub(crate) remote: Option<Value>,
    /// What the shared fleet state reports (`connected`, `mode`, …); always present (null
    /// when the handle does not share state through Redis).
    pub(crate) fleet: Option<Value>,
    /// Exposures of plain reads: settings, counters and reads per flag and variant; always
    /// present (null when the handle was built without exposures).
    pub(crate) exposures: Option<Value>,
}

impl StatusReport {
    pub fn to_value(&self) -> Value {
        // Strings, numbers and JSON values under string keys: serde_json always accepts them,
        // so the `Null` fallback is never taken.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// An autopilot ramp as `status()` reports it: the flag and rule, the candidate, and where
/// the autopilot stands ([`RampLook`]: state, step, percent, when the step began, holds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutopilotReport {
    pub(crate) flag: String,
    pub(crate) rule_id: String,
    pub(crate) candidate: String,
    #[serde(flatten)]
    pub(crate) look: RampLook,
}

/// Every autopilot ramp of `document` at `now`.
pub(crate) fn autopilot_ramps(document: &Document, now: Millis) -> Vec<AutopilotReport> {
    let mut out = Vec::new();
    for flag in document.flags() {
        for rule in &flag.rules {
            let Action::Ramp(ramp) = &rule.action else {
                continue;
            };
            let Some(spec) = flag.autopilot_of(ramp) else {
                continue;
            };
            out.push(AutopilotReport {
                flag: flag.key.to_string(),
                rule_id: rule.id.to_string(),
                candidate: flag
                    .variants
                    .get(ramp.variant)
                    .map(|v| v.id.to_string())
                    .unwrap_or_default(),
                look: look(ramp, spec, now),
            });
        }
    }
    out
}

/// The last failed load: when, its code and message, and every problem with its path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorReport {
    pub(crate) at: String,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) problems: Vec<ProblemReport>,
}

impl ErrorReport {
    fn new(failure: &LoadFailure) -> ErrorReport {
        ErrorReport {
            at: format_timestamp(failure.at),
            code: failure.error.code(),
            message: failure.error.to_string(),
            problems: failure
                .error
                .problems()
                .iter()
                .map(|p| ProblemReport {
                    path: p.path.clone(),
                    code: p.code(),
                    message: p.message.clone(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProblemReport {
    pub(crate) path: String,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// Local kills: of every flag (`all`), and of single flags by key (sorted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LocalKillsReport {
    pub(crate) all: Option<KillReport>,
    pub(crate) flags: BTreeMap<String, KillReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct KillReport {
    pub(crate) reason: Option<String>,
    pub(crate) at: String,
}

impl KillReport {
    fn new(kill: &LocalKill) -> KillReport {
        KillReport {
            reason: kill.reason.clone(),
            at: format_timestamp(kill.at),
        }
    }
}

/// A tripped (or half-open) guardrail as `status()` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TripReport {
    pub(crate) flag: String,
    pub(crate) guardrail: String,
    pub(crate) variant: String,
    pub(crate) action: &'static str,
    pub(crate) since: String,
    /// `tripped`, or `half_open` once the cooldown is over.
    pub(crate) state: &'static str,
    pub(crate) probe_from: String,
    pub(crate) probe_percent: f64,
}

impl TripReport {
    pub fn new(flag: &str, trip: &Trip, now: Millis) -> TripReport {
        TripReport {
            flag: flag.to_string(),
            guardrail: trip.guardrail.to_string(),
            variant: trip.variant.to_string(),
            action: trip.action.as_str(),
            since: format_timestamp(trip.since),
            state: if trip.is_half_open(now) {
                "half_open"
            } else {
                "tripped"
            },
            probe_from: format_timestamp(trip.probe_from),
            probe_percent: trip.probe_share as f64 / 1000.0,
        }
    }
}
