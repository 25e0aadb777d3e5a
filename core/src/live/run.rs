//! One `call`: the fallback chain and the attempts made along it.
//!
//! A [`Run`] is made by [`Flags::start_run`]: the flag is evaluated once, and the chain is the
//! assigned variant followed by the flag's `fallback` list (each variant at most once, so
//! there is no retry loop). The binding asks [`Run::next_step`] what to do, runs the user's
//! function with the step's timeout, and reports [`Run::succeed`] or [`Run::fail`]; latency
//! is measured here, with a monotonic clock, so that it means the same in every language.
//!
//! Bounds: at most `max_attempts` model calls (default: the chain's AI variants) and at most
//! `max_total_ms` of wall time; when either is spent, the chain jumps to its first remaining
//! non-AI variant, which is served without calling anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::context::{Attr, Context};
use crate::document::budget::{Budget, BudgetRef, Measure};
use crate::document::{Document, Flag};
use crate::error::{Error, Result};
use crate::evaluate::{budget_of, At};
use crate::live::{EvalOptions, Evaluation, Flags, PinSource, Snapshot};
use crate::runtime::budget::BudgetBook;
use crate::runtime::classify::ErrorKind;
use crate::runtime::events::{EventBody, Exposure, Outcome, EXPOSURE_OF_RUN};
use crate::runtime::metrics::AttemptSample;
use crate::runtime::run_id::{format_run_id, new_run_key};
use crate::runtime::{AttemptRecord, SEGMENT_ATTRIBUTE};
use crate::time::{format_timestamp, Millis};

pub use super::attempt::{Attempt, Step, Usage};

struct Current {
    variant: usize,
    started: Instant,
}

/// One call through a flag's fallback chain.
pub struct Run {
    flags: Flags,
    run_key: u128,
    run_id: Arc<str>,
    evaluation: Evaluation,
    unit: Option<Box<str>>,
    segment: Option<Box<str>>,
    chain: Vec<usize>,
    position: usize,
    ai_attempts: u32,
    max_attempts: u32,
    deadline: Option<Instant>,
    current: Option<Current>,
    attempts: Vec<Attempt>,
    served: Option<usize>,
    shadow: bool,
    /// The cost budgets this run spends against (scope: the `per` value, or "").
    cost_scopes: Vec<CostScope>,
    /// What is reserved against each of `cost_scopes` (or, for a shadow run, against the
    /// shadow's hourly cap) for the attempt about to start or in flight, and for which variant.
    reserved: Option<(usize, f64)>,
    /// The output of the attempt in flight, for outcome events of runs with a shadow.
    output: Option<Value>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("run_id", &self.run_id)
            .field("flag", &self.evaluation.flag_key())
            .field("attempts", &self.attempts.len())
            .finish()
    }
}

/// A budget a run spends against, with its scope (the `per` value, or "").
type CostScope = (BudgetRef, Box<str>);

/// Opens a run's budgets: counts the request against its `max_requests` budgets and reserves
/// `reserve` (the assigned variant's estimate; 0 for a tracker) against its `max_cost`
/// budgets, whose scopes it returns for the reconciliation when the attempt ends. Budgets
/// whose `per` attribute the context lacks do not apply.
fn open_budgets<C: Context + ?Sized>(
    book: &mut BudgetBook,
    doc: &Document,
    flag: &Flag,
    ctx: &C,
    reserve: f64,
    now: Millis,
) -> Vec<CostScope> {
    let own = flag
        .budgets
        .iter()
        .enumerate()
        .map(|(i, b)| (BudgetRef::Flag(i as u32), b));
    let wide = doc
        .budgets()
        .iter()
        .enumerate()
        .map(|(i, b)| (BudgetRef::Document(i as u32), b));
    let mut cost_scopes = Vec::new();
    for (at, budget) in own.chain(wide) {
        let scope = match &budget.per {
            None => Box::from(""),
            Some(attr) => match string_attr(ctx, attr).filter(|s| !s.is_empty()) {
                Some(scope) => scope,
                None => continue,
            },
        };
        match budget.measure {
            Measure::Requests => book.charge(budget, &scope, 1.0, now),
            Measure::Cost => {
                book.reserve(budget, &scope, reserve, now);
                cost_scopes.push((at, scope));
            }
        }
    }
    cost_scopes
}

