//! The decision steps, in order (see the module documentation of [`crate::evaluate`]): one
//! generic function serves plain evaluation and `explain`.

use crate::autopilot::look;
use crate::context::{Attr, Context};
use crate::document::budget::{Budget, BudgetAction, BudgetRef};
use crate::document::guardrail::GuardAction;
use crate::document::{Action, Document, Flag, Rule};
use crate::evaluate::{
    budget_of, Choice, Decision, FlagRef, KillSource, Now, Overlay, PinEffect, PinLookup, Reason,
    Trip,
};
use crate::hash::{scale, IntUnit, PERCENT_TOTAL};
use crate::ramp::Ramp;
use crate::time::{format_timestamp, Millis};
use crate::trace::{NoTrace, Pin, Reroute, RuleOutcome, Step, Tracer};

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
    /// Evaluates `flag` (a key, or an index from [`Document::flag_position`]) for `ctx`, with
    /// `now` read only if a ramp needs it and `local` laid over the document. Never fails: an
    /// unknown flag (or an index out of range) gives `FLAG_NOT_FOUND`.
    // Always inlined: a call returns the 128-byte decision through memory and copies it again
    // (60 instructions per evaluation in the Python binding when LLVM's partitioning left it
    // out of line).
    #[inline(always)]
    pub fn evaluate<'d, 'k, C: Context + ?Sized>(
        &'d self,
        flag: impl Into<FlagRef<'k>>,
        ctx: &C,
        now: &impl Now,
        local: &impl Overlay,
    ) -> Decision<'d> {
        self.decide(flag.into(), ctx, now, local, &mut NoTrace)
    }

    /// The decision and, through `trace`, every step that led to it (see
    /// [`Document::explain`]).
    #[inline]
    pub(crate) fn decide<'d, C: Context + ?Sized, T: Tracer>(
        &'d self,
        flag: FlagRef<'_>,
        ctx: &C,
        now: &impl Now,
        local: &impl Overlay,
        trace: &mut T,
    ) -> Decision<'d> {
        // 1. Unknown flag.
        let found = match flag {
            FlagRef::Key(key) => self.flag_index.get(key).copied(),
            FlagRef::Index(index) => (index < self.flags.len()).then_some(index),
        };
        let Some(flag_index) = found else {
            trace.note(|| Step::Flag { found: false });
            return Decision::not_found();
        };
        self.decide_flag(flag_index, ctx, now, local, trace)
    }

    #[inline]
    fn decide_flag<'d, C: Context + ?Sized, T: Tracer>(
        &'d self,
        flag_index: usize,
        ctx: &C,
        now: &impl Now,
        local: &impl Overlay,
        trace: &mut T,
    ) -> Decision<'d> {
        let flag = &self.flags[flag_index];
        let flag_key: &str = &flag.key;
        let mut decision = Decision {
            flag: Some(flag),
            choice: Choice {
                flag_index: Some(flag_index),
                ..Choice::NOT_FOUND
            },
        };

        // 2. Kill switches: safety beats everything else.
        let trips = local.trips(flag_key);
        let guard = (!trips.is_empty()).then(|| Guard::new(flag, trips, ctx, now));
        let guard_kill = guard
            .as_ref()
            .and_then(|g| g.active(|t| t.action == GuardAction::Kill));
        let kill_source = if self.kill.active {
            Some(KillSource::Document)
        } else if flag.kill.active {
            Some(KillSource::Flag)
        } else if local.all_killed() {
            Some(KillSource::LocalAll)
        } else if local.flag_killed(flag_key) {
            Some(KillSource::LocalFlag)
        } else if guard_kill.is_some() {
            Some(KillSource::Guardrail)
        } else {
            decision.choice.budget = if flag.budgets.is_empty() && self.budgets.is_empty() {
                None
            } else {
                self.kill_budget(flag, ctx, local)
            };
            decision.budget.map(|_| KillSource::Budget)
        };
        if let Some(source) = kill_source {
            trace.note(|| {
                let switch = match source {
                    KillSource::Document => Some(&self.kill),
                    KillSource::Flag => Some(&flag.kill),
                    _ => None,
                };
                Step::Kill {
                    source: source.as_str(),
                    reason: switch.and_then(|k| k.reason.clone()),
                    actor: switch.and_then(|k| k.actor.clone()),
                    at: switch.and_then(|k| k.at).map(format_timestamp),
                }
            });
            if source == KillSource::Guardrail {
                if let Some((trip, index)) = guard_kill {
                    trace.note(|| trip_note(flag, trip, index, None));
                    decision.choice.guardrail = Some(index);
                }
            }
            if let Some(at) = decision.budget {
                trace.note(|| budget_note(self, flag, at));
            }
            decision.choice.variant_index = Some(flag.kill_variant());
            decision.choice.reason = Reason::Killed;
            decision.choice.kill_source = Some(source);
            return decision;
        }

        // 3. A sticky pin. The pin logic lives out of line: flags without `sticky` (most) pay
        // one branch for it, not the register pressure of its body.
        let mut sticky = StickyStep::NotSticky;
        if flag.sticky.is_some() {
            sticky = self.sticky_step(flag, ctx, guard.as_ref(), local, trace);
            if let StickyStep::Served(pinned) = sticky {
                decision.choice.variant_index = Some(pinned);
                decision.choice.reason = Reason::Sticky;
                decision.choice.pin = PinEffect::Keep;
                decision.choice.shadow = self.draw_shadow(
                    decision.variant_index,
                    flag,
                    ctx,
                    guard.as_ref(),
                    local,
                    trace,
                );
                return decision;
            }
        }
        let pin_broken = sticky == StickyStep::Broken;

        // 4. A budget whose action serves a variant.
        let served_budget = if flag.budgets.is_empty() {
            None
        } else {
            self.serve_budget(flag, ctx, local)
        };
        if let Some((at, variant)) = served_budget {
            trace.note(|| budget_note(self, flag, at));
            decision.choice.variant_index = Some(variant);
            decision.choice.reason = Reason::Budget;
            decision.choice.budget = Some(at);
            decision.choice.pin = if pin_broken {
                PinEffect::Delete
            } else {
                PinEffect::None
            };
            reroute(&mut decision, flag, guard.as_ref(), trace);
            return decision;
        }

        // The decision is large: it is filled in place by inlined steps, and out-of-line steps
        // (sticky, shadow, re-route) return values instead of taking `&mut` to it — moving it
        // around, or letting its address escape, showed up as memcpy and store-forwarding
        // stalls in profiles (45 ns → 40 ns per evaluation).
        self.rules_and_default(&mut decision, flag, ctx, now, guard.as_ref(), trace);
        if sticky != StickyStep::NotSticky {
            decision.choice.pin = PinEffect::Write;
        }
        if flag.shadow.is_some() {
            decision.choice.shadow = self.draw_shadow(
                decision.variant_index,
                flag,
                ctx,
                guard.as_ref(),
                local,
                trace,
            );
        }
        decision
    }

    /// Step 3 for a sticky flag: serves a live pin (`Served`), or says that the conversation
    /// has no usable pin (`Open`: pin the decision of steps 5–7) or that its pin was broken
    /// (`Broken`), or that the context names no conversation (`NotSticky`).
    #[inline(never)]
    fn sticky_step<C: Context + ?Sized, T: Tracer>(
        &self,
        flag: &Flag,
        ctx: &C,
        guard: Option<&Guard<'_>>,
        local: &impl Overlay,
        trace: &mut T,
    ) -> StickyStep {
        let Some(conversation) = flag
            .sticky
            .as_ref()
            .and_then(|sticky| read_unit_owned(ctx.attr(&sticky.by)))
        else {
            return StickyStep::NotSticky;
        };
        let broken_by = match local.pin(flag, conversation.as_str()) {
            PinLookup::Absent => None,
            PinLookup::Gone => Some(None),
            PinLookup::Variant(pinned) => {
                let tripped =
                    guard.and_then(|g| g.active(|t| t.variant == flag.variants[pinned].id));
                match tripped {
                    Some(trip) => Some(Some(trip)),
                    None => {
                        trace.note(|| Step::Sticky {
                            conversation: conversation.as_str().to_string(),
                            pin: Pin::Served(flag.variants[pinned].id.to_string()),
                        });
                        return StickyStep::Served(pinned);
                    }
                }
            }
        };
        match broken_by {
            Some(trip) => {
                trace.note(|| {
                    let why = match trip {
                        Some((trip, _)) => format!(
                            "guardrail \"{}\" tripped on the pinned variant",
                            trip.guardrail
                        ),
                        None => "the pinned variant no longer exists".to_string(),
                    };
                    Step::Sticky {
                        conversation: conversation.as_str().to_string(),
                        pin: Pin::Broken(why),
                    }
                });
                StickyStep::Broken
            }
            None => {
                trace.note(|| Step::Sticky {
                    conversation: conversation.as_str().to_string(),
                    pin: Pin::Open,
                });
                StickyStep::Open
            }
        }
    }

    /// Steps 5–7: rules in order, the default, the guardrail re-route.
    #[inline]
    fn rules_and_default<'d, C: Context + ?Sized, T: Tracer>(
        &'d self,
        decision: &mut Decision<'d>,
        flag: &'d Flag,
        ctx: &C,
        now: &impl Now,
        guard: Option<&Guard<'_>>,
        trace: &mut T,
    ) {
        // 5. Rules in order.
        for (rule_index, rule) in flag.rules.iter().enumerate() {
            if let Some(when) = &rule.when {
                if !when.matches(ctx, &self.segments, trace) {
                    trace.note(|| rule_passed(rule));
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
                Action::Ramp(ramp) => {
                    let hold = guard.and_then(|g| {
                        let variant = &flag.variants[ramp.variant].id;
                        g.active(|t| {
                            &t.variant == variant
                                && matches!(t.action, GuardAction::Halt | GuardAction::Rollback)
                        })
                    });
                    let outcome = self.ramp_outcome(flag, rule, ramp, ctx, now, hold, trace);
                    if let Some((trip, index)) = hold {
                        let unheld =
                            self.ramp_outcome(flag, rule, ramp, ctx, now, None, &mut NoTrace);
                        if unheld != outcome {
                            trace.note(|| trip_note(flag, trip, index, None));
                            decision.choice.guardrail = Some(index);
                        }
                    }
                    outcome
                }
            };
            match outcome {
                Some((variant, reason, bucket)) => {
                    trace.note(|| Step::Rule {
                        rule_id: rule.id.to_string(),
                        outcome: RuleOutcome::Served {
                            variant: flag.variants[variant].id.to_string(),
                            bucket,
                        },
                    });
                    decision.choice.variant_index = Some(variant);
                    decision.choice.reason = reason;
                    decision.choice.rule_index = Some(rule_index);
                    decision.choice.bucket = bucket;
                    reroute(decision, flag, guard, trace);
                    return;
                }
                None => trace.note(|| rule_passed(rule)),
            }
        }

        // 6. Default.
        trace.note(|| Step::Default {
            variant: flag.variants[flag.default].id.to_string(),
        });
        decision.choice.variant_index = Some(flag.default);
        decision.choice.reason = Reason::Default;
        // 7. A tripped `fallback` guardrail re-routes the variant of steps 5–6.
        reroute(decision, flag, guard, trace);
    }

    /// The scope of `budget` in `ctx`: the `per` attribute's value, or "" for a budget of the
    /// whole flag or document. `None`: the context has no such unit, so the budget does not
    /// apply to it.
    #[inline]
    fn budget_applies<C: Context + ?Sized>(
        budget: &Budget,
        ctx: &C,
        local: &impl Overlay,
    ) -> Option<bool> {
        match &budget.per {
            None => Some(local.budget_exhausted(budget, "")),
            Some(attr) => {
                let unit = read_unit_owned(ctx.attr(attr))?;
                Some(local.budget_exhausted(budget, unit.as_str()))
            }
        }
    }

    /// Step 2's budgets: the first exhausted one whose action is `kill` (the flag's, then the
    /// document's, which stop only flags that call a model).
    #[inline(never)]
    fn kill_budget<C: Context + ?Sized>(
        &self,
        flag: &Flag,
        ctx: &C,
        local: &impl Overlay,
    ) -> Option<BudgetRef> {
        let own = flag.budgets.iter().enumerate().find_map(|(i, b)| {
            (b.action == BudgetAction::Kill && Self::budget_applies(b, ctx, local) == Some(true))
                .then_some(BudgetRef::Flag(i as u32))
        });
        own.or_else(|| {
            if !flag.has_ai {
                return None;
            }
            self.budgets.iter().enumerate().find_map(|(i, b)| {
                (Self::budget_applies(b, ctx, local) == Some(true))
                    .then_some(BudgetRef::Document(i as u32))
            })
        })
    }

    /// Step 4: the first exhausted budget of the flag whose action serves a variant.
    #[inline(never)]
    fn serve_budget<C: Context + ?Sized>(
        &self,
        flag: &Flag,
        ctx: &C,
        local: &impl Overlay,
    ) -> Option<(BudgetRef, usize)> {
        flag.budgets
            .iter()
            .enumerate()
            .find_map(|(i, b)| match b.action {
                BudgetAction::Serve(variant)
                    if Self::budget_applies(b, ctx, local) == Some(true) =>
                {
                    Some((BudgetRef::Flag(i as u32), variant))
                }
                _ => None,
            })
    }

    /// The shadow draw: a decision that is not `KILLED` or `BUDGET`, of a variant other than
    /// the shadow one, for a unit inside the shadow's percentage, while the shadow variant is
    /// not taken out by a guardrail and its hourly cost cap has room.
    #[inline(never)]
    fn draw_shadow<C: Context + ?Sized, T: Tracer>(
        &self,
        chosen: Option<usize>,
        flag: &Flag,
        ctx: &C,
        guard: Option<&Guard<'_>>,
        local: &impl Overlay,
        trace: &mut T,
    ) -> Option<usize> {
        let shadow = flag.shadow.as_ref()?;
        if chosen == Some(shadow.variant) {
            return None;
        }
        let shadow_id = &flag.variants[shadow.variant].id;
        let why_not = if guard.is_some_and(|g| g.active(|t| t.takes_out(shadow_id)).is_some()) {
            Some("a guardrail took the shadow variant out")
        } else {
            match read_unit_owned(ctx.attr(&flag.bucket_by)) {
                None => Some("no unit to draw with"),
                Some(unit) => {
                    let bucket = scale(shadow.hasher.hash(unit.as_str()), PERCENT_TOTAL);
                    if bucket >= shadow.milli_percent {
                        Some("unit outside the shadow percentage")
                    } else if shadow
                        .cap
                        .as_ref()
                        .is_some_and(|cap| local.budget_exhausted(cap, ""))
                    {
                        Some("max_cost_per_hour reached")
                    } else {
                        None
                    }
                }
            }
        };
        trace.note(|| Step::Shadow {
            variant: shadow_id.to_string(),
            drawn: why_not.is_none(),
            why_not,
        });
        why_not.is_none().then_some(shadow.variant)
    }

    /// The unit's bucket over `total`, or `None` (traced) when the unit cannot be bucketed.
    // Always inlined, with everything but a string unit out of line: left to LLVM, the whole
    // function was kept out of line (a call and its spills per split, ~5 ns in the Rust bench).
    #[inline(always)]
    fn bucket_of<C: Context + ?Sized, T: Tracer>(
        &self,
        flag: &Flag,
        rule: &Rule,
        ctx: &C,
        total: u32,
        trace: &mut T,
    ) -> Option<u32> {
        let attr_name = rule.bucket_by.as_deref().unwrap_or(&flag.bucket_by);
        // A non-empty string, the usual unit, read without building an `Attr`.
        if let Some(unit) = ctx.str_attr(attr_name).filter(|unit| !unit.is_empty()) {
            return Some(scale(rule.hasher.hash(unit), total));
        }
        Self::bucket_of_other(rule, attr_name, ctx, total, trace)
    }

    /// [`Self::bucket_of`] for a unit that is not a non-empty string: an integer, or why none.
    #[inline(never)]
    fn bucket_of_other<C: Context + ?Sized, T: Tracer>(
        rule: &Rule,
        attr_name: &str,
        ctx: &C,
        total: u32,
        trace: &mut T,
    ) -> Option<u32> {
        let attr = ctx.attr(attr_name);
        match read_unit(&attr) {
            Ok(unit) => Some(scale(rule.hasher.hash(unit.as_str()), total)),
            Err(why) => {
                trace.note(|| Step::Bucket {
                    rule_id: rule.id.to_string(),
                    bucket_by: attr_name.to_string(),
                    skipped: why.describe(),
                });
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn ramp_outcome<C: Context + ?Sized, T: Tracer>(
        &self,
        flag: &Flag,
        rule: &Rule,
        ramp: &Ramp,
        ctx: &C,
        now: &impl Now,
        hold: Option<(&Trip, usize)>,
        trace: &mut T,
    ) -> Option<(usize, Reason, Option<u32>)> {
        let bucket = self.bucket_of(flag, rule, ctx, PERCENT_TOTAL, trace)?;
        let at = now.now();
        let milli_percent = match hold {
            None => ramp.milli_percent_at(at),
            // Halted: the ramp stays where it was when the guardrail tripped.
            Some((trip, _)) if trip.action == GuardAction::Halt => {
                ramp.milli_percent_at(at.min(trip.since))
            }
            Some(_) => 0,
        };
        trace.note(|| {
            let position = ramp.position(at);
            Step::Ramp {
                rule_id: rule.id.to_string(),
                at: format_timestamp(at),
                percent: milli_percent as f64 / 1000.0,
                step_index: position.step,
                paused: position.paused,
                rolled_back: position.rolled_back,
                next_step_at: position.next_step_at.map(format_timestamp),
                bucket,
                in_ramp: Ramp::includes(bucket, milli_percent),
                // A look holds no map with non-string keys, the one thing serde_json refuses:
                // the `Null` fallback is never taken.
                autopilot: flag.autopilot_of(ramp).map(|spec| {
                    serde_json::to_value(look(ramp, spec, at)).unwrap_or(serde_json::Value::Null)
                }),
            }
        });
        if Ramp::includes(bucket, milli_percent) {
            Some((ramp.variant, Reason::Split, Some(bucket)))
        } else {
            ramp.baseline.map(|b| (b, Reason::Split, Some(bucket)))
        }
    }
}

/// What step 3 found (see `Document::sticky_step`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum StickyStep {
    NotSticky,
    Open,
    Broken,
    /// The pinned variant serves.
    Served(usize),
}

/// The tripped guardrails of one flag, read for one evaluation.
struct Guard<'a> {
    flag: &'a Flag,
    trips: &'a [Trip],
    now: Millis,
    /// The unit (the flag's `bucket_by`), for the half-open probe draw.
    unit: Option<Unit<'a>>,
}

impl<'a> Guard<'a> {
    fn new<C: Context + ?Sized + 'a>(
        flag: &'a Flag,
        trips: &'a [Trip],
        ctx: &'a C,
        now: &impl Now,
    ) -> Guard<'a> {
        Guard {
            flag,
            trips,
            now: now.now(),
            unit: read_unit_owned(ctx.attr(&flag.bucket_by)),
        }
    }

    /// The first trip that matches `which`, still belongs to a guardrail of the live document,
    /// and does not spare this unit as a probe; with the guardrail's index.
    fn active(&self, which: impl Fn(&Trip) -> bool) -> Option<(&'a Trip, usize)> {
        let unit = self.unit.as_ref().map(Unit::as_str);
        self.trips.iter().find_map(|trip| {
            if !which(trip) || trip.is_probe(self.now, unit) {
                return None;
            }
            let index = self
                .flag
                .guardrails
                .iter()
                .position(|g| g.id == trip.guardrail)?;
            Some((trip, index))
        })
    }
}

