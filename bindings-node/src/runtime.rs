//! The runtime around the call, for Node: runs (fallback chains and trackers), error
//! classification, feedback, metrics and events. Mirrors `flagrail_core::runtime`.
//!
//! The JS side (`index.js`) runs the user's async function; the core decides everything
//! else. A run in flight lives here, in a per-thread table, named to JS by a small integer
//! (like a `Flags` handle, see `handle.rs`), so that each step of `flags.call(...)` is one
//! cheap call with numbers for arguments, and a call whose first attempt succeeds crosses the
//! boundary twice: `runStart` (evaluate, plan, first step) and `runSucceed` (record, end).
//! Steps and evaluations come back packed into one number each ([`encode_step`],
//! `handle::encode_evaluation`); a call with more than one number to return writes them into
//! a small `Float64Array` the JS side passes in (`out`), which costs less than a second call.
//! The common case (a flag of the JS tables, a first attempt that succeeds with a plain value)
//! crosses through raw Node-API callbacks instead (`raw::run_start_raw`,
//! `raw::run_succeed_raw`, built on [`start_positional`] and [`succeed_plain`] here): the
//! napi-rs glue, the typed-array checks and the array of values of these two calls were about
//! a quarter of a call's overhead (bench/node_call.mjs).
//!
//! Events: the core calls its sinks synchronously during the call that produced them, on
//! this thread. A JS listener cannot be called from inside a sink (the JS side may be in the
//! middle of a native call), so the sink installed by `listen` queues events as JSON text and
//! the JS side drains the queue (`takeEvents`) after each runtime call and dispatches them.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use flagrail_core::live::PinSource;
use flagrail_core::live::{Run, Step, Usage};
use flagrail_core::runtime::events::EXPOSURE_OF_READ;
use flagrail_core::runtime::{
    attempt_message, check_tokens, check_usage, classify, parse_error_kind, timeout_message,
    CallbackSink, ErrorFacts, ErrorKind, Event,
};
use flagrail_core::{Attr, Document, EmptyContext, Evaluation, KillSource, Positional, Reason};
use napi::bindgen_prelude::{Buffer, Either, Float64ArraySlice, Unknown};
use napi_derive::napi;
use serde_json::Value;

use crate::error::{core_error, invalid_argument, load_failure, LoadFailure};
use crate::handle::{encode_evaluation, unpacked, FAILED, STALE};
use crate::raw::{read_values, write_out};
use crate::{attrs, JsError};

/// Packs a step into one JS number (the core's step code, below 2^53: exact).
fn encode_step(step: Step) -> f64 {
    step.code() as f64
}

/// Runs in flight on this thread, by slot (freed by `runEnd`).
#[derive(Default)]
struct Runs {
    runs: Vec<Option<Run>>,
    free: Vec<u32>,
}

thread_local! {
    static RUNS: RefCell<Runs> = RefCell::new(Runs::default());
}

fn insert(run: Run) -> u32 {
    RUNS.with(|runs| {
        let mut runs = runs.borrow_mut();
        match runs.free.pop() {
            Some(slot) => {
                if let Some(entry) = runs.runs.get_mut(slot as usize) {
                    *entry = Some(run);
                }
                slot
            }
            None => {
                runs.runs.push(Some(run));
                (runs.runs.len() - 1) as u32
            }
        }
    })
}

/// Runs `f` on the run in `slot`. The table stays borrowed meanwhile: `f` must not call back
/// into JS (the core's sinks here only queue).
fn with_run<T>(slot: u32, f: impl FnOnce(&mut Run) -> T) -> Result<T, JsError> {
    RUNS.with(|runs| {
        let mut runs = runs.borrow_mut();
        match runs.runs.get_mut(slot as usize).and_then(Option::as_mut) {
            Some(run) => Ok(f(run)),
            None => Err(invalid_argument(format!("no run in slot {slot}"))),
        }
    })
}

fn take(slot: u32) -> Option<Run> {
    RUNS.with(|runs| {
        let mut runs = runs.borrow_mut();
        let taken = runs.runs.get_mut(slot as usize).and_then(Option::take);
        if taken.is_some() {
            runs.free.push(slot);
        }
        taken
    })
}

