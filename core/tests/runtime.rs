//! The runtime around the call: fallback chains and their bounds, guardrails (trip, no trip,
//! cooldown, half-open probe, halt and rollback of ramps), metrics, Prometheus text, events.

use flagrail_core::EvalOptions;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use flagrail_core::live::ManualClock;
use flagrail_core::live::{Step, Usage};
use flagrail_core::runtime::{CallbackSink, ErrorKind, Event};
use flagrail_core::time::parse_timestamp;
use flagrail_core::{Document, Flags, KillSource, Reason};
use serde_json::{json, Value};

const T0: &str = "2026-11-21T09:00:00Z";

fn t0() -> i64 {
    parse_timestamp(T0).unwrap()
}

fn flags_at(doc: Value, at: i64) -> (Flags, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(at));
    let document = Document::from_value(doc).unwrap();
    (
        Flags::from_document_with_clock(document, clock.clone()),
        clock,
    )
}

fn chain_doc(extra: Value) -> Value {
    let mut flag = json!({
        "variants": {
            "a": { "model": "model-a", "timeout_ms": 1000,
                   "cost_per_1k_input_tokens": 0.003, "cost_per_1k_output_tokens": 0.015 },
            "b": { "model": "model-b", "timeout_ms": 500 },
            "c": { "model": "model-c" },
            "human": { "ai": false, "message": "Talk to a person" }
        },
        "default": "a",
        "fallback": ["b", "c", "human"]
    });
    for (k, v) in extra.as_object().unwrap() {
        flag[k] = v.clone();
    }
    json!({ "revision": "r1", "flags": { "bot": flag } })
}

fn ctx(user: &str) -> Value {
    json!({ "user_id": user })
}

fn variant_id(flags: &Flags, variant: usize) -> String {
    flags.document().flags()[0].variants[variant].id.to_string()
}

fn collect_events(flags: &Flags) -> Arc<Mutex<Vec<Event>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    flags.add_event_sink(Arc::new(CallbackSink(move |e: &Event| {
        sink.lock().unwrap().push(e.clone())
    })));
    events
}

#[test]
fn the_chain_tries_the_assigned_variant_then_each_fallback_once_and_ends_on_the_non_ai_one() {
    let (flags, _) = flags_at(chain_doc(json!({})), t0());
    let mut run = flags.start_run("bot", &ctx("u1")).unwrap();
    let mut called = Vec::new();
    loop {
        match run.next_step() {
            Step::Call {
                variant,
                timeout_ms,
            } => {
                called.push((variant_id(&flags, variant), timeout_ms));
                run.fail(ErrorKind::Server, Some("boom"), Usage::default());
            }
            Step::Serve { variant } => {
                assert_eq!(variant_id(&flags, variant), "human");
                break;
            }
            Step::Exhausted => panic!("the chain ends on a non-AI variant"),
        }
    }
    assert_eq!(
        called,
        vec![
            ("a".into(), Some(1000)),
            ("b".into(), Some(500)),
            ("c".into(), None)
        ]
    );
    assert!(run.fallback_used());
    assert_eq!(run.attempts().len(), 3);
    assert!(run
        .attempts()
        .iter()
        .all(|a| a.error == Some(ErrorKind::Server)));
    assert_eq!(run.next_step(), Step::Exhausted, "a served run is over");
    let report = run.to_json();
    assert_eq!(report["served"], "human");
    assert_eq!(report["assigned"], "a");
}

#[test]
fn a_success_ends_the_chain_and_computes_cost_from_prices() {
    let (flags, _) = flags_at(chain_doc(json!({})), t0());
    let mut run = flags.start_run("bot", &ctx("u1")).unwrap();
    assert!(matches!(run.next_step(), Step::Call { .. }));
    run.succeed(Usage {
        input_tokens: Some(1000),
        output_tokens: Some(2000),
        ..Usage::default()
    });
    assert_eq!(run.served(), Some(0));
    assert!(!run.fallback_used());
    let cost = run.attempts()[0].cost.unwrap();
    assert!((cost - (0.003 + 0.030)).abs() < 1e-12, "{cost}");
    assert_eq!(run.next_step(), Step::Exhausted);
}