fn string_attr<C: Context + ?Sized>(ctx: &C, name: &str) -> Option<Box<str>> {
    match ctx.attr(name) {
        Attr::Str(s) => Some(Box::from(s)),
        Attr::Int(i) => Some(i.to_string().into_boxed_str()),
        _ => None,
    }
}

/// The chain of a decision: the assigned variant, then the flag's fallbacks (each once,
/// skipping the assigned one and variants a tripped guardrail currently reroutes).
fn chain_of(flag: &Flag, assigned: usize, rerouted: &dyn Fn(usize) -> bool) -> Vec<usize> {
    let mut chain = Vec::with_capacity(1 + flag.fallback.len());
    chain.push(assigned);
    for &v in &flag.fallback {
        if !chain.contains(&v) && !rerouted(v) {
            chain.push(v);
        }
    }
    chain
}

impl Flags {
    /// Starts a call of `flag` for `ctx`: evaluates it once and plans the chain. Fails only
    /// when the flag does not exist (there is no variant to call), with `FLAG_NOT_FOUND`.
    pub fn start_run<C: Context + ?Sized>(&self, flag: &str, ctx: &C) -> Result<Run> {
        self.start_run_in(&self.snapshot(), flag, ctx)
    }

    /// [`Flags::start_run`] on a snapshot the caller already holds: a binding that read the
    /// flag's `run_attributes` from this snapshot's document evaluates that same document.
    pub fn start_run_in<C: Context + ?Sized>(
        &self,
        snapshot: &Snapshot<'_>,
        flag: &str,
        ctx: &C,
    ) -> Result<Run> {
        self.start_run_with(snapshot, flag, ctx, PinSource::Memory)
    }

    /// [`Flags::start_run_in`] with the pin source of a sticky flag: with
    /// [`PinSource::Given`] nothing is written, and the binding carries out
    /// `run.evaluation().pin` on its own store.
    pub fn start_run_with<C: Context + ?Sized>(
        &self,
        snapshot: &Snapshot<'_>,
        flag: &str,
        ctx: &C,
        pins: PinSource<'_>,
    ) -> Result<Run> {
        self.start_run_forced(snapshot, flag, ctx, pins, None)
    }

    /// [`Flags::start_run_with`] under a test override: `forced` is the variant the binding's
    /// override scope forces for this flag (see [`crate::live::overrides::forced`]). The chain
    /// starts at that variant, with no budget reserved; its fallbacks still back it up.
    pub fn start_run_forced<C: Context + ?Sized>(
        &self,
        snapshot: &Snapshot<'_>,
        flag: &str,
        ctx: &C,
        pins: PinSource<'_>,
        forced: Option<&str>,
    ) -> Result<Run> {
        let doc = snapshot.document();
        let Some(index) = doc.flag_position(flag) else {
            return Err(Error::FlagNotFound {
                flag: flag.to_string(),
            });
        };
        let forced = forced.filter(|v| doc.flags()[index].variant_position(v).is_some());
        let budgeted = forced.is_none()
            && (!doc.flags()[index].budgets.is_empty() || !doc.budgets().is_empty());
        let (evaluation, cost_scopes, reserved) = if budgeted {
            self.evaluate_and_reserve(snapshot, index, flag, ctx, pins)
        } else {
            let options = EvalOptions {
                at: None,
                pin: pins,
                forced,
            };
            let evaluation = snapshot.evaluate_owned(index, ctx, options);
            (evaluation, Vec::new(), None)
        };
        let (Some(flag_def), Some(assigned)) = (
            evaluation
                .flag_index
                .and_then(|i| evaluation.document.flags().get(i)),
            evaluation.variant_index,
        ) else {
            return Err(Error::FlagNotFound {
                flag: flag.to_string(),
            });
        };
        let now = self.now_millis();
        let unit = string_attr(ctx, &flag_def.bucket_by);
        let overlay = snapshot.overlay(PinSource::Memory);
        let trips = crate::evaluate::Overlay::trips(&overlay, &flag_def.key);
        let rerouted = |v: usize| {
            trips
                .iter()
                .any(|t| t.takes_out(&flag_def.variants[v].id) && !t.is_half_open(now))
        };
        // A killed flag starts at its kill variant; its fallbacks still back it up.
        let chain = chain_of(flag_def, assigned, &rerouted);
        let ai_steps = chain.iter().filter(|&&v| flag_def.variants[v].ai).count() as u32;
        let started = Instant::now();
        let run_key = new_run_key();
        let run = Run {
            flags: self.clone(),
            run_key,
            run_id: format_run_id(run_key),
            unit,
            segment: string_attr(ctx, SEGMENT_ATTRIBUTE),
            chain,
            position: 0,
            ai_attempts: 0,
            max_attempts: flag_def.max_attempts.unwrap_or(ai_steps).min(ai_steps),
            deadline: flag_def
                .max_total_ms
                .map(|ms| started + Duration::from_millis(ms)),
            current: None,
            attempts: Vec::new(),
            served: None,
            shadow: false,
            cost_scopes,
            reserved,
            output: None,
            evaluation,
        };
        run.emit_exposure();
        Ok(run)
    }

