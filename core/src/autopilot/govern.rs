//! How the autopilot reads and moves a ramp through the ramp's own fields.
//!
//! A ramp moves on the clock: step *i* begins at `start` plus the holds before it. An
//! autopilot ramp must not, so it is kept paused (`paused_at`) at the instant its live step
//! began: that exact value is the autopilot's mark, "governed, holding this step". A decision
//! is written back as
//!
//! - **promote**: `start` moved so that the next step begins now, and `paused_at` = now (the
//!   next step is live and held);
//! - **roll back** / **revert**: `rolled_back: true`;
//! - **halt**: `paused_at` = now, with `start` shifted (if needed) so that the live step stays
//!   live. `paused_at` is then no longer the step's start, so the ramp is held by a pause the
//!   autopilot does not own, exactly like a pause a person sets: the autopilot leaves it alone
//!   until someone hands it back (sets `paused_at` to the step's start again).
//!
//! Pure: the caller passes the time in. Evaluation never reads any of this.

use serde::{Deserialize, Serialize};

use super::decide::{Decision, MetricStatus, Reason, Samples, Verdict};
use super::spec::AutopilotSpec;
use crate::hash::PERCENT_TOTAL;
use crate::ramp::Ramp;
use crate::time::{format_timestamp, Millis};

/// Where an autopilot ramp stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GovernedState {
    /// Before the ramp's first step.
    NotStarted,
    /// Held at its live step by the autopilot, which decides at each look.
    Governed,
    /// Paused at an instant other than its step's start: halted by the autopilot on a proven
    /// regression, or paused by a person. The autopilot does not act.
    PausedByHand,
    /// Rolled back (by the autopilot or a person): nothing to decide.
    RolledBack,
    /// At a step without a control arm (100 %): nothing to compare.
    Complete,
    /// Running on the clock without `paused_at` at its step's start (the loader refuses a
    /// new autopilot ramp without `paused_at`; a `paused_at` in the future gets here too).
    Scheduled,
}

impl GovernedState {
    pub fn as_str(self) -> &'static str {
        match self {
            GovernedState::NotStarted => "not_started",
            GovernedState::Governed => "governed",
            GovernedState::PausedByHand => "paused_by_hand",
            GovernedState::RolledBack => "rolled_back",
            GovernedState::Complete => "complete",
            GovernedState::Scheduled => "scheduled",
        }
    }
}

/// An autopilot ramp at one instant: what `explain`, `status()` and the CLI show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RampLook {
    pub state: GovernedState,
    /// Index of the live step (`None` before the start or when rolled back).
    pub step: Option<usize>,
    /// The live percentage (`1.0` is 1 %).
    pub percent: f64,
    /// When the live step began (RFC 3339): the evidence of the step counts from here, and a
    /// person hands a paused ramp back to the autopilot by setting `paused_at` to this value.
    pub step_began: Option<String>,
    /// How long the live step has held, in milliseconds.
    pub(crate) held_ms: Option<Millis>,
    /// The control variant.
    pub control: String,
    pub(crate) min_hold_ms: Option<Millis>,
    pub(crate) max_hold_ms: Option<Millis>,
    /// The last decision the autopilot wrote into this ramp (its `last_decision` field), if
    /// any: what it decided, when, and the evidence in brief.
    pub(crate) last_decision: Option<LastDecision>,
    #[serde(skip)]
    pub step_began_ms: Option<Millis>,
}

/// The last decision the autopilot wrote into a ramp, kept in the ramp itself
/// (`last_decision`) so that every process that loads the document can show it
/// (`status()`, `explain`). The full evidence is in the audit record of the same write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastDecision {
    pub(crate) decision: Decision,
    pub(crate) reason: Reason,
    /// When it was decided (RFC 3339).
    pub(crate) at: String,
    /// The step decided on, and its percentage.
    pub(crate) step: usize,
    pub(crate) percent: f64,
    /// Who wrote it (`--actor`).
    #[serde(default)]
    pub(crate) actor: Option<String>,
    /// Units per arm in the step at the decision.
    pub(crate) samples: Samples,
    /// Each metric's estimate and interval against its limit, and its status.
    #[serde(default)]
    pub(crate) metrics: Vec<MetricBrief>,
}