#[test]
fn max_attempts_bounds_model_calls_and_still_serves_the_non_ai_variant() {
    let (flags, _) = flags_at(chain_doc(json!({ "max_attempts": 2 })), t0());
    let mut run = flags.start_run("bot", &ctx("u1")).unwrap();
    let mut calls = 0;
    let served = loop {
        match run.next_step() {
            Step::Call { .. } => {
                calls += 1;
                run.fail(ErrorKind::Timeout, None, Usage::default());
            }
            Step::Serve { variant } => break Some(variant_id(&flags, variant)),
            Step::Exhausted => break None,
        }
    };
    assert_eq!(calls, 2);
    assert_eq!(served.as_deref(), Some("human"));
}

#[test]
fn max_total_ms_bounds_the_call_and_shortens_the_last_timeout() {
    let (flags, _) = flags_at(chain_doc(json!({ "max_total_ms": 150 })), t0());
    let mut run = flags.start_run("bot", &ctx("u1")).unwrap();
    let Step::Call { timeout_ms, .. } = run.next_step() else {
        panic!()
    };
    assert!(timeout_ms.unwrap() <= 150, "{timeout_ms:?}");
    thread::sleep(Duration::from_millis(160));
    run.fail(ErrorKind::Timeout, None, Usage::default());
    // The total time is spent: no more model calls, straight to the non-AI variant.
    assert!(matches!(run.next_step(), Step::Serve { .. }));
    assert_eq!(run.attempts().len(), 1);
}

#[test]
fn a_chain_without_a_non_ai_variant_is_exhausted_and_unknown_flags_fail() {
    let doc = json!({ "flags": { "bot": {
        "variants": { "a": {}, "b": {} }, "default": "a", "fallback": ["b"] } } });
    let (flags, _) = flags_at(doc, t0());
    let mut run = flags.start_run("bot", &ctx("u1")).unwrap();
    while let Step::Call { .. } = run.next_step() {
        run.fail(
            ErrorKind::Rejected,
            Some("low confidence"),
            Usage::default(),
        );
    }
    assert_eq!(run.attempts().len(), 2);
    assert_eq!(run.served(), None);
    let err = flags.start_run("nope", &ctx("u1")).unwrap_err();
    assert_eq!(err.code(), "FLAG_NOT_FOUND");
}

fn guarded_doc(action: &str) -> Value {
    json!({ "revision": "g1", "flags": { "bot": {
        "variants": {
            "stable": { "model": "m-stable" },
            "cand": { "model": "m-cand" },
            "human": { "ai": false }
        },
        "default": "cand",
        "fallback": ["stable", "human"],
        "guardrails": [{ "metric": "error_rate", "max": 0.05, "min_samples": 20,
                         "action": action, "cooldown": "10m", "variants": ["cand"] }]
    } } })
}

/// Runs one call for `user` whose first attempt fails when `fail` says so.
fn call_once(flags: &Flags, user: &str, fail: bool) -> Option<String> {
    let mut run = flags.start_run("bot", &ctx(user)).unwrap();
    loop {
        match run.next_step() {
            Step::Call { variant, .. } => {
                let id = variant_id(flags, variant);
                if fail && id == "cand" {
                    run.fail(
                        ErrorKind::Rejected,
                        None,
                        Usage {
                            latency_ms: Some(5.0),
                            ..Usage::default()
                        },
                    );
                } else {
                    run.succeed(Usage {
                        latency_ms: Some(5.0),
                        ..Usage::default()
                    });
                    return Some(id);
                }
            }
            Step::Serve { variant } => return Some(variant_id(flags, variant)),
            Step::Exhausted => return None,
        }
    }
}

