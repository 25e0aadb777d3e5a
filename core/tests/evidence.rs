//! Evidence that cannot be poisoned: one feedback per run, and NaN, infinities and
//! out-of-range numbers refused (`INVALID_ARGUMENT`) or, reported past the check, never
//! recorded.

use std::sync::Arc;

use flagrail_core::live::ManualClock;
use flagrail_core::live::{Step, Usage};
use flagrail_core::time::parse_timestamp;
use flagrail_core::EvalOptions;
use flagrail_core::{Document, Flags, Reason};
use serde_json::{json, Value};

fn flags(guardrail: Value) -> Flags {
    let doc = json!({ "flags": { "bot": {
        "variants": { "stable": { "model": "s" }, "cand": { "model": "c" } },
        "default": "cand", "fallback": ["stable"],
        "guardrails": [guardrail]
    } } });
    let clock = Arc::new(ManualClock::new(
        parse_timestamp("2026-11-21T09:00:00Z").unwrap(),
    ));
    Flags::from_document_with_clock(Document::from_value(doc).unwrap(), clock)
}

fn quality_flags() -> Flags {
    flags(json!({ "metric": "quality", "min": 0.7, "min_samples": 20,
                  "action": "fallback", "variants": ["cand"] }))
}

/// One successful call on `cand`; returns its run id.
fn serve(flags: &Flags, user: &str, usage: Usage) -> String {
    let mut run = flags.start_run("bot", &json!({ "user_id": user })).unwrap();
    assert!(matches!(run.next_step(), Step::Call { .. }));
    run.succeed(usage);
    run.run_id().to_string()
}

fn tripped(flags: &Flags) -> bool {
    flags
        .evaluate(
            "bot",
            &json!({ "user_id": "probe" }),
            EvalOptions::default(),
        )
        .reason
        == Reason::Guardrail
}

#[test]
fn feedback_replayed_on_one_run_counts_once() {
    let flags = quality_flags();
    let run = serve(&flags, "u0", Usage::default());
    assert!(flags.feedback(&run, None, Some(0.0)).unwrap());
    for _ in 0..24 {
        assert!(
            !flags.feedback(&run, None, Some(0.0)).unwrap(),
            "a replay counts nothing"
        );
    }
    assert!(!tripped(&flags));
    assert_eq!(flags.metrics()["bot"]["cand"]["quality"]["count"], 1);
    // The first score and the first quality of a run count, each once.
    assert!(flags.feedback(&run, Some(1.0), None).unwrap());
    assert!(!flags.feedback(&run, Some(-1.0), Some(0.5)).unwrap());
    assert_eq!(flags.metrics()["bot"]["cand"]["feedback"]["mean"], 1.0);
}

#[test]
fn a_nan_quality_is_refused_and_does_not_blind_the_guardrail() {
    let flags = quality_flags();
    let run = serve(&flags, "u0", Usage::default());
    let err = flags.feedback(&run, None, Some(f64::NAN)).unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT");
    for i in 1..40 {
        let run = serve(&flags, &format!("u{i}"), Usage::default());
        flags.feedback(&run, None, Some(0.0)).unwrap();
    }
    assert!(tripped(&flags), "39 zero scores trip a min: 0.7 guardrail");
}

#[test]
fn one_absurd_quality_among_perfect_ones_is_refused_and_does_not_trip() {
    let flags = quality_flags();
    for i in 0..40 {
        let run = serve(&flags, &format!("u{i}"), Usage::default());
        let quality = if i == 7 { -1e300 } else { 1.0 };
        let result = flags.feedback(&run, None, Some(quality));
        assert_eq!(result.is_err(), i == 7);
    }
    assert!(!tripped(&flags));
    assert_eq!(flags.metrics()["bot"]["cand"]["quality"]["mean"], 1.0);
}

#[test]
fn a_nan_or_negative_cost_is_refused_and_never_recorded() {
    let flags = flags(
        json!({ "metric": "cost_per_request", "max": 0.01, "min_samples": 20,
                              "action": "fallback", "variants": ["cand"] }),
    );
    for bad in [f64::NAN, -5.0, f64::NEG_INFINITY] {
        let usage = Usage {
            cost: Some(bad),
            ..Usage::default()
        };
        assert_eq!(usage.check().unwrap_err().code(), "INVALID_ARGUMENT");
        // Reported anyway (a binding that skipped the check): the cost is left out.
        serve(&flags, "u-bad", usage);
    }
    assert_eq!(flags.metrics()["bot"]["cand"]["cost"], 0.0);
    let mut calls = 0;
    while !tripped(&flags) && calls < 40 {
        calls += 1;
        serve(
            &flags,
            &format!("u{calls}"),
            Usage {
                cost: Some(0.1),
                ..Usage::default()
            },
        );
    }
    assert!(tripped(&flags), "40 calls at 10x the limit trip");
    assert!(calls <= 20, "{calls}");
}

#[test]
fn a_nan_latency_is_refused_and_never_recorded() {
    let flags = quality_flags();
    let usage = Usage {
        latency_ms: Some(f64::NAN),
        ..Usage::default()
    };
    assert_eq!(usage.check().unwrap_err().code(), "INVALID_ARGUMENT");
    serve(&flags, "u0", usage);
    let sum = flags.metrics()["bot"]["cand"]["latency_ms"]["mean"]
        .as_f64()
        .unwrap();
    assert!(sum.is_finite());
}
