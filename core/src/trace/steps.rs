//! Every step an explanation can contain, as typed notes: [`Step`] has one variant per kind of
//! step, in the order the decision takes them (see the module documentation of
//! [`crate::evaluate`]), plus the two notes of condition matching.
//!
//! The JSON these serialize to is the `steps` array of `explain` in the CLI and both bindings,
//! and it is a contract: field names, their order, `null` versus an absent key and number types
//! are fixed here. A step serializes as an object whose `"step"` key comes first, then the
//! fields in the order declared; condition and segment notes carry no `"step"` key.
//!
//! The types live beside [`super::Tracer`] (the primitives layer) because condition matching,
//! one layer up, writes notes too; so they name nothing above that layer: kill sources,
//! guardrail actions, operators and measures arrive as their wire strings.

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use serde_json::Value;

/// One step of a decision, as `explain` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Step 1: the flag is not in the document (the only step then; `found` is always false).
    Flag { found: bool },
    /// Step 2: a kill switch decided. `reason`, `actor` and `at` are the switch's own, for the
    /// document's and the flag's switch; null for the other sources.
    Kill {
        /// The kill source (`document`, `flag`, `local_all`, …).
        source: &'static str,
        reason: Option<String>,
        actor: Option<String>,
        /// RFC 3339.
        at: Option<String>,
    },
    /// A tripped guardrail that changed the decision: a kill (step 2), a held or rolled-back
    /// ramp (step 5) or a fallback re-route (step 7, with `replaced` and `served`).
    Guardrail {
        guardrail: String,
        metric: &'static str,
        /// The variant whose outcomes tripped it.
        variant: String,
        action: &'static str,
        /// RFC 3339.
        since: String,
        /// RFC 3339: from then on the guardrail is half-open.
        probe_from: String,
        /// Present only for a fallback re-route.
        #[serde(flatten)]
        reroute: Option<Reroute>,
    },
    /// An exhausted budget that decided: a kill (step 2) or a served variant (step 4). The
    /// fields are null when the budget is no longer in the document.
    Budget {
        budget: Option<String>,
        /// A budget of the document, not of the flag.
        document_wide: bool,
        per: Option<String>,
        measure: Option<&'static str>,
        limit: Option<f64>,
        action: Option<&'static str>,
        /// Always true: only an exhausted budget is noted.
        exhausted: bool,
    },
    /// Step 3: the pin of the context's conversation.
    Sticky {
        conversation: String,
        #[serde(flatten)]
        pin: Pin,
    },
    /// Step 5: one rule, in order, and whether it served.
    Rule {
        rule_id: String,
        #[serde(flatten)]
        outcome: RuleOutcome,
    },
    /// A split or ramp rule whose unit cannot be bucketed (the rule then does not serve).
    Bucket {
        rule_id: String,
        /// The attribute read as the unit.
        bucket_by: String,
        /// Why the unit was not bucketed.
        skipped: String,
    },
    /// Where a ramp rule stands and whether the unit's bucket is inside it.
    Ramp {
        rule_id: String,
        /// RFC 3339: the instant the ramp was read at.
        at: String,
        /// The live percentage (after a guardrail's hold or roll-back).
        percent: f64,
        /// Index of the live step; null before the start or when rolled back.
        step_index: Option<usize>,
        paused: bool,
        rolled_back: bool,
        /// RFC 3339.
        next_step_at: Option<String>,
        bucket: u32,
        in_ramp: bool,
        /// Where the autopilot of an autopilot ramp stands ([`crate::autopilot::RampLook`],
        /// serialized where the note is made: that type sits a layer above this one). The key
        /// is absent for a ramp without an autopilot.
        #[serde(skip_serializing_if = "Option::is_none")]
        autopilot: Option<Value>,
    },
    /// Step 6: no rule served; the flag's default.
    Default { variant: String },
    /// The shadow draw, after a decision that may shadow: `why_not` is null when drawn.
    Shadow {
        variant: String,
        drawn: bool,
        why_not: Option<&'static str>,
    },
    /// One `attr op value` test of a condition (no `"step"` key).
    #[serde(untagged)]
    Condition {
        attr: String,
        op: &'static str,
        /// The context's value of the attribute.
        actual: Actual,
        matched: bool,
        /// Why the attribute could not be compared (the key is absent when it was).
        #[serde(skip_serializing_if = "Option::is_none")]
        ignored: Option<String>,
    },
    /// A segment a condition referenced, and whether it matched (no `"step"` key).
    #[serde(untagged)]
    Segment { segment: String, matched: bool },
}