#[test]
fn a_failing_variant_trips_its_fallback_guardrail_for_every_evaluation_at_once() {
    let (flags, clock) = flags_at(guarded_doc("fallback"), t0());
    let events = collect_events(&flags);
    // 19 failures: below the minimum sample, nothing trips.
    for i in 0..19 {
        assert_eq!(
            call_once(&flags, &format!("u{i}"), true).as_deref(),
            Some("stable")
        );
    }
    assert_eq!(
        flags
            .evaluate("bot", &ctx("x"), EvalOptions::default())
            .reason,
        Reason::Default
    );
    // The 20th trips it: the lower Wilson bound of 20/20 is far above 5 %.
    call_once(&flags, "u19", true);
    let e = flags.evaluate("bot", &ctx("x"), EvalOptions::default());
    assert_eq!(e.reason, Reason::Guardrail);
    assert_eq!(e.variant_id(), Some("stable"));
    assert_eq!(e.to_json(None)["replaced_variant"], "cand");
    assert_eq!(e.to_json(None)["guardrail"], "error_rate");
    let explained = flags
        .explain("bot", &ctx("x"), EvalOptions::default())
        .to_value();
    let step = explained["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "guardrail")
        .unwrap();
    assert_eq!(step["since"], T0);
    assert_eq!(step["replaced"], "cand");
    let status = flags.status().to_json();
    assert_eq!(status["guardrails"][0]["variant"], "cand");
    assert_eq!(status["guardrails"][0]["state"], "tripped");
    let trips: Vec<Value> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "guardrail_trip")
        .cloned()
        .collect();
    assert_eq!(trips.len(), 1);
    assert_eq!(trips[0]["samples"], 20);
    assert_eq!(trips[0]["revision"], "g1");
    // New calls start on the fallback directly.
    let mut run = flags.start_run("bot", &ctx("y")).unwrap();
    let Step::Call { variant, .. } = run.next_step() else {
        panic!()
    };
    assert_eq!(variant_id(&flags, variant), "stable");
    run.succeed(Usage::default());

    // After the cooldown, 10 % of units probe the candidate; the others stay on the fallback.
    clock.advance(10 * 60 * 1000);
    let probes: Vec<String> = (0..2000)
        .map(|i| format!("p{i}"))
        .filter(|u| {
            flags
                .evaluate("bot", &ctx(u), EvalOptions::default())
                .variant_id()
                == Some("cand")
        })
        .collect();
    assert!(
        (150..250).contains(&probes.len()),
        "{} probes of 2000",
        probes.len()
    );
    assert_eq!(
        flags.status().to_json()["guardrails"][0]["state"],
        "half_open"
    );
    // The probes are healthy: after min_samples of them the guardrail closes.
    for u in probes.iter().take(20) {
        assert_eq!(call_once(&flags, u, false).as_deref(), Some("cand"));
    }
    assert_eq!(
        flags
            .evaluate("bot", &ctx("x"), EvalOptions::default())
            .reason,
        Reason::Default
    );
    assert!(flags.status().to_json()["guardrails"]
        .as_array()
        .unwrap()
        .is_empty());
    let kinds: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert!(
        kinds.contains(&"guardrail_probe".to_string())
            && kinds.contains(&"guardrail_recover".to_string()),
        "{kinds:?}"
    );
}

#[test]
fn a_failing_probe_trips_again() {
    let (flags, clock) = flags_at(guarded_doc("fallback"), t0());
    for i in 0..20 {
        call_once(&flags, &format!("u{i}"), true);
    }
    clock.advance(10 * 60 * 1000 + 1);
    let probes: Vec<String> = (0..3000)
        .map(|i| format!("p{i}"))
        .filter(|u| {
            flags
                .evaluate("bot", &ctx(u), EvalOptions::default())
                .variant_id()
                == Some("cand")
        })
        .take(20)
        .collect();
    for u in &probes {
        call_once(&flags, u, true);
    }
    assert_eq!(
        flags.status().to_json()["guardrails"][0]["state"],
        "tripped"
    );
    assert_eq!(
        flags
            .evaluate("bot", &ctx(&probes[0]), EvalOptions::default())
            .variant_id(),
        Some("stable")
    );
}

#[test]
fn errors_below_the_wilson_bound_do_not_trip() {
    let (flags, _) = flags_at(guarded_doc("fallback"), t0());
    // 2 failures in 100 calls (2 %): the lower bound stays under 5 %.
    for i in 0..100 {
        call_once(&flags, &format!("u{i}"), i % 50 == 0);
    }
    assert_eq!(
        flags
            .evaluate("bot", &ctx("x"), EvalOptions::default())
            .reason,
        Reason::Default
    );
    let m = flags.metrics();
    assert_eq!(m["bot"]["cand"]["requests"], 100);
    assert_eq!(m["bot"]["cand"]["errors"], 2);
    assert_eq!(
        m["bot"]["cand"]["guardrails"]["error_rate"]["state"],
        "closed"
    );
}