/// A token count from JS: a whole number of 0 or more (anything else is ignored).
fn tokens(n: Option<f64>) -> Option<u64> {
    n.filter(|n| n.is_finite() && *n >= 0.0 && n.fract() == 0.0)
        .map(|n| n as u64)
}

fn usage(
    input_tokens: Option<f64>,
    output_tokens: Option<f64>,
    cost: Option<f64>,
    latency_ms: Option<f64>,
) -> Usage {
    Usage {
        latency_ms: latency_ms.filter(|ms| ms.is_finite() && *ms >= 0.0),
        input_tokens: tokens(input_tokens),
        output_tokens: tokens(output_tokens),
        cost: cost.filter(|c| c.is_finite()),
    }
}

/// The names of the error kinds, in code order (`ErrorKind::ALL`).
#[napi(catch_unwind)]
pub fn error_kinds() -> Vec<&'static str> {
    flagrail_core::codes::error_kind_names()
}

/// The OpenFeature resolution reasons in reason-code order, for a flag with rules or without
/// (`flagrail/openfeature` and the OpenTelemetry spans read them; the core's table).
#[napi(catch_unwind)]
pub fn open_feature_reasons(flag_has_rules: bool) -> Vec<&'static str> {
    flagrail_core::codes::open_feature_reason_names(flag_has_rules)
}

/// The kind (its code) of a failed attempt, from what the JS error says about itself.
#[napi(catch_unwind)]
pub fn classify_error(
    declared: Option<String>,
    name: String,
    status: Option<f64>,
    code: Option<String>,
    message: String,
) -> u32 {
    let status = status
        .filter(|s| s.fract() == 0.0 && (0.0..=f64::from(u16::MAX)).contains(s))
        .map(|s| s as u16);
    let kind = classify(&ErrorFacts {
        declared_kind: declared.as_deref(),
        name: &name,
        status,
        code: code.as_deref(),
        message: &message,
    });
    kind_code(kind)
}

/// The `attempts[].error` text of a thrown value: what it says its name and message are
/// (the core's `attempt_message`, the same text as Python's).
#[napi(catch_unwind)]
pub fn attempt_text(name: String, message: String) -> String {
    attempt_message(&name, &message)
}

/// The `attempts[].error` text of an attempt stopped at its timeout.
#[napi(catch_unwind)]
pub fn timeout_text(timeout_ms: f64) -> String {
    timeout_message(timeout_ms.max(0.0) as u64)
}

/// `null`, or why reported usage is refused: a latency or cost that is NaN, infinite or
/// negative, or a token count that is not a whole number from 0 to 2^53 − 1
/// (`INVALID_ARGUMENT`, decided by the core in the same order as Python's checks).
#[napi(catch_unwind)]
pub fn usage_problem(
    latency_ms: Option<f64>,
    cost: Option<f64>,
    input_tokens: Option<f64>,
    output_tokens: Option<f64>,
) -> Option<LoadFailure> {
    check_usage(latency_ms, cost)
        .and_then(|()| check_tokens(input_tokens, output_tokens).map(|_| ()))
        .err()
        .map(|error| load_failure(&error))
}

/// The code of the error kind `name` (a tracker's `error('…')`), or `INVALID_ARGUMENT` with
/// the core's message, the same as Python's.
#[napi(catch_unwind)]
pub fn error_kind_code(name: String) -> Either<u32, LoadFailure> {
    match parse_error_kind(&name) {
        Ok(kind) => Either::A(kind_code(kind)),
        Err(error) => Either::B(load_failure(&error)),
    }
}

fn kind_code(kind: ErrorKind) -> u32 {
    u32::from(kind.code())
}

fn kind_of(code: u32) -> Result<ErrorKind, JsError> {
    u8::try_from(code)
        .ok()
        .and_then(ErrorKind::from_code)
        .ok_or_else(|| invalid_argument(format!("no error kind with code {code}")))
}

