//! The decision: which variant a context gets from a flag, and why.
//!
//! The order is fixed (docs/flag-document.md, "The decision"):
//! 1. unknown flag → the caller's default, `FLAG_NOT_FOUND`;
//! 2. a kill (document-wide, the flag's own, or a local override) → the kill variant, `KILLED`;
//! 3. rules in order: a `serve` rule that matches → `TARGETING_MATCH`; a split or ramp that
//!    places the unit → `SPLIT`;
//! 4. the flag's `default` → `DEFAULT`.
//!
//! One function makes the decision for both plain evaluation and `explain`: it is generic over
//! a [`Tracer`], and the no-op tracer compiles away, so the explanation can never drift from
//! what evaluation actually does.

use serde_json::{json, Value};

use crate::context::{Attr, Context};
use crate::document::{Action, Document, Flag, Rule, Variant};
use crate::hash::{scale, IntUnit, PERCENT_TOTAL};
use crate::ramp::Ramp;
use crate::time::{format_timestamp, Millis};

/// Why a variant was chosen. The string forms are stable across languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    FlagNotFound,
    Killed,
    Guardrail,
    Sticky,
    Budget,
    TargetingMatch,
    Split,
    Default,
}

impl Reason {
    pub const ALL: [Reason; 8] = [
        Reason::FlagNotFound,
        Reason::Killed,
        Reason::Guardrail,
        Reason::Sticky,
        Reason::Budget,
        Reason::TargetingMatch,
        Reason::Split,
        Reason::Default,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FlagNotFound => "FLAG_NOT_FOUND",
            Reason::Killed => "KILLED",
            Reason::Guardrail => "GUARDRAIL",
            Reason::Sticky => "STICKY",
            Reason::Budget => "BUDGET",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Default => "DEFAULT",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which kill switch is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillSource {
    /// `kill.active` at the top of the document.
    Document,
    /// The flag's own `kill.active`.
    Flag,
    /// `kill()` for every flag in this process.
    LocalAll,
    /// `kill(flag)` in this process.
    LocalFlag,
}

impl KillSource {
    pub const ALL: [KillSource; 4] = [
        KillSource::Document,
        KillSource::Flag,
        KillSource::LocalAll,
        KillSource::LocalFlag,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KillSource::Document => "document",
            KillSource::Flag => "flag",
            KillSource::LocalAll => "local-all",
            KillSource::LocalFlag => "local-flag",
        }
    }
}

/// Kills in force in this process only, without touching the document.
pub trait LocalKills {
    /// Whether every flag is killed locally.
    fn all_killed(&self) -> bool;
    /// Whether this flag is killed locally.
    fn flag_killed(&self, flag: &str) -> bool;
}

/// No local kills.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLocalKills;

impl LocalKills for NoLocalKills {
    fn all_killed(&self) -> bool {
        false
    }
    fn flag_killed(&self, _flag: &str) -> bool {
        false
    }
}

/// A decision borrowed from the document that made it.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'d> {
    /// The flag, `None` when it does not exist (reason `FLAG_NOT_FOUND`).
    pub flag: Option<&'d Flag>,
    pub flag_index: Option<usize>,
    /// Index into `flag.variants` of the chosen variant.
    pub variant_index: Option<usize>,
    pub reason: Reason,
    /// Index into `flag.rules` of the rule that decided, if any.
    pub rule_index: Option<usize>,
    /// The unit's bucket, when a split or ramp decided (over the split's total or 100 000).
    pub bucket: Option<u32>,
    pub kill_source: Option<KillSource>,
}

impl<'d> Decision<'d> {
    fn not_found() -> Self {
        Decision {
            flag: None,
            flag_index: None,
            variant_index: None,
            reason: Reason::FlagNotFound,
            rule_index: None,
            bucket: None,
            kill_source: None,
        }
    }

    pub fn variant(&self) -> Option<&'d Variant> {
        Some(&self.flag?.variants[self.variant_index?])
    }

    pub fn variant_id(&self) -> Option<&'d str> {
        self.variant().map(|v| &*v.id)
    }

    pub fn payload(&self) -> Option<&'d Value> {
        self.variant().map(|v| &*v.payload)
    }

    pub fn rule(&self) -> Option<&'d Rule> {
        Some(&self.flag?.rules[self.rule_index?])
    }

    pub fn rule_id(&self) -> Option<&'d str> {
        self.rule().map(|r| &*r.id)
    }
}

/// Receives the steps of a decision. [`NoTrace`] drops them at compile time.
pub trait Tracer {
    const ENABLED: bool;
    /// Records a note; `make` runs only when tracing is enabled.
    fn note(&mut self, make: impl FnOnce() -> Value);
}

/// The tracer of plain evaluation: records nothing, costs nothing.
#[derive(Debug, Default)]
pub struct NoTrace;

impl Tracer for NoTrace {
    const ENABLED: bool = false;
    #[inline(always)]
    fn note(&mut self, _make: impl FnOnce() -> Value) {}
}