#[test]
fn a_kill_guardrail_kills_the_flag() {
    let (flags, _) = flags_at(guarded_doc("kill"), t0());
    for i in 0..20 {
        call_once(&flags, &format!("u{i}"), true);
    }
    let e = flags.evaluate("bot", &ctx("x"), EvalOptions::default());
    assert_eq!(e.reason, Reason::Killed);
    assert_eq!(e.kill_source, Some(KillSource::Guardrail));
    assert_eq!(e.to_json(None)["kill_source"], "guardrail");
}

fn ramp_doc(action: &str) -> Value {
    json!({ "flags": { "bot": {
        "variants": { "stable": {}, "cand": {}, "human": { "ai": false } },
        "default": "stable",
        "fallback": ["stable", "human"],
        "rules": [{ "id": "canary", "ramp": { "variant": "cand", "start": T0,
            "steps": [{ "percent": 10, "hold": "1h" }, { "percent": 50, "hold": "1h" }, { "percent": 100 }] } }],
        "guardrails": [{ "metric": "error_rate", "max": 0.05, "action": action, "cooldown": "1d" }]
    } } })
}

fn share_on_candidate(flags: &Flags) -> f64 {
    let n = 20_000;
    let on = (0..n)
        .filter(|i| {
            flags
                .evaluate("bot", &ctx(&format!("user-{i}")), EvalOptions::default())
                .variant_id()
                == Some("cand")
        })
        .count();
    on as f64 / n as f64
}

#[test]
fn halt_freezes_a_ramp_at_the_trip_and_rollback_takes_it_to_zero() {
    for (action, expected_later) in [("halt", 0.10), ("rollback", 0.0)] {
        let (flags, clock) = flags_at(ramp_doc(action), t0() + 30 * 60 * 1000);
        // Ramp users of the candidate fail until the guardrail trips.
        let mut tripped = false;
        for i in 0..2000 {
            let user = format!("user-{i}");
            if flags
                .evaluate("bot", &ctx(&user), EvalOptions::default())
                .variant_id()
                == Some("cand")
            {
                call_once(&flags, &user, true);
            }
            if !flags.status().to_json()["guardrails"]
                .as_array()
                .unwrap()
                .is_empty()
            {
                tripped = true;
                break;
            }
        }
        assert!(tripped, "{action}");
        // Two hours later the schedule says 100 %; the guardrail holds it.
        clock.advance(2 * 3600 * 1000);
        let share = share_on_candidate(&flags);
        assert!((share - expected_later).abs() < 0.01, "{action}: {share}");
        let held = (0..200).map(|i| format!("user-{i}")).find(|u| {
            let e = flags.evaluate("bot", &ctx(u), EvalOptions::default());
            e.variant_id() != Some("cand") && e.guardrail.is_some()
        });
        assert!(
            held.is_some(),
            "{action}: some unit is marked as held by the guardrail"
        );
    }
}

