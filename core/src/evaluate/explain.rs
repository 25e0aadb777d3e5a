//! The decision as JSON, the shape the CLI, `explain` and both bindings share, as typed serde
//! structs: [`DecisionReport`] (one decision) and [`Explanation`] (a decision and its steps).

use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::context::Context;
use crate::document::Document;
use crate::evaluate::{budget_of, Decision, FlagRef, KillSource, Now, Overlay, Reason};
use crate::trace::{Step, Trace};

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Serialize for KillSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One decision with every index resolved to its id. Fields serialize in this order, nulls
/// included: the JSON shape is part of the CLI's and the bindings' contract.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionReport {
    pub(crate) flag: String,
    /// The served variant; the caller's default for an unknown flag, when it gave one.
    pub(crate) variant: Option<String>,
    pub(crate) payload: Option<Value>,
    pub(crate) reason: Reason,
    pub(crate) rule_id: Option<String>,
    pub(crate) bucket: Option<u32>,
    pub(crate) revision: String,
    pub(crate) kill_source: Option<KillSource>,
    pub(crate) guardrail: Option<String>,
    pub(crate) replaced_variant: Option<String>,
    pub(crate) budget: Option<String>,
    pub(crate) shadow: Option<String>,
}

impl DecisionReport {
    /// Resolves `decision` (made by `doc` for `flag_key`) into ids; `variant` falls back to
    /// `caller_default` when the flag is unknown.
    pub fn new(
        doc: &Document,
        flag_key: &str,
        decision: &Decision<'_>,
        caller_default: Option<&str>,
    ) -> DecisionReport {
        let flag = decision.flag;
        DecisionReport {
            flag: flag_key.to_string(),
            variant: decision.variant_id().or(caller_default).map(str::to_string),
            payload: decision.payload().cloned(),
            reason: decision.reason,
            rule_id: decision.rule_id().map(str::to_string),
            bucket: decision.bucket,
            revision: doc.revision().to_string(),
            kill_source: decision.kill_source,
            guardrail: decision
                .guardrail
                .and_then(|i| flag?.guardrails.get(i))
                .map(|g| g.id.to_string()),
            replaced_variant: decision
                .replaced_variant
                .and_then(|i| flag?.variants.get(i))
                .map(|v| v.id.to_string()),
            budget: decision
                .budget
                .and_then(|at| budget_of(doc, flag, at))
                .map(|b| b.id.to_string()),
            shadow: decision.shadow_id().map(str::to_string),
        }
    }

    pub fn to_value(&self) -> Value {
        to_value(self)
    }
}

/// What `explain` returns: the decision, then every step that led to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    #[serde(flatten)]
    pub(crate) decision: DecisionReport,
    /// Every step, in order (`{"step": "kill", …}`); [`Step`] lists what each can say.
    pub(crate) steps: Vec<Step>,
}

impl Explanation {
    pub fn to_value(&self) -> Value {
        to_value(self)
    }
}

/// Serializes a report. These types hold only strings, numbers, steps and JSON values under
/// string keys, which serde_json always accepts: the `Null` fallback is never taken.
fn to_value(report: &impl Serialize) -> Value {
    serde_json::to_value(report).unwrap_or(Value::Null)
}

/// The decision as JSON (see [`DecisionReport`]).
pub fn decision_json(
    doc: &Document,
    flag_key: &str,
    decision: &Decision<'_>,
    caller_default: Option<&str>,
) -> Value {
    DecisionReport::new(doc, flag_key, decision, caller_default).to_value()
}

impl Document {
    /// Evaluates and explains: the decision plus every step that led to it. The same function
    /// as [`Document::evaluate`] makes the decision, with a tracer instead of the no-op one.
    pub fn explain<'k, C: Context + ?Sized>(
        &self,
        flag: impl Into<FlagRef<'k>>,
        ctx: &C,
        now: &impl Now,
        local: &impl Overlay,
    ) -> Explanation {
        let flag = flag.into();
        let mut trace = Trace::default();
        let decision = self.decide(flag, ctx, now, local, &mut trace);
        let key = match flag {
            FlagRef::Key(key) => key,
            FlagRef::Index(index) => self.flags.get(index).map_or("", |f| &f.key),
        };
        Explanation {
            decision: DecisionReport::new(self, key, &decision, None),
            steps: trace.steps,
        }
    }
}