/// Starts a `call` of flag `index` of the acknowledged document (or, with `index` -1, of
/// `key`, which the JS tables lack) with the values of the flag's run attributes: the run's
/// slot, `STALE` when the JS tables are out of date, or `FLAG_NOT_FOUND`. A started run
/// writes `[packed evaluation, packed first step]` to `out`. `forced`: the variant a test
/// override forces for this flag, if any.
#[napi(catch_unwind)]
pub fn run_start(
    slot: u32,
    index: i32,
    key: Option<String>,
    values: Unknown<'_>,
    mut out: Float64ArraySlice<'_>,
    forced: Option<String>,
) -> Result<Either<f64, LoadFailure>, JsError> {
    let handle = crate::handle(slot)?;
    let ack = handle.acknowledged();
    let Ok(index) = usize::try_from(index) else {
        // Not in our tables: unknown, unless a reload added it.
        let key = key.unwrap_or_default();
        if handle.inner.document().flag(&key).is_some() {
            return Ok(Either::A(STALE));
        }
        return Ok(Either::B(load_failure(
            &flagrail_core::Error::FlagNotFound { flag: key },
        )));
    };
    // The run evaluates this snapshot, whose document is the one the JS tables describe.
    let snapshot = handle.inner.snapshot();
    if !Arc::ptr_eq(snapshot.document_arc(), &ack) {
        return Ok(Either::A(STALE));
    }
    let Some(flag) = ack.flags().get(index) else {
        return Ok(Either::A(STALE));
    };
    let owned = read_values(values);
    let values = attrs(&owned);
    let ctx = Positional {
        names: &flag.run_attributes,
        values: &values,
    };
    // A test override (`flags.override`) in the caller's async context: the chain starts at
    // its variant.
    let started = match forced.as_deref() {
        Some(variant) => handle.inner.start_run_forced(
            &snapshot,
            &flag.key,
            &ctx,
            PinSource::Memory,
            Some(variant),
        ),
        None => handle.inner.start_run_in(&snapshot, &flag.key, &ctx),
    };
    match started {
        Ok(mut run) => {
            let step = encode_step(run.next_step());
            write_out(&mut out, &[encode_evaluation(run.evaluation()), step]);
            Ok(Either::A(f64::from(insert(run))))
        }
        Err(error) => Ok(Either::B(load_failure(&error))),
    }
}

/// `runStart` for a sticky flag whose pins live in the JS side's own store: evaluates with
/// `pin` (the stored variant id, or none) and writes nothing to the in-memory pins. A started
/// run writes `[packed evaluation, packed first step, pin effect]` to `out` (pin effects as in
/// `takeWide`: the JS side carries them out on its store).
#[napi(catch_unwind)]
pub fn run_start_pinned(
    slot: u32,
    index: u32,
    values: Unknown<'_>,
    pin: Option<String>,
    mut out: Float64ArraySlice<'_>,
) -> Result<Either<f64, LoadFailure>, JsError> {
    let handle = crate::handle(slot)?;
    let ack = handle.acknowledged();
    let snapshot = handle.inner.snapshot();
    if !Arc::ptr_eq(snapshot.document_arc(), &ack) {
        return Ok(Either::A(STALE));
    }
    let Some(flag) = ack.flags().get(index as usize) else {
        return Ok(Either::A(STALE));
    };
    let owned = read_values(values);
    let values = attrs(&owned);
    let ctx = Positional {
        names: &flag.run_attributes,
        values: &values,
    };
    let pins = PinSource::Given(pin.as_deref());
    match handle
        .inner
        .start_run_with(&snapshot, &flag.key, &ctx, pins)
    {
        Ok(mut run) => {
            let effect = f64::from(run.evaluation().pin.code());
            let step = encode_step(run.next_step());
            write_out(
                &mut out,
                &[encode_evaluation(run.evaluation()), step, effect],
            );
            Ok(Either::A(f64::from(insert(run))))
        }
        Err(error) => Ok(Either::B(load_failure(&error))),
    }
}

/// Starts the shadow copy of `run` when its evaluation drew a shadow and the shadow's hourly
/// cost cap has room (checked and reserved by the core): the shadow run's slot, with its first
/// step (packed like `runStart`'s) written to `out[0]`; -1 when no shadow runs.
#[napi(catch_unwind)]
pub fn run_shadow(run: u32, mut out: Float64ArraySlice<'_>) -> Result<f64, JsError> {
    let Some(mut shadow) = with_run(run, |r| r.shadow_run())? else {
        return Ok(-1.0);
    };
    let step = encode_step(shadow.next_step());
    write_out(&mut out, &[step]);
    Ok(f64::from(insert(shadow)))
}