#[test]
fn metrics_aggregate_per_variant_and_segment_and_render_as_prometheus_text() {
    let (flags, _) = flags_at(chain_doc(json!({})), t0());
    for i in 0..10 {
        let context = json!({ "user_id": format!("u{i}"), "segment": if i < 4 { "internal" } else { "external" } });
        let mut run = flags.start_run("bot", &context).unwrap();
        run.next_step();
        if i % 5 == 0 {
            run.fail(
                ErrorKind::RateLimit,
                None,
                Usage {
                    latency_ms: Some(100.0),
                    ..Usage::default()
                },
            );
            run.next_step();
        }
        run.succeed(Usage {
            latency_ms: Some(10.0 * (i + 1) as f64),
            input_tokens: Some(100),
            output_tokens: Some(10),
            ..Usage::default()
        });
    }
    let m = flags.metrics();
    assert_eq!(m["bot"]["a"]["requests"], 10);
    assert_eq!(m["bot"]["a"]["errors"], 2);
    assert_eq!(m["bot"]["a"]["errors_by_kind"]["rate_limit"], 2);
    assert_eq!(m["bot"]["b"]["requests"], 2);
    assert_eq!(m["bot"]["a"]["segments"]["internal"]["requests"], 4);
    assert_eq!(m["bot"]["a"]["tokens"]["input"], 800);
    assert!(m["bot"]["a"]["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    let text = flags.metrics_text();
    assert!(
        text.contains("# TYPE flagrail_requests_total counter"),
        "{text}"
    );
    // One series per segment, never the variant's total beside them: the parts add up.
    assert!(
        !text.contains("flagrail_requests_total{flag=\"bot\",variant=\"a\"} 10"),
        "{text}"
    );
    assert!(
        text.contains("flagrail_requests_total{flag=\"bot\",variant=\"a\",segment=\"internal\"} 4")
    );
    assert!(
        text.contains("flagrail_requests_total{flag=\"bot\",variant=\"a\",segment=\"external\"} 6")
    );
    let rate_limited: u64 = text
        .lines()
        .filter(|l| {
            l.starts_with("flagrail_errors_total{flag=\"bot\",variant=\"a\",")
                && l.contains("kind=\"rate_limit\"")
        })
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert_eq!(rate_limited, 2, "{text}");
    // A call without a segment is counted under segment="_none"; the live document too.
    let mut run = flags
        .start_run("bot", &json!({ "user_id": "u-x" }))
        .unwrap();
    run.next_step();
    run.succeed(Usage::default());
    let text = flags.metrics_text();
    assert!(
        text.contains("flagrail_requests_total{flag=\"bot\",variant=\"a\",segment=\"_none\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("flagrail_document_info{revision=\"r1\"} 1"),
        "{text}"
    );
    assert!(text.contains("flagrail_reloads_total 0"), "{text}");
    assert!(flags.replace_json("{").is_err());
    assert!(flags
        .metrics_text()
        .contains("flagrail_reloads_rejected_total 1"));
    // Every sample line is `name{labels} value` with a parseable value.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        assert!(value == "NaN" || value.parse::<f64>().is_ok(), "{line}");
    }
}

#[test]
fn events_carry_the_tags_and_units_can_be_hashed() {
    let (flags, _) = flags_at(chain_doc(json!({})), t0());
    let events = collect_events(&flags);
    flags.set_unit_hash_key(Some(b"secret"));
    let mut run = flags.start_run("bot", &ctx("alice")).unwrap();
    run.next_step();
    run.succeed(Usage::default());
    let run_id = run.run_id().to_string();
    assert!(flags.feedback(&run_id, Some(1.0), Some(0.9)).unwrap());
    assert!(!flags.feedback("no-such-run", Some(1.0), None).unwrap());
    let events = events.lock().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["exposure", "outcome", "feedback"]);
    for e in events.iter() {
        assert_eq!(e["run_id"], run_id.as_str());
        assert_eq!(e["flag"], "bot");
        assert_eq!(e["variant"], "a");
        assert_eq!(e["revision"], "r1");
        assert_eq!(e["model"], "model-a");
    }
    let unit = events[0]["unit"].as_str().unwrap();
    assert!(unit.starts_with("h:") && !unit.contains("alice"), "{unit}");
    assert_eq!(events[0]["unit"], events[1]["unit"]);
    assert_eq!(flags.metrics()["bot"]["a"]["quality"]["mean"], 0.9);
}

#[test]
fn quality_feedback_trips_a_quality_guardrail() {
    let doc = json!({ "flags": { "bot": {
        "variants": { "stable": {}, "cand": {} }, "default": "cand", "fallback": ["stable"],
        "guardrails": [{ "metric": "quality", "min": 0.7, "min_samples": 10, "action": "fallback", "variants": ["cand"] }]
    } } });
    let (flags, _) = flags_at(doc, t0());
    for i in 0..10 {
        let mut run = flags.start_run("bot", &ctx(&format!("u{i}"))).unwrap();
        run.next_step();
        run.succeed(Usage::default());
        flags
            .feedback(run.run_id(), None, Some(if i % 2 == 0 { 0.3 } else { 0.5 }))
            .unwrap();
    }
    assert_eq!(
        flags
            .evaluate("bot", &ctx("x"), EvalOptions::default())
            .reason,
        Reason::Guardrail
    );
}

#[test]
fn concurrent_runs_from_threads_are_all_counted() {
    let (flags, _) = flags_at(chain_doc(json!({})), t0());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let flags = flags.clone();
            thread::spawn(move || {
                for i in 0..500 {
                    let mut run = flags.start_run("bot", &ctx(&format!("u{t}-{i}"))).unwrap();
                    run.next_step();
                    if i % 10 == 0 {
                        run.fail(ErrorKind::Server, None, Usage::default());
                        run.next_step();
                    }
                    run.succeed(Usage {
                        input_tokens: Some(1),
                        ..Usage::default()
                    });
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let m = flags.metrics();
    assert_eq!(m["bot"]["a"]["requests"], 4000);
    assert_eq!(m["bot"]["a"]["errors"], 400);
    assert_eq!(m["bot"]["b"]["requests"], 400);
    assert_eq!(
        m["bot"]["a"]["tokens"]["input"].as_u64().unwrap()
            + m["bot"]["b"]["tokens"]["input"].as_u64().unwrap(),
        4000
    );
}

#[test]
fn documents_with_runtime_sections_are_validated_with_paths() {
    let bad = json!({ "flags": { "bot": {
        "variants": { "a": { "timeout_ms": "3s", "ai": "yes", "cost_per_1k_input_tokens": -1 }, "b": {} },
        "default": "a",
        "fallback": ["b", "b", "zzz"],
        "guardrails": [
            { "metric": "error_rat", "max": 0.05, "action": "kill" },
            { "metric": "error_rate", "max": 1.5, "action": "explode" },
            { "metric": "quality", "max": 0.5, "action": "halt" }
        ]
    } } });
    let err = Document::from_value(bad).unwrap_err();
    let got: Vec<String> = err
        .problems()
        .iter()
        .map(|p| format!("{} {}", p.path, p.code()))
        .collect();
    for expected in [
        "flags.bot.variants.a.timeout_ms WRONG_TYPE",
        "flags.bot.variants.a.ai WRONG_TYPE",
        "flags.bot.variants.a.cost_per_1k_input_tokens INVALID_VALUE",
        "flags.bot.fallback[1] INVALID_VALUE",
        "flags.bot.fallback[2] UNKNOWN_VARIANT",
        "flags.bot.guardrails[0].metric INVALID_VALUE",
        "flags.bot.guardrails[1].max INVALID_VALUE",
        "flags.bot.guardrails[1].action INVALID_VALUE",
        "flags.bot.guardrails[2].max INVALID_VALUE",
        "flags.bot.guardrails[2].min MISSING_FIELD",
        "flags.bot.guardrails[2].action INVALID_VALUE",
    ] {
        assert!(
            got.iter().any(|g| g == expected),
            "missing {expected}; got {got:#?}"
        );
    }
}

#[test]
fn errors_of_the_request_fall_back_but_never_trip_a_guardrail() {
    let (flags, _) = flags_at(guarded_doc("fallback"), t0());
    for i in 0..60 {
        let mut run = flags.start_run("bot", &ctx(&format!("u{i}"))).unwrap();
        let Step::Call { variant, .. } = run.next_step() else {
            panic!("the assigned variant is called");
        };
        assert_eq!(variant_id(&flags, variant), "cand");
        run.fail(
            ErrorKind::InvalidRequest,
            Some("context too long"),
            Usage::default(),
        );
        // The chain still moves on to the fallback.
        let Step::Call { variant, .. } = run.next_step() else {
            panic!("the fallback is called");
        };
        assert_eq!(variant_id(&flags, variant), "stable");
        run.succeed(Usage::default());
    }
    assert_eq!(
        flags
            .evaluate("bot", &ctx("x"), EvalOptions::default())
            .reason,
        Reason::Default
    );
    let cand = &flags.metrics()["bot"]["cand"];
    assert_eq!(cand["errors_by_kind"]["invalid_request"], 60);
    let samples = &cand["guardrails"]["error_rate"]["samples"];
    assert_eq!(samples.as_u64().unwrap_or(0), 0, "{samples}");
}

#[test]
fn loads_send_reload_and_reload_rejected_events() {
    let (flags, _) = flags_at(chain_doc(json!({})), t0());
    let events = collect_events(&flags);
    let mut next = chain_doc(json!({}));
    next["revision"] = json!("r2");
    flags.replace_json(&next.to_string()).unwrap();
    assert!(flags
        .replace_json(r#"{"flags": {"f": {"variants": {}}}}"#)
        .is_err());
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    let reload = &events[0];
    assert_eq!(reload["type"], "reload");
    assert_eq!(
        (&reload["previous"], &reload["revision"], &reload["reloads"]),
        (&json!("r1"), &json!("r2"), &json!(1))
    );
    let rejected = &events[1];
    assert_eq!(rejected["type"], "reload_rejected");
    assert_eq!(rejected["code"], "INVALID_DOCUMENT");
    assert_eq!(rejected["revision"], "r2", "the live document stays");
    assert_eq!(rejected["rejected"], 1);
    let problems = rejected["problems"].as_array().unwrap();
    assert!(!problems.is_empty() && problems[0]["path"].is_string());
    assert!(rejected["time"].is_string() && rejected["source"].is_string());
}

#[test]
fn event_shapes_keep_their_fields_and_order() {
    let (flags, _) = flags_at(guarded_doc("fallback"), t0());
    let events = collect_events(&flags);
    let mut run = flags.start_run("bot", &ctx("u1")).unwrap();
    run.next_step();
    run.succeed(Usage::default());
    flags.feedback(run.run_id(), Some(1.0), None).unwrap();
    for i in 0..20 {
        call_once(&flags, &format!("f{i}"), true);
    }
    let events = events.lock().unwrap();
    let keys = |kind: &str| -> Vec<String> {
        let event = events.iter().find(|e| e["type"] == kind).unwrap();
        event.as_object().unwrap().keys().cloned().collect()
    };
    let expect = |list: &str| -> Vec<String> { list.split(',').map(String::from).collect() };
    assert_eq!(
        keys("exposure"),
        expect("type,time,run_id,flag,variant,revision,reason,rule_id,bucket,model,shadow,unit,segment,source")
    );
    assert_eq!(
        keys("outcome"),
        expect("type,time,run_id,flag,variant,revision,rule_id,model,attempt,fallback,shadow,outcome,error_kind,latency_ms,input_tokens,output_tokens,cost,unit,segment")
    );
    assert_eq!(
        keys("feedback"),
        expect("type,time,run_id,flag,variant,revision,model,segment,score,quality")
    );
    assert_eq!(
        keys("guardrail_trip"),
        expect("type,time,flag,variant,revision,guardrail,metric,threshold,action,samples,observed,bound,since,probe_from")
    );
}

#[test]
fn a_removed_sink_gets_no_more_events_and_the_others_still_do() {
    let (flags, _) = flags_at(chain_doc(json!({})), t0());
    let kept = collect_events(&flags);
    let removed_events = Arc::new(Mutex::new(Vec::new()));
    let into = removed_events.clone();
    let removed: Arc<dyn flagrail_core::runtime::EventSink> =
        Arc::new(CallbackSink(move |e: &Event| {
            into.lock().unwrap().push(e.clone())
        }));
    flags.add_event_sink(Arc::clone(&removed));
    let serve = |user: &str| {
        let mut run = flags.start_run("bot", &ctx(user)).unwrap();
        assert!(matches!(run.next_step(), Step::Call { .. }));
        run.succeed(Usage::default());
    };
    serve("u1");
    let before = removed_events.lock().unwrap().len();
    assert!(before > 0, "the sink receives the first run's events");
    assert!(flags.remove_event_sink(&removed));
    assert!(!flags.remove_event_sink(&removed), "a sink is removed once");
    let kept_before = kept.lock().unwrap().len();
    serve("u2");
    assert_eq!(removed_events.lock().unwrap().len(), before);
    assert!(kept.lock().unwrap().len() > kept_before);
}
