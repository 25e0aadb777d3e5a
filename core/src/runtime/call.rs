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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::context::{Attr, Context};
use crate::document::Flag;
use crate::error::{Error, Result};
use crate::live::{Evaluation, Flags, Snapshot};
use crate::runtime::classify::ErrorKind;
use crate::runtime::metrics::AttemptSample;
use crate::runtime::{AttemptRecord, SEGMENT_ATTRIBUTE};
use crate::time::format_timestamp;

/// What the binding does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Call the user's function with this variant, cancelling it after `timeout_ms`.
    Call {
        variant: usize,
        timeout_ms: Option<u64>,
    },
    /// Serve this non-AI variant as the result, without calling anything.
    Serve { variant: usize },
    /// The chain is spent: every step failed and none was non-AI.
    Exhausted,
}

/// What the user's function reported about a call (all optional).
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Overrides the measured latency (trackers, where the app timed the call itself).
    pub latency_ms: Option<f64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Overrides the cost computed from tokens and the variant's prices.
    pub cost: Option<f64>,
}

/// One attempt of a run.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub variant: Arc<str>,
    pub variant_index: usize,
    /// `None` for success.
    pub error: Option<ErrorKind>,
    pub message: Option<String>,
    pub latency_ms: f64,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cost: Option<f64>,
}

impl Attempt {
    pub fn outcome(&self) -> &'static str {
        if self.error.is_some() {
            "error"
        } else {
            "success"
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "variant": &*self.variant,
            "outcome": self.outcome(),
            "error_kind": self.error.map(ErrorKind::as_str),
            "error": self.message,
            "latency_ms": self.latency_ms,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": self.cost,
        })
    }
}

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
    started: Instant,
    deadline: Option<Instant>,
    current: Option<Current>,
    attempts: Vec<Attempt>,
    served: Option<usize>,
    shadow: bool,
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

static RUN_SEED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static RUN_SEEDED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Draws a new random seed for run ids. Called once per process on first use, and by a
/// binding's after-fork hook: a forked child must not repeat its parent's ids.
pub fn reseed_run_ids() {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut a = state.build_hasher();
    a.write_u32(std::process::id());
    a.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let first = a.finish();
    let mut b = state.build_hasher();
    b.write_u64(first);
    RUN_SEED[0].store(first, Ordering::Relaxed);
    RUN_SEED[1].store(b.finish(), Ordering::Relaxed);
    RUN_SEEDED.store(true, Ordering::Release);
}

/// A process-unique, hard-to-guess run id: a random per-process seed (see [`reseed_run_ids`])
/// mixed with a counter. Shown as 32 hex digits.
pub fn new_run_key() -> u128 {
    if !RUN_SEEDED.load(Ordering::Acquire) {
        reseed_run_ids();
    }
    let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
    let hi = splitmix(RUN_SEED[0].load(Ordering::Relaxed) ^ n);
    let lo = splitmix(
        RUN_SEED[1]
            .load(Ordering::Relaxed)
            .wrapping_add(n.rotate_left(17)),
    );
    (u128::from(hi) << 64) | u128::from(lo)
}

/// The text form of a run id.
pub fn format_run_id(key: u128) -> Arc<str> {
    Arc::from(format!("{key:032x}"))
}