    /// Evaluates a flag with budgets under the budget lock and, in the same critical section,
    /// counts the request and reserves the assigned variant's estimated maximum cost: two
    /// calls can never both take the last room of a budget.
    fn evaluate_and_reserve<C: Context + ?Sized>(
        &self,
        snapshot: &Snapshot<'_>,
        index: usize,
        flag: &str,
        ctx: &C,
        pins: PinSource<'_>,
    ) -> (Evaluation, Vec<CostScope>, Option<(usize, f64)>) {
        let now = self.now_millis();
        let doc = snapshot.document_arc();
        let (evaluation, cost_scopes, reserved) = self.runtime().with_budgets(now, |book| {
            let decision = {
                let overlay = snapshot.overlay_holding(book, pins);
                doc.evaluate(index, ctx, &At(now), &overlay)
            };
            let evaluation = Evaluation::of_decision(&decision, flag, doc);
            let (Some(flag_def), Some(assigned)) = (decision.flag, decision.variant_index) else {
                return (evaluation, Vec::new(), None);
            };
            let amount = flag_def.variants[assigned].reserved_cost();
            let cost_scopes = open_budgets(book, doc, flag_def, ctx, amount, now);
            let reserved = (!cost_scopes.is_empty()).then_some((assigned, amount));
            (evaluation, cost_scopes, reserved)
        });
        if matches!(pins, PinSource::Memory) {
            snapshot.keep_pin(&evaluation.decision(), ctx);
        }
        (evaluation, cost_scopes, reserved)
    }

    /// A tracker: a run of one attempt on an evaluation the app already has, for apps that
    /// call the model themselves. Report with [`Run::succeed`] / [`Run::fail`] (give
    /// `Usage::latency_ms` when the app timed the call).
    pub fn tracker<C: Context + ?Sized>(&self, evaluation: Evaluation, ctx: &C) -> Result<Run> {
        let (Some(flag_def), Some(assigned)) = (evaluation.flag(), evaluation.variant_index) else {
            return Err(Error::FlagNotFound {
                flag: evaluation.flag_key().to_string(),
            });
        };
        let unit = string_attr(ctx, &flag_def.bucket_by);
        // The app called (or is calling) the model already: count the request now and its cost
        // when it reports; there is nothing to reserve ahead.
        let mut cost_scopes = Vec::new();
        if !flag_def.budgets.is_empty() || !evaluation.document.budgets().is_empty() {
            let now = self.now_millis();
            cost_scopes = self.runtime().with_budgets(now, |book| {
                open_budgets(book, &evaluation.document, flag_def, ctx, 0.0, now)
            });
        }
        let started = Instant::now();
        let run_key = new_run_key();
        let run = Run {
            flags: self.clone(),
            run_key,
            run_id: format_run_id(run_key),
            unit,
            segment: string_attr(ctx, SEGMENT_ATTRIBUTE),
            chain: vec![assigned],
            position: 1,
            ai_attempts: 1,
            max_attempts: 1,
            deadline: None,
            current: Some(Current {
                variant: assigned,
                started,
            }),
            attempts: Vec::new(),
            served: None,
            shadow: false,
            cost_scopes,
            reserved: None,
            output: None,
            evaluation,
        };
        run.emit_exposure();
        Ok(run)
    }
}

