//! `autopilot` on a ramp: the pre-committed limits, holds and actions of the statistical gate
//! that promotes, holds, rolls back or reverts the ramp (docs/autopilot.md).
//!
//! Every field is read with the loader's own readers, so each problem carries its exact path
//! and a code every part of the document shares (`MISSING_FIELD`, `WRONG_TYPE`,
//! `UNKNOWN_FIELD`, `INVALID_VALUE`, `INVALID_DURATION`, `UNKNOWN_VARIANT`). The engine's own
//! check ([`AutopilotSpec::problems`]) runs last as a safety net; a problem only it finds is
//! reported as `INVALID_VALUE` under the block's path plus its own.

use serde_json::Value;

use super::flag::VariantNames;
use super::read::{index, join};
use super::suggest::did_you_mean;
use super::Loader;
use crate::autopilot::{
    AutopilotSpec, Better, HoldWindow, Limit, MetricLimit, RegressionAction, SrmTest,
    DEFAULT_ALPHA, DEFAULT_SRM_P_VALUE,
};
use crate::error::ProblemKind;

const AUTOPILOT_FIELDS: &[&str] = &[
    "control",
    "holds",
    "min_units_per_arm",
    "metrics",
    "on_regression",
    "alpha",
    "srm_p_value",
    "srm_test",
];

const HOLD_FIELDS: &[&str] = &["min", "max"];

const METRIC_FIELDS: &[&str] = &["metric", "difference", "ratio", "rollback_beyond"];

/// The metrics the autopilot can measure from a flag's events, with the direction that is
/// good. `better` is not a field: it follows from the metric, so it cannot be set wrong.
pub(crate) const AUTOPILOT_METRICS: &[(&str, Better)] = &[
    ("quality", Better::Higher),
    ("score", Better::Higher),
    ("error_rate", Better::Lower),
    ("cost", Better::Lower),
    ("latency_ms", Better::Lower),
];

/// Default minimum of units per arm before any decision.
pub(crate) const DEFAULT_MIN_UNITS_PER_ARM: u64 = 100;

/// Most units per arm a spec may ask for before deciding (a typo guard, not a statistical one).
const MAX_MIN_UNITS_PER_ARM: u64 = 100_000_000;

/// What the autopilot block needs to know about its ramp.
pub(super) struct RampShape<'a> {
    pub(crate) variants: &'a VariantNames<'a>,
    pub(crate) flag: &'a str,
    /// The ramped variant (the candidate), when it was valid.
    pub(crate) candidate: Option<usize>,
    /// The ramp's baseline, when it has a valid one.
    pub(crate) baseline: Option<usize>,
    /// `…ramp.baseline`, for the problem of a missing one.
    pub(crate) baseline_path: String,
}

impl Loader {
    pub(super) fn autopilot(
        &mut self,
        path: &str,
        value: &Value,
        ramp: &RampShape<'_>,
    ) -> Option<AutopilotSpec> {
        let object = self.open(path, value, AUTOPILOT_FIELDS)?;
        let control = self
            .field(&object, "control", |l, path, v| {
                let control = l.variant_ref(path, v, ramp.variants, ramp.flag)?;
                if ramp.candidate == Some(control) {
                    l.report(
                        path,
                        ProblemKind::InvalidValue,
                        "the control must differ from the ramped variant",
                    );
                    return None;
                }
                if ramp.baseline.is_some_and(|b| b != control) {
                    l.report(
                        path,
                        ProblemKind::InvalidValue,
                        "the control must be the ramp's baseline: the units outside the ramp are the control arm",
                    );
                    return None;
                }
                Some(control)
            })
            .optional();
        // The control arm is the units the ramp serves its baseline: without one, the units
        // outside the ramp fall through to other rules and no expected split can be tested.
        if ramp.baseline.is_none() && !self.problems.iter().any(|p| p.path == ramp.baseline_path) {
            self.report(
                &ramp.baseline_path,
                ProblemKind::MissingField,
                "a ramp with an \"autopilot\" needs a \"baseline\": the units outside the ramp are the control it compares with",
            );
        }
        let holds = self.required(&object, "holds", Self::autopilot_holds);
        let min_units_per_arm = self
            .field(&object, "min_units_per_arm", |l, path, v| {
                l.whole_number(path, v, 2, MAX_MIN_UNITS_PER_ARM)
            })
            .or(DEFAULT_MIN_UNITS_PER_ARM);
        let metrics = self.required(&object, "metrics", Self::autopilot_metrics);
        let on_regression = self
            .field(&object, "on_regression", |l, path, v| {
                l.choice(
                    path,
                    v,
                    &[
                        ("roll_back", RegressionAction::RollBack),
                        ("halt", RegressionAction::Halt),
                    ],
                )
            })
            .or(RegressionAction::RollBack);
        let alpha = self
            .field(&object, "alpha", Self::open_unit_interval)
            .or(DEFAULT_ALPHA);
        let srm_p_value = self
            .field(&object, "srm_p_value", Self::open_unit_interval)
            .or(DEFAULT_SRM_P_VALUE);
        let srm_test = self
            .field(&object, "srm_test", |l, path, v| {
                l.choice(
                    path,
                    v,
                    &[
                        ("chi_squared", SrmTest::ChiSquared),
                        ("sequential", SrmTest::Sequential),
                    ],
                )
            })
            .or(SrmTest::ChiSquared);
        let control = control?.or(ramp.baseline)?;
        let spec = AutopilotSpec {
            control: ramp.variants.ids.get(control)?.to_string(),
            holds: holds?,
            min_units_per_arm: min_units_per_arm?,
            metrics: metrics?,
            on_regression: on_regression?,
            alpha: alpha?,
            srm_p_value: srm_p_value?,
            srm_test: srm_test?,
            last_decision: None,
        };
        let problems = spec.problems();
        for problem in &problems {
            self.report(
                &join(path, &problem.path),
                ProblemKind::InvalidValue,
                format!("{} ({})", problem.message, problem.code),
            );
        }
        problems.is_empty().then_some(spec)
    }