/// One metric of a [`LastDecision`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricBrief {
    pub(crate) metric: String,
    pub(crate) status: MetricStatus,
    pub(crate) estimate: Option<f64>,
    pub(crate) interval: Option<[f64; 2]>,
    pub(crate) limit: f64,
}

impl LastDecision {
    /// The brief of `verdict`, decided at `at` by `actor`.
    pub(crate) fn from_verdict(verdict: &Verdict, at: Millis, actor: &str) -> LastDecision {
        LastDecision {
            decision: verdict.decision,
            reason: verdict.reason,
            at: format_timestamp(at),
            step: verdict.step,
            percent: verdict.percent,
            actor: Some(actor.to_string()),
            samples: verdict.samples,
            metrics: verdict
                .metrics
                .iter()
                .map(|m| MetricBrief {
                    metric: m.metric.clone(),
                    status: m.status,
                    // JSON has no infinities: a value that overflowed is left out.
                    estimate: m.estimate.filter(|e| e.is_finite()),
                    interval: m
                        .interval
                        .filter(|[low, high]| low.is_finite() && high.is_finite()),
                    limit: m.limit,
                })
                .collect(),
        }
    }
}

/// Where `ramp` (with its autopilot `spec`) stands at `at`.
pub fn look(ramp: &Ramp, spec: &AutopilotSpec, at: Millis) -> RampLook {
    let position = ramp.position(at);
    let began = position
        .step
        .and_then(|i| ramp.steps.get(i))
        .map(|s| s.begins);
    let hold = position.step.and_then(|i| spec.hold(i));
    let state = if ramp.rolled_back {
        GovernedState::RolledBack
    } else if position.step.is_none() {
        GovernedState::NotStarted
    } else if position.milli_percent >= PERCENT_TOTAL {
        GovernedState::Complete
    } else {
        match ramp.paused_at {
            Some(paused) if paused <= at && Some(paused) == began => GovernedState::Governed,
            Some(paused) if paused <= at => GovernedState::PausedByHand,
            _ => GovernedState::Scheduled,
        }
    };
    RampLook {
        state,
        step: position.step,
        percent: f64::from(position.milli_percent) / 1000.0,
        step_began: began.map(format_timestamp),
        held_ms: began.map(|b| (at - b).max(0)),
        control: spec.control.clone(),
        min_hold_ms: hold.map(|h| h.min),
        max_hold_ms: hold.map(|h| h.max),
        last_decision: spec.last_decision.clone(),
        step_began_ms: began,
    }
}

/// The ramp's fields after a decision: each `Some` is written, `None` is left as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RampFields {
    pub(crate) start: Option<Millis>,
    pub(crate) paused_at: Option<Millis>,
    pub(crate) rolled_back: Option<bool>,
}

impl RampFields {
    pub fn is_empty(&self) -> bool {
        *self == RampFields::default()
    }
}