impl Drop for Run {
    /// A run dropped with an attempt reserved (an abandoned call, a tracker never reported)
    /// gives its reservation back: budgets never leak room.
    fn drop(&mut self) {
        self.release_reservation();
    }
}

impl Run {
    fn flag(&self) -> Option<&Flag> {
        self.evaluation.flag()
    }

    pub fn run_id(&self) -> &Arc<str> {
        &self.run_id
    }

    /// The evaluation that assigned the first variant.
    pub fn evaluation(&self) -> &Evaluation {
        &self.evaluation
    }

    /// The unit id read from the context (the flag's `bucket_by`).
    pub fn unit(&self) -> Option<&str> {
        self.unit.as_deref()
    }

    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    /// The variant that served the result (an AI variant that succeeded, or the non-AI
    /// variant the chain ended on).
    pub fn served(&self) -> Option<usize> {
        self.served
    }

    /// Whether a variant other than the assigned one served.
    pub fn fallback_used(&self) -> bool {
        self.served
            .is_some_and(|v| Some(v) != self.evaluation.variant_index)
    }

    /// Whether this run is the shadow copy of another.
    pub fn is_shadow(&self) -> bool {
        self.shadow
    }

    /// The shadow variant drawn for this run, if any.
    pub fn shadow_variant(&self) -> Option<usize> {
        self.evaluation.shadow
    }

    /// Whether outcome events of this run carry the function's output (runs with a shadow
    /// and shadow runs: the two outputs are compared offline). Bindings convert the output
    /// only then.
    pub fn wants_output(&self) -> bool {
        self.shadow || self.evaluation.shadow.is_some()
    }

    /// The output of the attempt in flight (see [`Run::wants_output`]).
    pub fn set_output(&mut self, output: Value) {
        self.output = Some(output);
    }

    /// The shadow copy of this run, when the evaluation drew a shadow variant and the shadow's
    /// hourly cost cap still has room (checked and reserved atomically). One attempt on the
    /// shadow variant, same run id; its outcome is recorded with `shadow: true`, never feeds a
    /// guardrail or a budget other than the cap, and never changes this run.
    pub fn shadow_run(&self) -> Option<Run> {
        let variant = self.evaluation.shadow?;
        let flag = self.flag()?;
        let shadow = flag.shadow.as_ref()?;
        let def = flag.variants.get(variant)?;
        let mut reserved = None;
        if let Some(cap) = &shadow.cap {
            let now = self.flags.now_millis();
            let admitted = self.flags.runtime().with_budgets(now, |book| {
                if book.is_exhausted(cap, "", now) {
                    return false;
                }
                let amount = def.reserved_cost();
                book.reserve(cap, "", amount, now);
                reserved = Some((variant, amount));
                true
            });
            if !admitted {
                return None;
            }
        }
        let started = Instant::now();
        Some(Run {
            flags: self.flags.clone(),
            run_key: self.run_key,
            run_id: Arc::clone(&self.run_id),
            evaluation: self.evaluation.clone(),
            unit: self.unit.clone(),
            segment: self.segment.clone(),
            chain: vec![variant],
            position: 0,
            ai_attempts: 0,
            max_attempts: 1,
            deadline: flag
                .max_total_ms
                .map(|ms| started + Duration::from_millis(ms)),
            current: None,
            attempts: Vec::new(),
            served: None,
            shadow: true,
            cost_scopes: Vec::new(),
            reserved,
            output: None,
        })
    }