/// The output of the attempt in flight as JSON text, for the outcome event of a run with a
/// shadow or of a shadow run (see `Run::wants_output`); text that does not parse is kept as a
/// string.
#[napi(catch_unwind)]
pub fn run_set_output(run: u32, output: String) -> Result<(), JsError> {
    let value = serde_json::from_str(&output).unwrap_or(Value::String(output));
    with_run(run, |r| r.set_output(value))
}

/// `run_start` for the raw entry point (`raw::run_start_raw`): flag `index` of the
/// acknowledged document with the values of its run attributes already read. A started run's
/// slot and `[packed evaluation, packed first step]`, or the number to return instead:
/// `STALE` (the JS tables are out of date) or `FAILED` (no run was started; the JS side takes
/// the careful path, which reports why).
pub(crate) fn start_positional(
    slot: u32,
    index: u32,
    values: &[Attr<'_>],
) -> Result<(f64, [f64; 2]), f64> {
    let handle = crate::handle::get(slot).ok_or(FAILED)?;
    let ack = handle.acknowledged();
    let snapshot = handle.inner.snapshot();
    if !Arc::ptr_eq(snapshot.document_arc(), &ack) {
        return Err(STALE);
    }
    let flag = ack.flags().get(index as usize).ok_or(STALE)?;
    let ctx = Positional {
        names: &flag.run_attributes,
        values,
    };
    let mut run = handle
        .inner
        .start_run_in(&snapshot, &flag.key, &ctx)
        .map_err(|_| FAILED)?;
    let step = encode_step(run.next_step());
    let evaluation = encode_evaluation(run.evaluation());
    Ok((f64::from(insert(run)), [evaluation, step]))
}

/// `run_succeed` without usage, for the raw entry point (`raw::run_succeed_raw`): ends the
/// run and returns its id and `[latency ms, cost or NaN]`; `None` when there is no such run.
/// The run is finished where it lies in the table instead of being moved out first (a `Run`
/// is a few hundred bytes); dropping it calls no JS, so the table may stay borrowed.
pub(crate) fn succeed_plain(run: u32) -> Option<(Arc<str>, [f64; 2])> {
    RUNS.with(|runs| {
        let mut runs = runs.borrow_mut();
        let entry = runs.runs.get_mut(run as usize)?;
        let r = entry.as_mut()?;
        let before = r.attempts().len();
        r.succeed(Usage::default());
        let done = (Arc::clone(r.run_id()), recorded(r, before));
        *entry = None;
        runs.free.push(run);
        Some(done)
    })
}

/// The run's evaluation unpacked, like `takeWide`.
#[napi(catch_unwind)]
pub fn run_evaluation_wide(run: u32) -> Result<Vec<f64>, JsError> {
    with_run(run, |r| unpacked(&r.evaluation().decision()))
}

/// The next step of the run, packed: `kind + 4 * variant + 2^24 * (timeout_ms + 1)`, kind 0
/// exhausted, 1 call, 2 serve.
#[napi(catch_unwind)]
pub fn run_next(run: u32) -> Result<f64, JsError> {
    with_run(run, |r| encode_step(r.next_step()))
}

/// The attempt in flight succeeded, which ends the run: writes `[latency ms, cost or NaN]` of
/// the recorded attempt to `out` (`[-1, NaN]` when no attempt was in flight) and returns the
/// run id.
#[napi(catch_unwind)]
pub fn run_succeed(
    run: u32,
    mut out: Float64ArraySlice<'_>,
    input_tokens: Option<f64>,
    output_tokens: Option<f64>,
    cost: Option<f64>,
    latency_ms: Option<f64>,
) -> Result<String, JsError> {
    let mut taken = take(run).ok_or_else(|| invalid_argument(format!("no run in slot {run}")))?;
    let before = taken.attempts().len();
    taken.succeed(usage(input_tokens, output_tokens, cost, latency_ms));
    write_out(&mut out, &recorded(&taken, before));
    Ok(taken.run_id().to_string())
}

/// The attempt in flight failed with kind `kind` (a code of `errorKinds()`): writes
/// `[latency ms, cost or NaN]` of the recorded attempt to `out` and returns the next step,
/// packed like `runStart`'s.
#[napi(catch_unwind)]
#[allow(clippy::too_many_arguments)]
pub fn run_fail(
    run: u32,
    kind: u32,
    message: Option<String>,
    mut out: Float64ArraySlice<'_>,
    input_tokens: Option<f64>,
    output_tokens: Option<f64>,
    cost: Option<f64>,
    latency_ms: Option<f64>,
) -> Result<f64, JsError> {
    let kind = kind_of(kind)?;
    with_run(run, |r| {
        let before = r.attempts().len();
        r.fail(
            kind,
            message.as_deref(),
            usage(input_tokens, output_tokens, cost, latency_ms),
        );
        write_out(&mut out, &recorded(r, before));
        encode_step(r.next_step())
    })
}

/// `[latency ms, cost or NaN]` of the attempt just recorded, or `[-1, NaN]` when none was (no
/// attempt in flight).
fn recorded(run: &Run, before: usize) -> [f64; 2] {
    match run.attempts().get(before) {
        Some(attempt) => [attempt.latency_ms, attempt.cost.unwrap_or(f64::NAN)],
        None => [-1.0, f64::NAN],
    }
}

/// The `ALL_ATTEMPTS_FAILED` message of an exhausted run.
#[napi(catch_unwind)]
pub fn run_exhausted_message(run: u32) -> Result<String, JsError> {
    with_run(run, |r| {
        flagrail_core::Error::AllAttemptsFailed {
            flag: r.evaluation().flag_key().to_string(),
            attempts: r.attempts().len(),
        }
        .to_string()
    })
}

/// The caller gave up while an attempt was in flight (its `AbortSignal` aborted): the core
/// gives back the reservation and records the attempt as cancelled; the run ends.
#[napi(catch_unwind)]
pub fn run_cancel(run: u32) {
    if let Some(mut taken) = take(run) {
        taken.cancel();
    }
}

/// Ends a run (or drops a tracker that was never reported): its run id.
#[napi(catch_unwind)]
pub fn run_end(run: u32) -> Option<String> {
    take(run).map(|r| r.run_id().to_string())
}

/// The document a tracker's variant came from: the acknowledged one or the live one, whichever
/// has the variant's revision (the acknowledged one when neither has).
fn document_of(handle: &crate::handle::Handle, revision: &str) -> Arc<Document> {
    let ack = handle.acknowledged();
    if ack.revision() == revision {
        return ack;
    }
    let live = handle.inner.document();
    if live.revision() == revision {
        live
    } else {
        ack
    }
}

/// Starts a tracker for a variant the app already has (its fields as `variant()` gave them),
/// with the values of the run attributes of flag `index` of the acknowledged document (-1:
/// none): the run's slot, or why no tracker can be made.
#[napi(catch_unwind)]
#[allow(clippy::too_many_arguments)]
pub fn tracker_start(
    slot: u32,
    index: i32,
    key: String,
    variant: Option<String>,
    reason: u32,
    rule_id: Option<String>,
    bucket: Option<f64>,
    kill_source: i32,
    revision: String,
    values: Unknown<'_>,
) -> Result<Either<f64, LoadFailure>, JsError> {
    let handle = crate::handle(slot)?;
    let document = document_of(&handle, &revision);
    let not_found = || {
        Either::B(load_failure(&flagrail_core::Error::FlagNotFound {
            flag: key.clone(),
        }))
    };
    let Some(flag_index) = document.flag_position(&key) else {
        return Ok(not_found());
    };
    let flag = &document.flags()[flag_index];
    let Some(variant_index) = variant.as_deref().and_then(|v| flag.variant_position(v)) else {
        return Ok(match variant {
            None => not_found(),
            Some(v) => Either::B(load_failure(&flagrail_core::Error::InvalidArgument {
                message: format!(
                    "\"{v}\" is not a variant of flag \"{key}\" in revision {}",
                    document.revision()
                ),
            })),
        });
    };
    let reason = u8::try_from(reason)
        .ok()
        .and_then(Reason::from_code)
        .ok_or_else(|| invalid_argument(format!("no reason with code {reason}")))?;
    let rule_index = rule_id
        .as_deref()
        .and_then(|id| flag.rules.iter().position(|r| &*r.id == id));
    // 0 (or anything that is not a code) is none.
    let kill_source = u8::try_from(kill_source)
        .ok()
        .and_then(KillSource::from_code);
    let bucket = bucket
        .filter(|b| b.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(b))
        .map(|b| b as u32);
    let evaluation = Evaluation::of_found(
        Arc::clone(&document),
        flag_index,
        Some(variant_index),
        rule_index,
        reason,
        bucket,
        kill_source,
    );
    let ack = handle.acknowledged();
    let owned = read_values(values);
    let values: Vec<Attr<'_>> = attrs(&owned);
    let result = match usize::try_from(index).ok().and_then(|i| ack.flags().get(i)) {
        Some(names) => handle.inner.tracker(
            evaluation,
            &Positional {
                names: &names.run_attributes,
                values: &values,
            },
        ),
        None => handle.inner.tracker(evaluation, &EmptyContext),
    };
    Ok(match result {
        Ok(run) => Either::A(f64::from(insert(run))),
        Err(error) => Either::B(load_failure(&error)),
    })
}

/// Attaches user feedback and/or a quality score to a finished run; `false` for an unknown run
/// or values already counted; `INVALID_ARGUMENT` (decided by the core) for values out of range.
#[napi(catch_unwind)]
pub fn feedback(
    slot: u32,
    run_id: String,
    score: Option<f64>,
    quality: Option<f64>,
) -> Result<bool, JsError> {
    crate::handle(slot)?
        .inner
        .feedback(&run_id, score, quality)
        .map_err(|e| core_error(&e))
}

/// `metrics()` as JSON text.
#[napi(catch_unwind)]
pub fn metrics(slot: u32) -> Result<String, JsError> {
    Ok(crate::handle(slot)?.inner.metrics().to_string())
}

/// `metricsText()`: the metrics in the Prometheus text format.
#[napi(catch_unwind)]
pub fn metrics_text(slot: u32) -> Result<String, JsError> {
    Ok(crate::handle(slot)?.inner.metrics_text())
}

/// Queues every future event of this handle for `takeEvents` (idempotent).
#[napi(catch_unwind)]
pub fn listen(slot: u32) -> Result<(), JsError> {
    let handle = crate::handle(slot)?;
    if handle.events.get().is_none() {
        let queue: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink_queue = Arc::clone(&queue);
        // The exposure of a plain read is queued inside `variant()`, after which nothing
        // drains: the first one queued asks the JS thread to drain soon.
        let notify = crate::reload_log::events_notifier(slot);
        handle
            .inner
            .add_event_sink(Arc::new(CallbackSink(move |event: &Event| {
                let text = event.to_string();
                let mut q = match sink_queue.lock() {
                    Ok(q) => q,
                    Err(poisoned) => poisoned.into_inner(),
                };
                let was_empty = q.is_empty();
                q.push(text);
                drop(q);
                if was_empty && event["source"] == EXPOSURE_OF_READ {
                    if let Some(notify) = &notify {
                        notify();
                    }
                }
            })));
        let _ = handle.events.set(queue);
    }
    Ok(())
}

/// The queued events as a JSON array text, or `null` when there are none.
#[napi(catch_unwind)]
pub fn take_events(slot: u32) -> Result<Option<String>, JsError> {
    let handle = crate::handle(slot)?;
    let Some(queue) = handle.events.get() else {
        return Ok(None);
    };
    let events = match queue.lock() {
        Ok(mut q) => std::mem::take(&mut *q),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    if events.is_empty() {
        return Ok(None);
    }
    let mut text = String::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
    text.push('[');
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(event);
    }
    text.push(']');
    Ok(Some(text))
}

/// Appends every future event to a JSON-lines file.
#[napi(catch_unwind)]
pub fn write_events(slot: u32, path: String) -> Result<(), JsError> {
    crate::handle(slot)?
        .inner
        .write_events_to(&path)
        .map_err(|e| core_error(&e))
}

/// Hashes unit ids in events with `key` (HMAC-SHA-256); `null` sends them as they are.
#[napi(catch_unwind)]
pub fn hash_units(slot: u32, key: Option<Buffer>) -> Result<(), JsError> {
    crate::handle(slot)?.inner.set_unit_hash_key(key.as_deref());
    Ok(())
}

/// The run id of a run in flight (trackers show it before they are reported).
#[napi(catch_unwind)]
pub fn run_id(run: u32) -> Result<String, JsError> {
    with_run(run, |r| r.run_id().to_string())
}
