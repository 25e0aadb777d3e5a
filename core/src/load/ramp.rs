//! `ramp`: one variant raised over scheduled steps (`percent` held for `hold`).

use serde_json::Value;

use super::autopilot::RampShape;
use super::flag::VariantNames;
use super::read::{index, join};
use super::Loader;
use crate::autopilot::LastDecision;
use crate::error::ProblemKind;
use crate::ramp::{Ramp, RampStep};
use crate::time::parse_timestamp;

const RAMP_FIELDS: &[&str] = &[
    "variant",
    "baseline",
    "start",
    "steps",
    "paused_at",
    "rolled_back",
    "autopilot",
    "last_decision",
];

impl Loader {
    pub(super) fn ramp(
        &mut self,
        path: &str,
        value: &Value,
        variants: &VariantNames<'_>,
        flag: &str,
    ) -> Option<Ramp> {
        let ramp = self.open(path, value, RAMP_FIELDS)?;
        let variant = self.required(&ramp, "variant", |l, path, v| {
            l.variant_ref(path, v, variants, flag)
        });
        let baseline = self
            .field(&ramp, "baseline", |l, path, v| {
                let baseline = l.variant_ref(path, v, variants, flag);
                if baseline.is_some() && baseline == variant {
                    l.report(
                        path,
                        ProblemKind::InvalidValue,
                        "the baseline must differ from the ramped variant",
                    );
                }
                baseline
            })
            .ok();
        let start = self.required(&ramp, "start", Self::timestamp);
        let paused_at = self.field(&ramp, "paused_at", Self::timestamp).ok();
        let rolled_back = self
            .field(&ramp, "rolled_back", Self::boolean)
            .ok()
            .unwrap_or(false);
        // Written by the autopilot beside the fields it moves; shown by status() and explain.
        let last_decision = self
            .field(&ramp, "last_decision", |l, path, v| {
                let parsed = serde_json::from_value::<LastDecision>(v.clone());
                match parsed {
                    Ok(decision) if parse_timestamp(&decision.at).is_some() => Some(decision),
                    Ok(decision) => {
                        l.report(
                            &join(path, "at"),
                            ProblemKind::InvalidDate,
                            format!(
                                "\"{}\" is not an RFC 3339 timestamp (2026-11-21T09:00:00Z)",
                                decision.at
                            ),
                        );
                        None
                    }
                    Err(err) => {
                        l.report(
                            path,
                            ProblemKind::InvalidValue,
                            format!("not an autopilot decision record: {err}"),
                        );
                        None
                    }
                }
            })
            .ok();
        let steps_path = ramp.path_of("steps");
        let steps_value = self.required(&ramp, "steps", Self::any)?;
        let Value::Array(items) = steps_value else {
            self.report(
                &steps_path,
                ProblemKind::WrongType,
                "expected an array of {\"percent\", \"hold\"}",
            );
            return None;
        };
        if items.is_empty() {
            self.report(
                &steps_path,
                ProblemKind::InvalidValue,
                "a ramp needs at least one step",
            );
            return None;
        }
        let mut steps = Vec::with_capacity(items.len());
        let mut begins = start.unwrap_or(0);
        let mut previous: Option<u32> = None;
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let Some(step) = self.open(index(&steps_path, i), item, &["percent", "hold"]) else {
                ok = false;
                continue;
            };
            let milli_percent =
                self.required(&step, "percent", |l, path, v| l.percent(path, v, false));
            let is_last = i + 1 == items.len();
            let hold = match step.get("hold") {
                Some(_) => self
                    .field(&step, "hold", |l, path, v| {
                        let hold = l.duration(path, v);
                        if hold == Some(0) {
                            l.report(
                                path,
                                ProblemKind::InvalidDuration,
                                "a hold must be longer than 0",
                            );
                        }
                        hold
                    })
                    .ok(),
                None if is_last => None,
                None => {
                    self.report(
                        &step.path_of("hold"),
                        ProblemKind::MissingField,
                        "every step but the last needs a \"hold\" (how long it lasts)",
                    );
                    ok = false;
                    None
                }
            };
            let Some(milli_percent) = milli_percent else {
                ok = false;
                continue;
            };
            if let Some(prev) = previous {
                if milli_percent <= prev {
                    self.report(
                        &step.path_of("percent"),
                        ProblemKind::RampNotIncreasing,
                        format!(
                            "ramp steps must strictly increase: {} % follows {} %",
                            milli_percent as f64 / 1000.0,
                            prev as f64 / 1000.0
                        ),
                    );
                    ok = false;
                }
            }
            previous = Some(milli_percent);
            steps.push(RampStep {
                milli_percent,
                hold,
                begins,
            });
            begins = begins.saturating_add(hold.unwrap_or(0));
        }
        let autopilot = match ramp.get("autopilot") {
            None => Some(None),
            Some(block) => {
                let shape = RampShape {
                    variants,
                    flag,
                    candidate: variant,
                    baseline,
                    baseline_path: ramp.path_of("baseline"),
                };
                let spec = self.autopilot(&ramp.path_of("autopilot"), block, &shape);
                // The autopilot moves the ramp; the clock alone must not. A paused ramp holds
                // its live step until the autopilot promotes it (docs/autopilot.md).
                if paused_at.is_none() && !rolled_back && !ramp.has("paused_at") {
                    self.report(
                        &ramp.path_of("paused_at"),
                        ProblemKind::MissingField,
                        "a ramp with an \"autopilot\" advances only when the autopilot promotes it: set \"paused_at\" (for a new ramp, to its \"start\")",
                    );
                    return None;
                }
                spec.and_then(|mut spec| {
                    spec.last_decision = last_decision;
                    self.autopilots.push(spec);
                    u32::try_from(self.autopilots.len())
                        .ok()
                        .and_then(std::num::NonZeroU32::new)
                        .map(Some)
                })
            }
        };
        if !ok {
            return None;
        }
        Some(Ramp {
            variant: variant?,
            baseline,
            start: start?,
            steps,
            paused_at,
            rolled_back,
            autopilot: autopilot?,
        })
    }
}
