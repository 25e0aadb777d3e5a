//! `flagrail drill`: a fire drill for a flag's guardrails, without a model or a server.
//!
//! Synthetic users call the flag through the real runtime (the same fallback chain, windows and
//! guardrail rule as the bindings) while one variant fails at a chosen rate; the report says
//! which guardrail tripped after how many requests, what evaluation serves afterwards, and the
//! per-variant counts. On-call runs it to see a guardrail fire before an incident does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use flagrail_core::live::ManualClock;
use flagrail_core::live::{Step, Usage};
use flagrail_core::runtime::{CallbackSink, ErrorKind, Event};
use flagrail_core::time::{format_timestamp, parse_duration};
use flagrail_core::EvalOptions;
use flagrail_core::Flags;
use serde_json::{json, Value};

use crate::args::Args;
use crate::{load, parse_at, parse_context, Failure, Outcome};

/// A seeded generator (splitmix64): the same drill gives the same report.
struct Rng(u64);

impl Rng {
    fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The synopsis in `flagrail help`.
pub const USAGE: &str = "\
drill FILE --flag F --variant V [--error-rate P] [--latency-ms L] [--requests N]
                 [--every DURATION] [--seed S] [--context JSON] [--at TIME] [--expect-trip] [--json]";

/// The options, with their defaults and bounds (`flagrail drill --help`).
pub const DETAILS: &str = "\
Synthetic users call flag F through the real runtime while variant V misbehaves; the report says
which guardrail tripped after how many requests and what evaluation serves afterwards.

  --flag F          the flag to drill (required)
  --variant V       the variant that misbehaves (required)
  --error-rate P    share of V's calls that fail, 0 to 1 (default 1, or 0 when --latency-ms is
                    given: a latency drill alone makes V slow, not failing)
  --latency-ms L    latency reported for each call of V, 0 to 3600000 ms (default 50); the
                    other variants' calls take 50 ms
  --requests N      calls to make, 1 to 1000000 (default 500)
  --every DURATION  simulated time between calls, at most 24h (default 100ms)
  --seed S          seed of the failure draws, a whole number (default 1): same seed, same report
  --context JSON    attributes of every synthetic user (an object; the unit is user-0, user-1 …)
  --at TIME         simulated time of the first call (default now)
  --expect-trip     exit 1 when no guardrail trips (for CI)
  --json            print the report as JSON";

/// Latency reported for the calls of the variants that are not drilled.
const NORMAL_LATENCY_MS: f64 = 50.0;

fn parse_number(
    args: &mut Args,
    name: &str,
    ok: impl Fn(f64) -> bool,
) -> Result<Option<f64>, Failure> {
    match args.option(name) {
        None => Ok(None),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && ok(*x))
            .map(Some)
            .ok_or_else(|| Failure::usage(format!("{name}: \"{text}\" is out of range"))),
    }
}