/// Reads the unit into an owned form (an integer is formatted on the stack).
fn read_unit_owned<'a>(attr: Attr<'a>) -> Option<Unit<'a>> {
    match attr {
        Attr::Str(s) if !s.is_empty() => Some(Unit::Str(s)),
        Attr::Int(i) => Some(Unit::Int(IntUnit::new(i))),
        _ => None,
    }
}

fn rule_passed(rule: &Rule) -> Step {
    Step::Rule {
        rule_id: rule.id.to_string(),
        outcome: RuleOutcome::Passed,
    }
}

fn budget_note(doc: &Document, flag: &Flag, at: BudgetRef) -> Step {
    let budget = budget_of(doc, Some(flag), at);
    Step::Budget {
        budget: budget.map(|b| b.id.to_string()),
        document_wide: matches!(at, BudgetRef::Document(_)),
        per: budget.and_then(|b| b.per.as_deref()).map(str::to_string),
        measure: budget.map(|b| b.measure.as_str()),
        limit: budget.map(|b| b.limit),
        action: budget.map(Budget::action_str),
        exhausted: true,
    }
}

/// The note of a tripped guardrail; `reroute` for a fallback that re-routed the decision.
fn trip_note(flag: &Flag, trip: &Trip, index: usize, reroute: Option<Reroute>) -> Step {
    Step::Guardrail {
        guardrail: trip.guardrail.to_string(),
        metric: flag.guardrails[index].metric.as_str(),
        variant: trip.variant.to_string(),
        action: trip.action.as_str(),
        since: format_timestamp(trip.since),
        probe_from: format_timestamp(trip.probe_from),
        reroute,
    }
}