    /// `holds`: a non-empty array of `{min, max}` durations, one per step (the last repeats).
    fn autopilot_holds(&mut self, path: &str, value: &Value) -> Option<Vec<HoldWindow>> {
        let items = self.array(path, value, "{\"min\", \"max\"} hold windows")?;
        if items.is_empty() {
            self.report(
                path,
                ProblemKind::InvalidValue,
                "at least one hold window is needed (the last one applies to the remaining steps)",
            );
            return None;
        }
        let mut holds = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let Some(window) = self.open(index(path, i), item, HOLD_FIELDS) else {
                ok = false;
                continue;
            };
            let min = self.required(&window, "min", Self::duration);
            let max = self.required(&window, "max", |l, path, v| {
                let max = l.duration(path, v)?;
                if max == 0 {
                    l.report(
                        path,
                        ProblemKind::InvalidDuration,
                        "a maximum hold must be longer than 0",
                    );
                    return None;
                }
                Some(max)
            });
            match (min, max) {
                (Some(min), Some(max)) if min <= max => holds.push(HoldWindow { min, max }),
                (Some(_), Some(_)) => {
                    self.report(
                        &window.path_of("min"),
                        ProblemKind::InvalidValue,
                        "the minimum hold must not be longer than the maximum",
                    );
                    ok = false;
                }
                _ => ok = false,
            }
        }
        ok.then_some(holds)
    }

    /// `metrics`: a non-empty array of `{metric, difference | ratio, rollback_beyond}`.
    fn autopilot_metrics(&mut self, path: &str, value: &Value) -> Option<Vec<MetricLimit>> {
        let items = self.array(path, value, "metric limits")?;
        if items.is_empty() {
            self.report(
                path,
                ProblemKind::InvalidValue,
                "at least one metric with a limit is needed",
            );
            return None;
        }
        let mut metrics: Vec<MetricLimit> = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let item_path = index(path, i);
            match self.autopilot_metric(&item_path, item) {
                Some(metric) => {
                    if let Some(first) = metrics.iter().position(|m| m.metric == metric.metric) {
                        self.report(
                            &join(&item_path, "metric"),
                            ProblemKind::InvalidValue,
                            format!(
                                "metric \"{}\" is already limited by metrics[{first}]",
                                metric.metric
                            ),
                        );
                        ok = false;
                    } else {
                        metrics.push(metric);
                    }
                }
                None => ok = false,
            }
        }
        ok.then_some(metrics)
    }

    fn autopilot_metric(&mut self, path: &str, value: &Value) -> Option<MetricLimit> {
        let object = self.open(path, value, METRIC_FIELDS)?;
        let names: Vec<&str> = AUTOPILOT_METRICS.iter().map(|(name, _)| *name).collect();
        let metric = self.required(&object, "metric", |l, path, v| {
            let text = l.string(path, v)?;
            let found = AUTOPILOT_METRICS.iter().find(|(name, _)| *name == text);
            if found.is_none() {
                l.report(
                    path,
                    ProblemKind::InvalidValue,
                    format!(
                        "unknown metric \"{text}\"{}; expected one of: {}",
                        did_you_mean(text, &names),
                        names.join(", ")
                    ),
                );
            }
            found.copied()
        });
        let limit = match (object.has("difference"), object.has("ratio")) {
            (true, true) => {
                self.report(
                    &object.path_of("ratio"),
                    ProblemKind::InvalidValue,
                    "give one of \"difference\" (in the metric's units) or \"ratio\" (times control), not both",
                );
                None
            }
            (false, false) => {
                self.report(
                    &object.path_of("difference"),
                    ProblemKind::MissingField,
                    "a limit is required: \"difference\" (how much worse, in the metric's units) or \"ratio\" (how many times worse)",
                );
                None
            }
            (true, false) => self
                .required(&object, "difference", |l, path, v| {
                    l.bounded_above(path, v, 0.0, "a difference")
                })
                .map(Limit::Difference),
            (false, true) => self
                .required(&object, "ratio", |l, path, v| {
                    l.bounded_above(path, v, 1.0, "a ratio")
                })
                .map(Limit::Ratio),
        };
        let rollback_beyond = self
            .field(&object, "rollback_beyond", |l, path, v| {
                let n = l.number(path, v)?;
                let (neutral, bound) = match limit? {
                    Limit::Difference(points) => (0.0, points),
                    Limit::Ratio(times) => (1.0, times),
                };
                if !(n.is_finite() && n >= neutral && n <= bound) {
                    l.report(
                        path,
                        ProblemKind::InvalidValue,
                        format!("must lie between {neutral} and the limit {bound}, found {n}"),
                    );
                    return None;
                }
                Some(n)
            })
            .optional();
        let (name, better) = metric?;
        Some(MetricLimit {
            metric: name.to_string(),
            better,
            limit: limit?,
            rollback_beyond: rollback_beyond?,
        })
    }

    /// A finite number strictly above `floor`.
    fn bounded_above(&mut self, path: &str, value: &Value, floor: f64, what: &str) -> Option<f64> {
        let n = self.number(path, value)?;
        if n.is_finite() && n > floor {
            return Some(n);
        }
        self.report(
            path,
            ProblemKind::InvalidValue,
            format!("{what} limit must be above {floor}, found {n}"),
        );
        None
    }

    /// A number strictly between 0 and 1 (a level, a p-value threshold).
    fn open_unit_interval(&mut self, path: &str, value: &Value) -> Option<f64> {
        let n = self.number(path, value)?;
        if n > 0.0 && n < 1.0 {
            return Some(n);
        }
        self.report(
            path,
            ProblemKind::InvalidValue,
            format!("must lie strictly between 0 and 1, found {n}"),
        );
        None
    }

    /// One of a few words.
    fn choice<T: Copy>(&mut self, path: &str, value: &Value, options: &[(&str, T)]) -> Option<T> {
        let text = self.string(path, value)?;
        if let Some((_, found)) = options.iter().find(|(name, _)| *name == text) {
            return Some(*found);
        }
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        self.report(
            path,
            ProblemKind::InvalidValue,
            format!(
                "unknown value \"{text}\"{}; expected one of: {}",
                did_you_mean(text, &names),
                names.join(", ")
            ),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::autopilot::{Limit, RegressionAction, SrmTest};
    use crate::document::{Action, Document};

    fn document(autopilot: Value, ramp_extra: Value) -> Value {
        let mut ramp = json!({
            "variant": "v2", "baseline": "stable", "start": "2026-12-01T09:00:00Z",
            "paused_at": "2026-12-01T09:00:00Z",
            "steps": [{"percent": 1, "hold": "1h"}, {"percent": 5, "hold": "1h"}, {"percent": 100}],
            "autopilot": autopilot,
        });
        if let (Some(ramp), Value::Object(extra)) = (ramp.as_object_mut(), ramp_extra) {
            for (k, v) in extra {
                if v.is_null() {
                    ramp.remove(&k);
                } else {
                    ramp.insert(k, v);
                }
            }
        }
        json!({"flags": {"bot": {
            "variants": {"stable": {}, "v2": {}, "other": {}},
            "default": "stable",
            "rules": [{"id": "canary", "ramp": ramp}]
        }}})
    }

    fn problems(value: Value) -> Vec<(String, String)> {
        match Document::from_value(value) {
            Ok(_) => vec![],
            Err(err) => err
                .problems()
                .iter()
                .map(|p| (p.path.clone(), p.code().to_string()))
                .collect(),
        }
    }

    const P: &str = "flags.bot.rules[0].ramp";

    #[test]
    fn a_full_block_loads_with_its_defaults() {
        let doc = Document::from_value(document(
            json!({"holds": [{"min": "30m", "max": "6h"}],
                   "metrics": [{"metric": "quality", "difference": 2},
                               {"metric": "cost", "ratio": 1.5, "rollback_beyond": 1.5}]}),
            json!({}),
        ))
        .expect("valid");
        let Action::Ramp(ramp) = &doc.flags()[0].rules[0].action else {
            panic!("not a ramp");
        };
        let spec = doc.flags()[0].autopilot_of(ramp).expect("autopilot");
        assert_eq!(spec.control, "stable");
        assert_eq!(spec.holds[0].min, 1_800_000);
        assert_eq!(spec.min_units_per_arm, 100);
        assert_eq!(spec.metrics[1].limit, Limit::Ratio(1.5));
        assert_eq!(spec.metrics[0].better, crate::autopilot::Better::Higher);
        assert_eq!(spec.on_regression, RegressionAction::RollBack);
        assert_eq!(spec.srm_test, SrmTest::ChiSquared);
        assert_eq!(spec.problems(), vec![]);
    }

    #[test]
    fn every_field_is_checked_with_its_path() {
        let found = problems(document(
            json!({"control": "other", "holds": [{"min": "2h", "max": "1h"}, {"min": "1x", "max": "0s"}],
                   "min_units_per_arm": 1, "on_regression": "rollback", "alpha": 1.5,
                   "srm_test": "chi", "extra": 1,
                   "metrics": [{"metric": "qualty", "difference": 2},
                               {"metric": "cost", "ratio": 0.5},
                               {"metric": "error_rate", "difference": 0.01, "rollback_beyond": 0.5},
                               {"metric": "latency_ms"},
                               {"metric": "score", "difference": 1, "ratio": 2}]}),
            json!({}),
        ));
        let expected: Vec<(String, String)> = [
            ("autopilot.extra", "UNKNOWN_FIELD"),
            ("autopilot.control", "INVALID_VALUE"),
            ("autopilot.holds[0].min", "INVALID_VALUE"),
            ("autopilot.holds[1].min", "INVALID_DURATION"),
            ("autopilot.holds[1].max", "INVALID_DURATION"),
            ("autopilot.min_units_per_arm", "INVALID_VALUE"),
            ("autopilot.metrics[0].metric", "INVALID_VALUE"),
            ("autopilot.metrics[1].ratio", "INVALID_VALUE"),
            ("autopilot.metrics[2].rollback_beyond", "INVALID_VALUE"),
            ("autopilot.metrics[3].difference", "MISSING_FIELD"),
            ("autopilot.metrics[4].ratio", "INVALID_VALUE"),
            ("autopilot.on_regression", "INVALID_VALUE"),
            ("autopilot.alpha", "INVALID_VALUE"),
            ("autopilot.srm_test", "INVALID_VALUE"),
        ]
        .iter()
        .map(|(path, code)| (format!("{P}.{path}"), code.to_string()))
        .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn the_last_decision_is_checked_and_carried_to_the_spec() {
        let block = json!({"holds": [{"min": "1h", "max": "2h"}],
                           "metrics": [{"metric": "quality", "difference": 2}]});
        let good = json!({"decision": "promote", "reason": "proven_within_limits",
            "at": "2026-12-01T10:00:00Z", "step": 0, "percent": 1.0, "actor": "autopilot",
            "samples": {"control": 900, "candidate": 10},
            "metrics": [{"metric": "quality", "status": "within_limit", "estimate": 0.5,
                         "interval": [-1.0, 2.0], "limit": -2.0}]});
        let doc = Document::from_value(document(
            block.clone(),
            json!({"last_decision": good.clone()}),
        ))
        .expect("valid");
        let Action::Ramp(ramp) = &doc.flags()[0].rules[0].action else {
            panic!("ramp");
        };
        let last = doc.flags()[0]
            .autopilot_of(ramp)
            .and_then(|spec| spec.last_decision.clone())
            .expect("carried");
        assert_eq!(last.samples.candidate, 10);
        assert_eq!(serde_json::to_value(&last).expect("json"), good);
        let mut bad_time = good.clone();
        bad_time["at"] = json!("yesterday");
        assert_eq!(
            problems(document(block.clone(), json!({"last_decision": bad_time}))),
            vec![(format!("{P}.last_decision.at"), "INVALID_DATE".to_string())]
        );
        assert_eq!(
            problems(document(
                block,
                json!({"last_decision": {"decision": "maybe"}})
            )),
            vec![(format!("{P}.last_decision"), "INVALID_VALUE".to_string())]
        );
    }

    #[test]
    fn the_ramp_needs_a_baseline_and_a_pause() {
        let block = json!({"holds": [{"min": "1h", "max": "2h"}],
                           "metrics": [{"metric": "quality", "difference": 2}]});
        assert_eq!(
            problems(document(block.clone(), json!({"baseline": null}))),
            vec![(format!("{P}.baseline"), "MISSING_FIELD".to_string())]
        );
        assert_eq!(
            problems(document(block.clone(), json!({"paused_at": null}))),
            vec![(format!("{P}.paused_at"), "MISSING_FIELD".to_string())]
        );
        // A rolled-back ramp needs no pause: nothing moves it any more.
        assert_eq!(
            problems(document(
                block.clone(),
                json!({"paused_at": null, "rolled_back": true})
            )),
            vec![]
        );
        assert_eq!(
            problems(document(json!({"metrics": []}), json!({}))),
            vec![
                (format!("{P}.autopilot.holds"), "MISSING_FIELD".to_string()),
                (
                    format!("{P}.autopilot.metrics"),
                    "INVALID_VALUE".to_string()
                ),
            ]
        );
        assert_eq!(
            problems(document(json!("on"), json!({}))),
            vec![(format!("{P}.autopilot"), "WRONG_TYPE".to_string())]
        );
    }

    #[test]
    fn explain_and_status_show_where_the_autopilot_stands() {
        let value = document(
            json!({"holds": [{"min": "1h", "max": "6h"}],
                   "metrics": [{"metric": "quality", "difference": 2}]}),
            json!({}),
        );
        let doc = Document::from_value(value.clone()).expect("valid");
        let at = crate::time::parse_timestamp("2026-12-01T11:00:00Z").unwrap_or(0);
        let explained = doc
            .explain(
                "bot",
                &json!({"user_id": "u1"}),
                &crate::evaluate::At(at),
                &crate::evaluate::NoOverlay,
            )
            .to_value();
        let ramp_step = explained["steps"]
            .as_array()
            .and_then(|steps| steps.iter().find(|s| s["step"] == "ramp"))
            .cloned()
            .expect("a ramp step");
        let autopilot = &ramp_step["autopilot"];
        assert_eq!(autopilot["state"], "governed");
        assert_eq!(autopilot["step"], 0);
        assert_eq!(autopilot["step_began"], "2026-12-01T09:00:00Z");
        assert_eq!(autopilot["held_ms"], 7_200_000);
        assert_eq!(autopilot["control"], "stable");

        // A ramp without an autopilot explains as before: no `autopilot` key.
        let plain =
            Document::from_value(document(json!({}), json!({"autopilot": null}))).expect("valid");
        let explained = plain
            .explain(
                "bot",
                &json!({"user_id": "u1"}),
                &crate::evaluate::At(at),
                &crate::evaluate::NoOverlay,
            )
            .to_value();
        let ramp_step = explained["steps"]
            .as_array()
            .and_then(|steps| steps.iter().find(|s| s["step"] == "ramp"))
            .cloned()
            .expect("a ramp step");
        assert_eq!(ramp_step.get("autopilot"), None, "{ramp_step}");

        let flags = crate::Flags::from_value(value).expect("flags");
        let status = flags.status().to_json();
        let ramps = status["autopilot"].as_array().expect("autopilot in status");
        assert_eq!(ramps.len(), 1);
        assert_eq!(ramps[0]["flag"], "bot");
        assert_eq!(ramps[0]["rule_id"], "canary");
        assert_eq!(ramps[0]["candidate"], "v2");
        assert_eq!(ramps[0]["state"], "governed");
        // Beside the guardrails, in the status's key order.
        let keys: Vec<&String> = status.as_object().expect("object").keys().collect();
        let guardrails = keys.iter().position(|k| *k == "guardrails");
        assert_eq!(
            guardrails.map(|g| g + 1),
            keys.iter().position(|k| *k == "autopilot")
        );
    }
}