fn parse_whole(
    args: &mut Args,
    name: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, Failure> {
    match args.option(name) {
        None => Ok(None),
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or_else(|| {
                Failure::usage(format!(
                    "{name}: \"{text}\" is not a whole number from {} to {}",
                    range.start(),
                    range.end()
                ))
            }),
    }
}

pub fn run(args: &mut Args) -> Outcome {
    let flag = args.required("--flag")?;
    let bad_variant = args.required("--variant")?;
    let error_rate = parse_number(args, "--error-rate", |x| (0.0..=1.0).contains(&x))?;
    let latency_ms = parse_number(args, "--latency-ms", |x| (0.0..=3_600_000.0).contains(&x))?;
    // A latency drill alone is about slowness: the variant does not also fail every call.
    let error_rate = error_rate.unwrap_or(if latency_ms.is_some() { 0.0 } else { 1.0 });
    let latency_ms = latency_ms.unwrap_or(NORMAL_LATENCY_MS);
    let requests = parse_whole(args, "--requests", 1..=1_000_000)?.unwrap_or(500);
    let every = match args.option("--every") {
        None => 100,
        Some(text) => parse_duration(&text)
            .filter(|ms| (0..=86_400_000).contains(ms))
            .ok_or_else(|| {
                Failure::usage(format!(
                    "--every: \"{text}\" is not a duration of at most 24h (such as 100ms, 2s)"
                ))
            })?,
    };
    let seed = parse_whole(args, "--seed", 0..=u64::MAX)?.unwrap_or(1);
    let base = parse_context(args.option("--context"))?;
    let at = parse_at(args.option("--at"))?;
    let expect_trip = args.flag("--expect-trip");
    let as_json = args.flag("--json");
    let file = args.positional("FILE")?;
    args.finish()?;

    let doc = load(&file)?;
    let Some(flag_def) = doc.flag(&flag) else {
        return Err(Failure::failed(format!("no flag \"{flag}\" in {file}")));
    };
    if flag_def.variant(&bad_variant).is_none() {
        return Err(Failure::failed(format!(
            "flag \"{flag}\" has no variant \"{bad_variant}\""
        )));
    }
    if flag_def.guardrails.is_empty() {
        return Err(Failure::failed(format!(
            "flag \"{flag}\" has no guardrails to drill"
        )));
    }
    let unit_attr = flag_def.bucket_by.to_string();
    let clock = Arc::new(ManualClock::new(at));
    let flags = Flags::from_document_with_clock(doc, clock.clone());
    let events: Arc<Mutex<Vec<(u64, Event)>>> = Arc::default();
    let current = Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let events = events.clone();
        let current = current.clone();
        flags.add_event_sink(Arc::new(CallbackSink(move |e: &Event| {
            let kind = e["type"].as_str().unwrap_or("");
            if kind.starts_with("guardrail_") {
                let n = current.load(std::sync::atomic::Ordering::Relaxed);
                if let Ok(mut list) = events.lock() {
                    list.push((n, e.clone()));
                }
            }
        })));
    }

    let mut rng = Rng(seed);
    let mut served: BTreeMap<String, u64> = BTreeMap::new();
    let mut context = base.clone();
    for i in 0..requests {
        current.store(i + 1, std::sync::atomic::Ordering::Relaxed);
        context[&unit_attr] = Value::String(format!("user-{i}"));
        let Ok(mut run) = flags.start_run(&flag, &context) else {
            break;
        };
        let doc = run.evaluation().document.clone();
        let Some(def) = run.evaluation().flag_index.and_then(|f| doc.flags().get(f)) else {
            break;
        };
        let outcome = loop {
            match run.next_step() {
                Step::Call { variant, .. } => {
                    let id = &def.variants[variant].id;
                    let drilled = **id == *bad_variant;
                    let usage = Usage {
                        latency_ms: Some(if drilled {
                            latency_ms
                        } else {
                            NORMAL_LATENCY_MS
                        }),
                        ..Usage::default()
                    };
                    if drilled && rng.next_unit() < error_rate {
                        run.fail(ErrorKind::Server, Some("drill"), usage);
                    } else {
                        run.succeed(usage);
                        break id.to_string();
                    }
                }
                Step::Serve { variant } => break def.variants[variant].id.to_string(),
                Step::Exhausted => break "(all attempts failed)".to_string(),
            }
        };
        *served.entry(outcome).or_default() += 1;
        clock.advance(every);
    }

    // What evaluation serves now, for the same users.
    let mut now_serving: BTreeMap<String, u64> = BTreeMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..requests.min(10_000) {
        context[&unit_attr] = Value::String(format!("user-{i}"));
        let e = flags.evaluate(&flag, &context, EvalOptions::default());
        *now_serving
            .entry(e.variant_id().unwrap_or("(none)").to_string())
            .or_default() += 1;
        *reasons.entry(e.reason.as_str().to_string()).or_default() += 1;
    }
    let events: Vec<(u64, Event)> = events.lock().map(|e| e.clone()).unwrap_or_default();
    let tripped = events.iter().any(|(_, e)| e["type"] == "guardrail_trip");
    let metrics = flags.metrics();
    let report = json!({
        "flag": flag,
        "variant": bad_variant,
        "error_rate": error_rate,
        "requests": requests,
        "from": format_timestamp(at),
        "to": format_timestamp(flags.now_millis()),
        "guardrail_events": events.iter().map(|(n, e)| json!({ "request": n, "event": e })).collect::<Vec<_>>(),
        "served_by_call": served,
        "evaluation_now": { "variants": now_serving, "reasons": reasons },
        "metrics": metrics[&flag],
    });
    if as_json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        outln!(
            "drill: flag {flag}, variant {bad_variant} failing {:.1} % of its calls at {latency_ms} ms each, {requests} requests every {every} ms from {}",
            error_rate * 100.0,
            format_timestamp(at)
        );
        if events.is_empty() {
            outln!("no guardrail moved");
        }
        for (n, e) in &events {
            if e["samples"].is_null() {
                outln!(
                    "request {n:>6}: {} {} on {} at {} (cooldown over: the probe share gets {} again)",
                    e["type"].as_str().unwrap_or(""),
                    e["guardrail"].as_str().unwrap_or(""),
                    e["variant"].as_str().unwrap_or(""),
                    e["time"].as_str().unwrap_or(""),
                    e["variant"].as_str().unwrap_or(""),
                );
                continue;
            }
            outln!(
                "request {n:>6}: {} {} on {} at {} ({}) → {}",
                e["type"].as_str().unwrap_or(""),
                e["guardrail"].as_str().unwrap_or(""),
                e["variant"].as_str().unwrap_or(""),
                e["time"].as_str().unwrap_or(""),
                reading_text(e),
                e["action"].as_str().unwrap_or(""),
            );
        }
        let list = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        outln!("served by call: {}", list(&served));
        outln!(
            "evaluation now: {} ({})",
            list(&now_serving),
            list(&reasons)
        );
        if let Some(variants) = metrics[&flag].as_object() {
            outln!(
                "{:<16} {:>9} {:>8} {:>10}",
                "variant",
                "requests",
                "errors",
                "error rate"
            );
            for (id, m) in variants {
                outln!(
                    "{:<16} {:>9} {:>8} {:>9.2}%",
                    id,
                    m["requests"].as_u64().unwrap_or(0),
                    m["errors"].as_u64().unwrap_or(0),
                    m["error_rate"].as_f64().unwrap_or(0.0) * 100.0
                );
            }
        }
    }
    if expect_trip && !tripped {
        return Err(Failure::failed("--expect-trip: no guardrail tripped"));
    }
    Ok(())
}