/// Step 7: a variant whose `fallback` guardrail tripped is replaced by the next variant of the
/// flag's `fallback` list that is not itself tripped (the decision keeps the rule and bucket
/// that chose the replaced variant). With no healthy fallback the decision stands.
#[inline(always)]
fn reroute<T: Tracer>(
    decision: &mut Decision<'_>,
    flag: &Flag,
    guard: Option<&Guard<'_>>,
    trace: &mut T,
) {
    // Without trips (nearly always) there is nothing to do: no call, no decision spilled.
    let (Some(guard), Some(chosen)) = (guard, decision.variant_index) else {
        return;
    };
    if let Some((replacement, index)) = reroute_tripped(chosen, flag, guard, trace) {
        decision.choice.replaced_variant = Some(chosen);
        decision.choice.variant_index = Some(replacement);
        decision.choice.reason = Reason::Guardrail;
        decision.choice.guardrail = Some(index);
    }
}

#[inline(never)]
fn reroute_tripped<T: Tracer>(
    chosen: usize,
    flag: &Flag,
    guard: &Guard<'_>,
    trace: &mut T,
) -> Option<(usize, usize)> {
    let tripped = |variant: usize| guard.active(|t| t.takes_out(&flag.variants[variant].id));
    let (trip, index) = guard
        .active(|t| t.action == GuardAction::Fallback && t.variant == flag.variants[chosen].id)?;
    let &replacement = flag
        .fallback
        .iter()
        .find(|&&v| v != chosen && tripped(v).is_none())?;
    trace.note(|| {
        let reroute = Reroute {
            replaced: flag.variants[chosen].id.to_string(),
            served: flag.variants[replacement].id.to_string(),
        };
        trip_note(flag, trip, index, Some(reroute))
    });
    Some((replacement, index))
}