/// The fallback re-route of a [`Step::Guardrail`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reroute {
    /// The variant the rules or the default chose.
    pub(crate) replaced: String,
    /// The healthy fallback served instead.
    pub(crate) served: String,
}

/// What [`Step::Sticky`] found for the conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Pin {
    /// No usable pin (`"pinned": null`): the decision of steps 5–7 is pinned.
    Open,
    /// The pinned variant served (`"pinned": id, "served": true`).
    Served(String),
    /// The pin was broken (`"served": false, "broken": why`); steps 4–7 decide.
    Broken(String),
}

// By hand: the three shapes share key names with different presence, which no derive spells.
impl Serialize for Pin {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Pin::Open => {
                let mut fields = serializer.serialize_struct("Pin", 1)?;
                fields.serialize_field("pinned", &None::<&str>)?;
                fields.end()
            }
            Pin::Served(pinned) => {
                let mut fields = serializer.serialize_struct("Pin", 2)?;
                fields.serialize_field("pinned", pinned)?;
                fields.serialize_field("served", &true)?;
                fields.end()
            }
            Pin::Broken(why) => {
                let mut fields = serializer.serialize_struct("Pin", 2)?;
                fields.serialize_field("served", &false)?;
                fields.serialize_field("broken", why)?;
                fields.end()
            }
        }
    }
}

/// Whether a [`Step::Rule`] served: `"matched"` is true only when it did (a rule whose
/// condition matched but whose unit could not be bucketed reports false).
#[derive(Debug, Clone, PartialEq)]
pub enum RuleOutcome {
    /// The rule did not serve (`"matched": false`).
    Passed,
    /// The rule served `variant` (`"matched": true, "variant": id, "bucket": n`; the bucket is
    /// null for a rule that serves without a split).
    Served {
        variant: String,
        bucket: Option<u32>,
    },
}

// By hand, for the same reason as `Pin`.
impl Serialize for RuleOutcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RuleOutcome::Passed => {
                let mut fields = serializer.serialize_struct("RuleOutcome", 1)?;
                fields.serialize_field("matched", &false)?;
                fields.end()
            }
            RuleOutcome::Served { variant, bucket } => {
                let mut fields = serializer.serialize_struct("RuleOutcome", 3)?;
                fields.serialize_field("matched", &true)?;
                fields.serialize_field("variant", variant)?;
                fields.serialize_field("bucket", bucket)?;
                fields.end()
            }
        }
    }
}

/// A context attribute's value as a [`Step::Condition`] shows it: JSON of the same type, null
/// when missing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Actual {
    Missing,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
    /// A value no condition compares, shown as its type name in angle brackets (`"<object>"`).
    Unsupported(#[serde(serialize_with = "in_angle_brackets")] &'static str),
}