    /// Milliseconds left of the call's total time, if bounded.
    fn remaining_ms(&self) -> Option<u64> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()).as_millis() as u64)
    }

    /// What to do next. Call it after each failed attempt; after a success or a `Serve` the
    /// run is over and it returns `Exhausted`.
    pub fn next_step(&mut self) -> Step {
        if self.served.is_some() {
            return Step::Exhausted;
        }
        // The run's own handle on the document: the reservation bookkeeping below needs
        // `&mut self` while the flag is in use.
        let document = Arc::clone(&self.evaluation.document);
        let Some(flag) = self
            .evaluation
            .flag_index
            .and_then(|i| document.flags().get(i))
        else {
            return Step::Exhausted;
        };
        let out_of_budget = self.ai_attempts >= self.max_attempts || self.remaining_ms() == Some(0);
        while let Some(&variant) = self.chain.get(self.position) {
            self.position += 1;
            let def = &flag.variants[variant];
            if !def.ai {
                self.release_reservation();
                self.served = Some(variant);
                let segment = self.segment.clone();
                self.flags.record_static(flag, variant, segment.as_deref());
                self.remember();
                return Step::Serve { variant };
            }
            if out_of_budget {
                continue;
            }
            self.ai_attempts += 1;
            if self.reserved.is_none_or(|(v, _)| v != variant) {
                self.release_reservation();
                self.reserve_for(variant);
            }
            let timeout_ms = match (def.timeout_ms, self.remaining_ms()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.current = Some(Current {
                variant,
                started: Instant::now(),
            });
            return Step::Call {
                variant,
                timeout_ms,
            };
        }
        self.release_reservation();
        Step::Exhausted
    }

    /// Reserves `variant`'s estimated maximum cost against the run's cost budgets (a fallback
    /// attempt: no admission check, its predecessor's reservation was just given back).
    fn reserve_for(&mut self, variant: usize) {
        if self.cost_scopes.is_empty() && self.shadow_cap().is_none() {
            return;
        }
        let Some(def) = self.evaluation.flag().and_then(|f| f.variants.get(variant)) else {
            return;
        };
        let amount = def.reserved_cost();
        let now = self.flags.now_millis();
        self.flags.runtime().with_budgets(now, |book| {
            for (budget, scope) in self.spend_targets() {
                book.reserve(budget, scope, amount, now);
            }
        });
        self.reserved = Some((variant, amount));
    }

    /// Gives back the reservation of the attempt that did not happen or has ended.
    fn release_reservation(&mut self) {
        let Some((_, amount)) = self.reserved.take() else {
            return;
        };
        self.settle(amount, 0.0);
    }

    /// Releases `reserved` and charges `spent` against the run's cost budgets (or the shadow's
    /// cap).
    fn settle(&self, reserved: f64, spent: f64) {
        if self.cost_scopes.is_empty() && self.shadow_cap().is_none() {
            return;
        }
        let now = self.flags.now_millis();
        self.flags.runtime().with_budgets(now, |book| {
            for (budget, scope) in self.spend_targets() {
                book.release(budget, scope, reserved, now);
                book.charge(budget, scope, spent, now);
            }
        });
    }

    /// What this run's costs count against: its cost budgets and scopes, resolved against its
    /// document, and, for a shadow run, the shadow's hourly cap.
    fn spend_targets(&self) -> impl Iterator<Item = (&Budget, &str)> {
        let doc = &self.evaluation.document;
        let flag = self.evaluation.flag();
        self.cost_scopes
            .iter()
            .filter_map(move |(at, scope)| Some((budget_of(doc, flag, *at)?, &**scope)))
            .chain(self.shadow_cap().map(|cap| (cap, "")))
    }

    /// The shadow's hourly cost cap, for a shadow run.
    fn shadow_cap(&self) -> Option<&Budget> {
        if !self.shadow {
            return None;
        }
        self.evaluation.flag()?.shadow.as_ref()?.cap.as_ref()
    }

    /// The attempt in flight succeeded. `usage` should have passed [`Usage::check`]; numbers
    /// it would refuse are left out here rather than recorded.
    pub fn succeed(&mut self, usage: Usage) {
        if let Some(variant) = self.finish_attempt(None, None, usage) {
            self.served = Some(variant);
        }
    }

    /// The attempt in flight failed with `kind` (`message`: a short description for the
    /// attempts list; never sent to metrics).
    pub fn fail(&mut self, kind: ErrorKind, message: Option<&str>, usage: Usage) {
        self.finish_attempt(Some(kind), message, usage);
    }

    /// The caller gave up on the call while an attempt was in flight (a cancelled task, an
    /// aborted `signal`, `KeyboardInterrupt`): the run ends here. Its reservation is given back
    /// at once (not when the run is dropped, which a traceback can delay), and the attempt is
    /// recorded as an `outcome` event with `"outcome": "cancelled"` and no error kind. It
    /// feeds no metric, guardrail or budget: the variant did nothing wrong. Does nothing on a
    /// run with no attempt in flight but give back a reservation.
    pub fn cancel(&mut self) {
        self.release_reservation();
        self.output = None;
        let Some(current) = self.current.take() else {
            return;
        };
        // No further step: the caller is gone.
        self.position = self.chain.len();
        let runtime = &self.flags.shared.runtime;
        if !runtime.wants_events() {
            return;
        }
        let (Some(flag), latency_ms) = (
            self.evaluation.flag(),
            current.started.elapsed().as_secs_f64() * 1000.0,
        ) else {
            return;
        };
        let Some(def) = flag.variants.get(current.variant) else {
            return;
        };
        let body = EventBody::Outcome(Outcome {
            time: format_timestamp(self.flags.now_millis()),
            run_id: &self.run_id,
            flag: &flag.key,
            variant: &def.id,
            revision: self.evaluation.revision(),
            rule_id: self.evaluation.rule_id(),
            model: def.model.as_deref(),
            attempt: self.attempts.len() + 1,
            fallback: !self.shadow && Some(current.variant) != self.evaluation.variant_index,
            shadow: self.shadow,
            outcome: "cancelled",
            error_kind: None,
            latency_ms,
            input_tokens: None,
            output_tokens: None,
            cost: None,
            unit: runtime.unit_label(self.unit.as_deref()),
            segment: self.segment.as_deref(),
            output: None,
        });
        runtime.emit(&[body.to_event()]);
    }

    fn remember(&self) {
        if let (Some(flag), Some(variant)) = (self.flag(), self.served) {
            self.flags.remember_run(
                self.run_key,
                flag,
                variant,
                self.segment.as_deref(),
                self.evaluation.revision_arc(),
            );
        }
    }

    fn finish_attempt(
        &mut self,
        error: Option<ErrorKind>,
        message: Option<&str>,
        usage: Usage,
    ) -> Option<usize> {
        let current = self.current.take()?;
        let usage = usage.sanitized();
        let reserved = match self.reserved.take() {
            Some((variant, amount)) if variant == current.variant => amount,
            Some((_, amount)) => {
                self.settle(amount, 0.0);
                0.0
            }
            None => 0.0,
        };
        let output = self.output.take();
        let latency_ms = usage
            .latency_ms
            .unwrap_or_else(|| current.started.elapsed().as_secs_f64() * 1000.0);
        let flag = self.evaluation.flag()?;
        let def = flag.variants.get(current.variant)?;
        let cost = usage
            .cost
            .or_else(|| def.cost_of(usage.input_tokens, usage.output_tokens));
        // A success that reported no cost is charged its estimate (the budget errs on the safe
        // side); a failure is charged what it reported, if anything.
        let spent = match (cost, error) {
            (Some(cost), _) => cost,
            (None, None) => reserved,
            (None, Some(_)) => 0.0,
        };
        self.settle(reserved, spent);
        let attempt = Attempt {
            variant: Arc::clone(&def.id),
            variant_index: current.variant,
            error,
            message: message.map(str::to_string),
            latency_ms,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cost,
        };
        let now = self.flags.now_millis();
        let runtime = &self.flags.runtime();
        let mut events = Vec::new();
        if runtime.wants_events() {
            let body = EventBody::Outcome(Outcome {
                time: format_timestamp(now),
                run_id: &self.run_id,
                flag: &flag.key,
                variant: &def.id,
                revision: self.evaluation.revision(),
                rule_id: self.evaluation.rule_id(),
                model: def.model.as_deref(),
                attempt: self.attempts.len() + 1,
                fallback: !self.shadow && Some(current.variant) != self.evaluation.variant_index,
                shadow: self.shadow,
                outcome: attempt.outcome(),
                error_kind: error.map(ErrorKind::as_str),
                latency_ms,
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cost,
                unit: runtime.unit_label(self.unit.as_deref()),
                segment: self.segment.as_deref(),
                output,
            });
            events.push(body.to_event());
        }
        self.flags.record_attempt(
            &AttemptRecord {
                flag,
                variant: current.variant,
                segment: self.segment.as_deref(),
                sample: AttemptSample {
                    error,
                    latency_ms,
                    input_tokens: usage.input_tokens,
                    output_tokens: usage.output_tokens,
                    cost,
                    shadow: self.shadow,
                },
                now,
                serves_run: (error.is_none() && !self.shadow)
                    .then(|| (self.run_key, self.evaluation.revision_arc())),
            },
            &mut events,
        );
        self.flags.runtime().emit(&events);
        self.attempts.push(attempt);
        Some(current.variant)
    }

    fn emit_exposure(&self) {
        let runtime = &self.flags.runtime();
        if !runtime.wants_events() {
            return;
        }
        let e = &self.evaluation;
        let variant = e.decision().variant();
        let body = EventBody::Exposure(Exposure {
            time: format_timestamp(self.flags.now_millis()),
            run_id: Some(&self.run_id),
            flag: e.flag_key(),
            variant: e.variant_id(),
            revision: e.revision(),
            reason: e.reason.as_str(),
            rule_id: e.rule_id(),
            bucket: e.bucket,
            model: variant.and_then(|v| v.model.as_deref()),
            shadow: self.shadow,
            unit: runtime.unit_label(self.unit.as_deref()),
            segment: self.segment.as_deref(),
            source: EXPOSURE_OF_RUN,
        });
        runtime.emit(&[body.to_event()]);
    }

    /// The run as JSON (see [`RunReport`]).
    pub fn to_json(&self) -> Value {
        let flag = self.flag();
        let id = |v: Option<usize>| {
            v.and_then(|v| flag.and_then(|f| f.variants.get(v)))
                .map(|v| &*v.id)
        };
        let report = RunReport {
            run_id: &self.run_id,
            flag: self.evaluation.flag_key(),
            revision: self.evaluation.revision(),
            assigned: id(self.evaluation.variant_index),
            reason: self.evaluation.reason.as_str(),
            served: id(self.served),
            fallback_used: self.fallback_used(),
            attempts: &self.attempts,
        };
        // Strings, numbers, booleans and attempts under string keys, which serde_json always
        // accepts: the `Null` fallback is never taken.
        serde_json::to_value(report).unwrap_or(Value::Null)
    }
}

/// A run as JSON ([`Run::to_json`]). Fields serialize in this order, nulls included.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunReport<'a> {
    pub(crate) run_id: &'a str,
    pub(crate) flag: &'a str,
    pub(crate) revision: &'a str,
    /// The variant the evaluation assigned.
    pub(crate) assigned: Option<&'a str>,
    pub(crate) reason: &'static str,
    /// The variant that served, once one did.
    pub(crate) served: Option<&'a str>,
    pub(crate) fallback_used: bool,
    pub(crate) attempts: &'a [Attempt],
}