/// Collects notes for `explain`.
#[derive(Debug, Default)]
pub struct Trace {
    pub notes: Vec<Value>,
}

impl Tracer for Trace {
    const ENABLED: bool = true;
    fn note(&mut self, make: impl FnOnce() -> Value) {
        self.notes.push(make());
    }
}

/// Where "now" comes from: read lazily, only when a ramp needs it.
pub trait Now {
    fn now(&self) -> Millis;
}

impl<F: Fn() -> Millis> Now for F {
    fn now(&self) -> Millis {
        self()
    }
}

/// A fixed instant (tests, `--at`).
#[derive(Debug, Clone, Copy)]
pub struct At(pub Millis);

impl Now for At {
    fn now(&self) -> Millis {
        self.0
    }
}

/// The unit a rule buckets, borrowed or formatted on the stack.
enum Unit<'a> {
    Str(&'a str),
    Int(IntUnit),
}

impl Unit<'_> {
    fn as_str(&self) -> &str {
        match self {
            Unit::Str(s) => s,
            Unit::Int(i) => i.as_str(),
        }
    }
}

/// Why a unit cannot be bucketed (formatted only when explaining).
#[derive(Clone, Copy)]
enum NoUnit {
    Empty,
    Missing,
    WrongType(&'static str),
}

impl NoUnit {
    fn describe(self) -> String {
        match self {
            NoUnit::Empty => "unit is an empty string".to_string(),
            NoUnit::Missing => "unit attribute is missing".to_string(),
            NoUnit::WrongType(name) => {
                format!("unit is a {name}; only strings and integers can be bucketed")
            }
        }
    }
}

/// Reads the bucketing unit; `Err` says why the split cannot be computed.
#[inline]
fn read_unit<'a>(attr: &'a Attr<'a>) -> Result<Unit<'a>, NoUnit> {
    match attr {
        Attr::Str(s) if !s.is_empty() => Ok(Unit::Str(s)),
        Attr::Str(_) => Err(NoUnit::Empty),
        Attr::Int(i) => Ok(Unit::Int(IntUnit::new(*i))),
        Attr::Missing => Err(NoUnit::Missing),
        other => Err(NoUnit::WrongType(other.type_name())),
    }
}

impl Document {
    /// Evaluates `flag` for `ctx`. Never fails: an unknown flag gives `FLAG_NOT_FOUND`.
    #[inline]
    pub fn evaluate<'d, C: Context + ?Sized>(
        &'d self,
        flag: &str,
        ctx: &C,
        now: &impl Now,
        local: &impl LocalKills,
    ) -> Decision<'d> {
        self.decide(flag, ctx, now, local, &mut NoTrace)
    }

    /// Evaluates and explains: the decision plus every step that led to it, as JSON.
    pub fn explain<C: Context + ?Sized>(
        &self,
        flag: &str,
        ctx: &C,
        now: &impl Now,
        local: &impl LocalKills,
    ) -> Value {
        let mut trace = Trace::default();
        let decision = self.decide(flag, ctx, now, local, &mut trace);
        let mut out = decision_json(self, flag, &decision, None);
        out["steps"] = Value::Array(trace.notes);
        out
    }

    #[inline]
    pub(crate) fn decide<'d, C: Context + ?Sized, T: Tracer>(
        &'d self,
        flag_key: &str,
        ctx: &C,
        now: &impl Now,
        local: &impl LocalKills,
        trace: &mut T,
    ) -> Decision<'d> {
        // 1. Unknown flag.
        let Some(&flag_index) = self.flag_index.get(flag_key) else {
            trace.note(|| json!({ "step": "flag", "found": false }));
            return Decision::not_found();
        };
        self.decide_flag(flag_index, ctx, now, local, trace)
    }

    /// Evaluates the flag at `flag_index` (from [`Document::flag_position`]); an index out of
    /// range reads as an unknown flag. For bindings that already looked the flag up.
    #[inline]
    pub fn evaluate_index<'d, C: Context + ?Sized>(
        &'d self,
        flag_index: usize,
        ctx: &C,
        now: &impl Now,
        local: &impl LocalKills,
    ) -> Decision<'d> {
        if flag_index >= self.flags.len() {
            return Decision::not_found();
        }
        self.decide_flag(flag_index, ctx, now, local, &mut NoTrace)
    }

    #[inline]
    fn decide_flag<'d, C: Context + ?Sized, T: Tracer>(
        &'d self,
        flag_index: usize,
        ctx: &C,
        now: &impl Now,
        local: &impl LocalKills,
        trace: &mut T,
    ) -> Decision<'d> {
        let flag = &self.flags[flag_index];
        let flag_key: &str = &flag.key;
        let mut decision = Decision {
            flag: Some(flag),
            flag_index: Some(flag_index),
            ..Decision::not_found()
        };

        // 2. Kill switches: safety beats everything else.
        let kill_source = if self.kill.active {
            Some(KillSource::Document)
        } else if flag.kill.active {
            Some(KillSource::Flag)
        } else if local.all_killed() {
            Some(KillSource::LocalAll)
        } else if local.flag_killed(flag_key) {
            Some(KillSource::LocalFlag)
        } else {
            None
        };
        if let Some(source) = kill_source {
            trace.note(|| {
                let switch = match source {
                    KillSource::Document => Some(&self.kill),
                    KillSource::Flag => Some(&flag.kill),
                    _ => None,
                };
                json!({
                    "step": "kill",
                    "source": source.as_str(),
                    "reason": switch.and_then(|k| k.reason.clone()),
                    "actor": switch.and_then(|k| k.actor.clone()),
                    "at": switch.and_then(|k| k.at).map(format_timestamp),
                })
            });
            decision.variant_index = Some(flag.kill_variant());
            decision.reason = Reason::Killed;
            decision.kill_source = Some(source);
            return decision;
        }

        // 3. Rules in order.
        for (rule_index, rule) in flag.rules.iter().enumerate() {
            if let Some(when) = &rule.when {
                if !when.matches(ctx, &self.segments, trace) {
                    trace
                        .note(|| json!({ "step": "rule", "rule_id": &*rule.id, "matched": false }));
                    continue;
                }
            }
            let outcome = match &rule.action {
                Action::Serve(variant) => Some((*variant, Reason::TargetingMatch, None)),
                Action::Split(split) => self
                    .bucket_of(flag, rule, ctx, split.total, trace)
                    .and_then(|bucket| {
                        split.pick(bucket).map(|v| (v, Reason::Split, Some(bucket)))
                    }),
                Action::Ramp(ramp) => self.ramp_outcome(flag, rule, ramp, ctx, now, trace),
            };
            match outcome {
                Some((variant, reason, bucket)) => {
                    trace.note(|| {
                        json!({
                            "step": "rule", "rule_id": &*rule.id, "matched": true,
                            "variant": &*flag.variants[variant].id, "bucket": bucket,
                        })
                    });
                    decision.variant_index = Some(variant);
                    decision.reason = reason;
                    decision.rule_index = Some(rule_index);
                    decision.bucket = bucket;
                    return decision;
                }
                None => {
                    trace
                        .note(|| json!({ "step": "rule", "rule_id": &*rule.id, "matched": false }));
                }
            }
        }

        // 4. Default.
        trace.note(|| json!({ "step": "default", "variant": &*flag.variants[flag.default].id }));
        decision.variant_index = Some(flag.default);
        decision.reason = Reason::Default;
        decision
    }

    /// The unit's bucket over `total`, or `None` (traced) when the unit cannot be bucketed.
    #[inline]
    fn bucket_of<C: Context + ?Sized, T: Tracer>(
        &self,
        flag: &Flag,
        rule: &Rule,
        ctx: &C,
        total: u32,
        trace: &mut T,
    ) -> Option<u32> {
        let attr_name = rule.bucket_by.as_deref().unwrap_or(&flag.bucket_by);
        let attr = ctx.attr(attr_name);
        match read_unit(&attr) {
            Ok(unit) => Some(scale(rule.hasher.hash(unit.as_str()), total)),
            Err(why) => {
                trace.note(|| {
                    json!({ "step": "bucket", "rule_id": &*rule.id, "bucket_by": attr_name,
                            "skipped": why.describe() })
                });
                None
            }
        }
    }

    fn ramp_outcome<C: Context + ?Sized, T: Tracer>(
        &self,
        flag: &Flag,
        rule: &Rule,
        ramp: &Ramp,
        ctx: &C,
        now: &impl Now,
        trace: &mut T,
    ) -> Option<(usize, Reason, Option<u32>)> {
        let bucket = self.bucket_of(flag, rule, ctx, PERCENT_TOTAL, trace)?;
        let at = now.now();
        let milli_percent = ramp.milli_percent_at(at);
        trace.note(|| {
            let position = ramp.position(at);
            json!({
                "step": "ramp", "rule_id": &*rule.id, "at": format_timestamp(at),
                "percent": milli_percent as f64 / 1000.0, "step_index": position.step,
                "paused": position.paused, "rolled_back": position.rolled_back,
                "next_step_at": position.next_step_at.map(format_timestamp),
                "bucket": bucket, "in_ramp": Ramp::includes(bucket, milli_percent),
            })
        });
        if Ramp::includes(bucket, milli_percent) {
            Some((ramp.variant, Reason::Split, Some(bucket)))
        } else {
            ramp.baseline.map(|b| (b, Reason::Split, Some(bucket)))
        }
    }
}

/// The decision as JSON, the shape the CLI and the bindings' `explain` share.
pub fn decision_json(
    doc: &Document,
    flag_key: &str,
    decision: &Decision<'_>,
    caller_default: Option<&str>,
) -> Value {
    let variant = decision.variant_id().or(caller_default);
    json!({
        "flag": flag_key,
        "variant": variant,
        "payload": decision.payload(),
        "reason": decision.reason.as_str(),
        "rule_id": decision.rule_id(),
        "bucket": decision.bucket,
        "revision": doc.revision(),
        "kill_source": decision.kill_source.map(KillSource::as_str),
    })
}