/// What writing `decision`, made at `at` on a governed ramp at step `step`, changes.
/// `Hold` (and a promotion past the last step) changes nothing.
pub(crate) fn fields_after(ramp: &Ramp, step: usize, decision: Decision, at: Millis) -> RampFields {
    match decision {
        Decision::Hold => RampFields::default(),
        Decision::RollBack | Decision::Revert => RampFields {
            rolled_back: Some(true),
            ..RampFields::default()
        },
        Decision::Halt => {
            // Paused at `at`, the live step must stay live: its schedule may have passed the
            // next step's begin long ago (the autopilot held it), so the schedule is shifted
            // as little as needed for `at` to fall inside the step again, and never so far
            // that `paused_at` would equal the step's start (the autopilot's own mark).
            let Some(live) = ramp.steps.get(step) else {
                return RampFields::default();
            };
            let held = (at - live.begins).max(1);
            let room = live.hold.map_or(held, |hold| (hold - 1).max(1));
            let shown_held = held.min(room);
            RampFields {
                start: Some(ramp.start.saturating_add(at - shown_held - live.begins)),
                paused_at: Some(at),
                rolled_back: None,
            }
        }
        Decision::Promote => match ramp.steps.get(step + 1) {
            // The schedule shifts so that the next step begins now, and is held there.
            Some(next) => RampFields {
                start: Some(ramp.start.saturating_add(at.saturating_sub(next.begins))),
                paused_at: Some(at),
                rolled_back: None,
            },
            None => RampFields::default(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autopilot::HoldWindow;
    use crate::ramp::RampStep;

    const HOUR: Millis = 3_600_000;

    fn ramp(start: Millis, paused_at: Option<Millis>) -> Ramp {
        let mut begins = start;
        let steps = [(1000, Some(HOUR)), (5000, Some(HOUR)), (100_000, None)]
            .iter()
            .map(|&(milli_percent, hold)| {
                let step = RampStep {
                    milli_percent,
                    hold,
                    begins,
                };
                begins += hold.unwrap_or(0);
                step
            })
            .collect();
        Ramp {
            variant: 1,
            baseline: Some(0),
            start,
            steps,
            paused_at,
            rolled_back: false,
            autopilot: None,
        }
    }

    fn spec() -> AutopilotSpec {
        AutopilotSpec::with_default_limits(
            "stable",
            vec![HoldWindow {
                min: HOUR,
                max: 6 * HOUR,
            }],
        )
    }

    fn shifted(mut r: Ramp, fields: RampFields) -> Ramp {
        if let Some(start) = fields.start {
            let delta = start - r.start;
            r.start = start;
            for s in &mut r.steps {
                s.begins += delta;
            }
        }
        if let Some(p) = fields.paused_at {
            r.paused_at = Some(p);
        }
        if let Some(b) = fields.rolled_back {
            r.rolled_back = b;
        }
        r
    }

    #[test]
    fn a_ramp_paused_at_its_step_start_is_governed_and_holds_past_its_schedule() {
        let r = ramp(0, Some(0));
        let seen = look(&r, &spec(), 5 * HOUR);
        assert_eq!(seen.state, GovernedState::Governed);
        assert_eq!((seen.step, seen.percent), (Some(0), 1.0));
        assert_eq!(seen.held_ms, Some(5 * HOUR));
        assert_eq!(
            look(&ramp(0, Some(10)), &spec(), HOUR).state,
            GovernedState::PausedByHand
        );
        assert_eq!(
            look(&ramp(0, None), &spec(), HOUR).state,
            GovernedState::Scheduled
        );
        assert_eq!(
            look(&ramp(HOUR, Some(HOUR)), &spec(), 0).state,
            GovernedState::NotStarted
        );
    }

    #[test]
    fn promotion_moves_to_the_next_step_now_and_holds_it() {
        let r = ramp(0, Some(0));
        let at = 3 * HOUR + 17;
        let fields = fields_after(&r, 0, Decision::Promote, at);
        let next = shifted(r, fields);
        let seen = look(&next, &spec(), at + 10 * HOUR);
        assert_eq!(seen.state, GovernedState::Governed);
        assert_eq!((seen.step, seen.percent), (Some(1), 5.0));
        assert_eq!(seen.step_began_ms, Some(at));
        // From the last step but one, a promotion reaches 100 %: complete.
        let last = shifted(
            next.clone(),
            fields_after(&next, 1, Decision::Promote, at + HOUR),
        );
        assert_eq!(
            look(&last, &spec(), at + 2 * HOUR).state,
            GovernedState::Complete
        );
        assert!(fields_after(&last, 2, Decision::Promote, at).is_empty());
    }

    #[test]
    fn halt_leaves_a_pause_the_autopilot_does_not_own_and_rollback_zeroes() {
        let r = ramp(0, Some(0));
        // Held at 1 % for 2 h, past the schedule's 1 h hold: the halt keeps 1 %.
        let halted = shifted(r.clone(), fields_after(&r, 0, Decision::Halt, 2 * HOUR));
        let seen = look(&halted, &spec(), 3 * HOUR);
        assert_eq!(seen.state, GovernedState::PausedByHand);
        assert_eq!((seen.step, seen.percent), (Some(0), 1.0));
        assert_eq!(halted.paused_at, Some(2 * HOUR));
        let back = shifted(r.clone(), fields_after(&r, 0, Decision::RollBack, 2 * HOUR));
        assert_eq!(
            look(&back, &spec(), 3 * HOUR).state,
            GovernedState::RolledBack
        );
        assert!(fields_after(&r, 0, Decision::Hold, HOUR).is_empty());
        assert_eq!(
            fields_after(&r, 0, Decision::Revert, HOUR).rolled_back,
            Some(true)
        );
    }
}