/// A guardrail event's reading in words. A p95 guardrail counts the calls slower than its
/// threshold and trips when that share is proven above 5 %: its `observed` and `bound` are
/// shares of calls, not milliseconds, so they are printed as such (printing them beside the
/// threshold in ms, as error rates are, read like a latency of 1.0 against 6000 ms).
fn reading_text(e: &Value) -> String {
    let observed = e["observed"].as_f64().unwrap_or(f64::NAN);
    let bound = e["bound"].as_f64().unwrap_or(f64::NAN);
    let metric = e["metric"].as_str().unwrap_or("");
    if metric == "p95_latency_ms" {
        return format!(
            "p95_latency_ms: {:.1} % of {} calls slower than {} ms, 95 % lower bound {:.1} %; the p95 is past the threshold above 5 %",
            observed * 100.0,
            e["samples"],
            e["threshold"],
            bound * 100.0
        );
    }
    format!(
        "{metric} {}: observed {observed:.4}, bound {bound:.4}, threshold {}, {} samples",
        if metric == "quality" {
            "upper"
        } else {
            "lower"
        },
        e["threshold"],
        e["samples"],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_p95_reading_is_a_share_of_slow_calls_not_a_latency() {
        let trip = serde_json::json!({"metric": "p95_latency_ms", "threshold": 6000.0,
            "samples": 20, "observed": 1.0, "bound": 0.8389});
        assert_eq!(
            reading_text(&trip),
            "p95_latency_ms: 100.0 % of 20 calls slower than 6000.0 ms, 95 % lower bound 83.9 %; the p95 is past the threshold above 5 %"
        );
        let errors = serde_json::json!({"metric": "error_rate", "threshold": 0.03,
            "samples": 67, "observed": 0.0746, "bound": 0.0323});
        assert_eq!(
            reading_text(&errors),
            "error_rate lower: observed 0.0746, bound 0.0323, threshold 0.03, 67 samples"
        );
    }
}