/// The run id of its text form (`None` for text that no run id has).
pub fn parse_run_id(text: &str) -> Option<u128> {
    if text.len() != 32 {
        return None;
    }
    u128::from_str_radix(text, 16).ok()
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
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
        let evaluation = snapshot.evaluate_owned(flag, ctx);
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
        let local = snapshot.local_kills();
        let trips = crate::evaluate::Overlay::trips(&local, &flag_def.key);
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
            started,
            deadline: flag_def
                .max_total_ms
                .map(|ms| started + Duration::from_millis(ms)),
            current: None,
            attempts: Vec::new(),
            served: None,
            shadow: false,
            evaluation,
        };
        run.emit_exposure();
        Ok(run)
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
            started,
            deadline: None,
            current: Some(Current {
                variant: assigned,
                started,
            }),
            attempts: Vec::new(),
            served: None,
            shadow: false,
            evaluation,
        };
        run.emit_exposure();
        Ok(run)
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

    /// Marks this run's attempts as shadow attempts (recorded, never guarding).
    pub fn set_shadow(&mut self, shadow: bool) {
        self.shadow = shadow;
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
        let Some(flag) = self.evaluation.flag() else {
            return Step::Exhausted;
        };
        let out_of_budget = self.ai_attempts >= self.max_attempts || self.remaining_ms() == Some(0);
        while let Some(&variant) = self.chain.get(self.position) {
            self.position += 1;
            let def = &flag.variants[variant];
            if !def.ai {
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
        Step::Exhausted
    }

    /// The attempt in flight succeeded.
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
        let latency_ms = usage
            .latency_ms
            .unwrap_or_else(|| current.started.elapsed().as_secs_f64() * 1000.0);
        let flag = self.evaluation.flag()?;
        let def = flag.variants.get(current.variant)?;
        let cost = usage
            .cost
            .or_else(|| def.cost_of(usage.input_tokens, usage.output_tokens));
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
        let runtime = &self.flags.shared.runtime;
        let mut events = Vec::new();
        if runtime.wants_events() {
            events.push(json!({
                "type": "outcome",
                "time": format_timestamp(now),
                "run_id": &*self.run_id,
                "flag": &*flag.key,
                "variant": &*def.id,
                "revision": self.evaluation.revision(),
                "rule_id": self.evaluation.rule_id(),
                "model": def.model.as_deref(),
                "attempt": self.attempts.len() + 1,
                "fallback": Some(current.variant) != self.evaluation.variant_index,
                "shadow": self.shadow,
                "outcome": attempt.outcome(),
                "error_kind": error.map(ErrorKind::as_str),
                "latency_ms": latency_ms,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cost": cost,
                "unit": runtime.unit_label(self.unit.as_deref()),
                "segment": self.segment.as_deref(),
            }));
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
                serves_run: error
                    .is_none()
                    .then(|| (self.run_key, self.evaluation.revision_arc())),
            },
            &mut events,
        );
        self.flags.shared.runtime.emit(&events);
        self.attempts.push(attempt);
        Some(current.variant)
    }

    fn emit_exposure(&self) {
        let runtime = &self.flags.shared.runtime;
        if !runtime.wants_events() {
            return;
        }
        let e = &self.evaluation;
        let variant = e.decision().variant();
        runtime.emit(&[json!({
            "type": "exposure",
            "time": format_timestamp(self.flags.now_millis()),
            "run_id": &*self.run_id,
            "flag": e.flag_key(),
            "variant": e.variant_id(),
            "revision": e.revision(),
            "reason": e.reason.as_str(),
            "rule_id": e.rule_id(),
            "bucket": e.bucket,
            "model": variant.and_then(|v| v.model.as_deref()),
            "shadow": self.shadow,
            "unit": runtime.unit_label(self.unit.as_deref()),
            "segment": self.segment.as_deref(),
        })]);
    }

    /// Wall time since the run started, in milliseconds.
    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// The run as JSON: run id, flag, assigned and served variants, attempts.
    pub fn to_json(&self) -> Value {
        let flag = self.flag();
        let id = |v: Option<usize>| {
            v.and_then(|v| flag.and_then(|f| f.variants.get(v)))
                .map(|v| v.id.to_string())
        };
        json!({
            "run_id": &*self.run_id,
            "flag": self.evaluation.flag_key(),
            "revision": self.evaluation.revision(),
            "assigned": id(self.evaluation.variant_index),
            "reason": self.evaluation.reason.as_str(),
            "served": id(self.served),
            "fallback_used": self.fallback_used(),
            "attempts": self.attempts.iter().map(Attempt::to_json).collect::<Vec<_>>(),
        })
    }
}