fn in_angle_brackets<S: Serializer>(name: &&'static str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!("<{name}>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(step: Step) -> String {
        serde_json::to_string(&step).expect("serializes")
    }

    // The text of each shape, key order included, as `explain` printed it when the notes were
    // built with `json!`: a change here changes the CLI's and the bindings' output.
    #[test]
    fn every_shape_serializes_as_before() {
        assert_eq!(
            json(Step::Flag { found: false }),
            r#"{"step":"flag","found":false}"#
        );
        assert_eq!(
            json(Step::Kill {
                source: "flag",
                reason: Some("incident".into()),
                actor: None,
                at: None
            }),
            r#"{"step":"kill","source":"flag","reason":"incident","actor":null,"at":null}"#
        );
        let guardrail = |reroute| Step::Guardrail {
            guardrail: "errors".into(),
            metric: "error_rate",
            variant: "b".into(),
            action: "fallback",
            since: "2026-11-21T09:00:00Z".into(),
            probe_from: "2026-11-21T10:00:00Z".into(),
            reroute,
        };
        assert_eq!(
            json(guardrail(None)),
            r#"{"step":"guardrail","guardrail":"errors","metric":"error_rate","variant":"b","action":"fallback","since":"2026-11-21T09:00:00Z","probe_from":"2026-11-21T10:00:00Z"}"#
        );
        assert_eq!(
            json(guardrail(Some(Reroute {
                replaced: "b".into(),
                served: "a".into()
            }))),
            r#"{"step":"guardrail","guardrail":"errors","metric":"error_rate","variant":"b","action":"fallback","since":"2026-11-21T09:00:00Z","probe_from":"2026-11-21T10:00:00Z","replaced":"b","served":"a"}"#
        );
        assert_eq!(
            json(Step::Budget {
                budget: Some("daily".into()),
                document_wide: false,
                per: None,
                measure: Some("cost_usd"),
                limit: Some(5.0),
                action: Some("kill"),
                exhausted: true
            }),
            r#"{"step":"budget","budget":"daily","document_wide":false,"per":null,"measure":"cost_usd","limit":5.0,"action":"kill","exhausted":true}"#
        );
        let sticky = |pin| Step::Sticky {
            conversation: "c1".into(),
            pin,
        };
        assert_eq!(
            json(sticky(Pin::Open)),
            r#"{"step":"sticky","conversation":"c1","pinned":null}"#
        );
        assert_eq!(
            json(sticky(Pin::Served("a".into()))),
            r#"{"step":"sticky","conversation":"c1","pinned":"a","served":true}"#
        );
        assert_eq!(
            json(sticky(Pin::Broken("gone".into()))),
            r#"{"step":"sticky","conversation":"c1","served":false,"broken":"gone"}"#
        );
        let rule = |outcome| Step::Rule {
            rule_id: "r".into(),
            outcome,
        };
        assert_eq!(
            json(rule(RuleOutcome::Passed)),
            r#"{"step":"rule","rule_id":"r","matched":false}"#
        );
        assert_eq!(
            json(rule(RuleOutcome::Served {
                variant: "a".into(),
                bucket: None
            })),
            r#"{"step":"rule","rule_id":"r","matched":true,"variant":"a","bucket":null}"#
        );
        assert_eq!(
            json(Step::Bucket {
                rule_id: "r".into(),
                bucket_by: "user_id".into(),
                skipped: "unit attribute is missing".into()
            }),
            r#"{"step":"bucket","rule_id":"r","bucket_by":"user_id","skipped":"unit attribute is missing"}"#
        );
        let ramp = |autopilot| Step::Ramp {
            rule_id: "r".into(),
            at: "2026-11-21T09:00:00Z".into(),
            percent: 5.0,
            step_index: Some(0),
            paused: false,
            rolled_back: false,
            next_step_at: None,
            bucket: 123,
            in_ramp: true,
            autopilot,
        };
        assert_eq!(
            json(ramp(None)),
            r#"{"step":"ramp","rule_id":"r","at":"2026-11-21T09:00:00Z","percent":5.0,"step_index":0,"paused":false,"rolled_back":false,"next_step_at":null,"bucket":123,"in_ramp":true}"#
        );
        assert!(json(ramp(Some(Value::Null))).ends_with(r#""in_ramp":true,"autopilot":null}"#));
        assert_eq!(
            json(Step::Default {
                variant: "a".into()
            }),
            r#"{"step":"default","variant":"a"}"#
        );
        assert_eq!(
            json(Step::Shadow {
                variant: "b".into(),
                drawn: true,
                why_not: None
            }),
            r#"{"step":"shadow","variant":"b","drawn":true,"why_not":null}"#
        );
        let condition = |actual, ignored| Step::Condition {
            attr: "plan".into(),
            op: "eq",
            actual,
            matched: false,
            ignored,
        };
        assert_eq!(
            json(condition(
                Actual::Missing,
                Some("attribute is missing".into())
            )),
            r#"{"attr":"plan","op":"eq","actual":null,"matched":false,"ignored":"attribute is missing"}"#
        );
        for (actual, text) in [
            (Actual::Str("pro".into()), r#""pro""#),
            (Actual::Int(-3), "-3"),
            (Actual::Float(1.5), "1.5"),
            (Actual::Float(f64::NAN), "null"),
            (Actual::Bool(true), "true"),
            (Actual::List(vec!["a".into()]), r#"["a"]"#),
            (Actual::Unsupported("object"), r#""<object>""#),
        ] {
            assert_eq!(
                json(condition(actual, None)),
                format!(r#"{{"attr":"plan","op":"eq","actual":{text},"matched":false}}"#)
            );
        }
        assert_eq!(
            json(Step::Segment {
                segment: "beta".into(),
                matched: true
            }),
            r#"{"segment":"beta","matched":true}"#
        );
    }
}
