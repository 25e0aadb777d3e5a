//! State that changes decisions: budgets (cost circuit breakers), sticky pins and shadow
//! traffic, through the live handle and the runtime.

use flagrail_core::EvalOptions;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use flagrail_core::live::ManualClock;
use flagrail_core::live::{Run, Step, Usage};
use flagrail_core::runtime::{CallbackSink, ErrorKind, Event};
use flagrail_core::time::parse_timestamp;
use flagrail_core::{Document, Flags, KillSource, Reason};
use serde_json::{json, Value};

const T0: &str = "2026-11-21T09:00:00Z";
const HOUR: i64 = 3_600_000;

fn t0() -> i64 {
    parse_timestamp(T0).unwrap()
}

fn flags_at(doc: Value) -> (Flags, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(t0()));
    let document = Document::from_value(doc).unwrap();
    (
        Flags::from_document_with_clock(document, clock.clone()),
        clock,
    )
}

fn collect_events(flags: &Flags) -> Arc<Mutex<Vec<Event>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    flags.add_event_sink(Arc::new(CallbackSink(move |e: &Event| {
        sink.lock().unwrap().push(e.clone())
    })));
    events
}

fn served_id(run: &Run, variant: usize) -> String {
    run.evaluation().flag().unwrap().variants[variant]
        .id
        .to_string()
}

/// One call whose model attempt succeeds with `output_tokens`; returns (served id, reason).
fn call(flags: &Flags, flag: &str, ctx: &Value, output_tokens: Option<u64>) -> (String, Reason) {
    let mut run = flags.start_run(flag, ctx).unwrap();
    let reason = run.evaluation().reason;
    match run.next_step() {
        Step::Call { variant, .. } => {
            run.succeed(Usage {
                output_tokens,
                ..Usage::default()
            });
            (served_id(&run, variant), reason)
        }
        Step::Serve { variant } => (served_id(&run, variant), reason),
        Step::Exhausted => panic!("chain exhausted"),
    }
}

fn budget_doc() -> Value {
    json!({ "revision": "b1",
        "budgets": [{ "id": "daily-cap", "max_cost": 5.0, "window": "1d", "action": "kill" }],
        "flags": {
            "chat": {
                "variants": {
                    "opus": { "model": "opus", "max_tokens": 1000, "cost_per_1k_output_tokens": 0.01 },
                    "haiku": { "model": "haiku", "max_tokens": 1000, "cost_per_1k_output_tokens": 0.001 },
                    "human": { "ai": false }
                },
                "default": "opus",
                "kill": { "active": false, "serve": "human" },
                "budgets": [
                    { "id": "per-user", "per": "user_id", "max_requests": 3, "window": "1h",
                      "action": { "serve": "haiku" } },
                    { "id": "feature-hourly", "max_cost": 1.0, "window": "1h",
                      "action": { "serve": "human" } }
                ]
            },
            "static-only": { "variants": { "faq": { "ai": false } }, "default": "faq" }
        }
    })
}

#[test]
fn a_user_over_the_request_budget_is_downgraded_until_the_window_moves_on() {
    let (flags, clock) = flags_at(budget_doc());
    let events = collect_events(&flags);
    let alice = json!({ "user_id": "alice" });
    for _ in 0..3 {
        assert_eq!(call(&flags, "chat", &alice, Some(10)).0, "opus");
    }
    let e = flags.evaluate("chat", &alice, EvalOptions::default());
    assert_eq!((e.variant_id(), e.reason), (Some("haiku"), Reason::Budget));
    assert_eq!(e.to_json(None)["budget"], "per-user");
    assert_eq!(
        flags
            .evaluate("chat", &json!({ "user_id": "bob" }), EvalOptions::default())
            .reason,
        Reason::Default,
        "budgets per unit are independent"
    );
    // A call of a downgraded user still counts and runs on the cheaper variant.
    assert_eq!(
        call(&flags, "chat", &alice, Some(10)),
        ("haiku".into(), Reason::Budget)
    );
    // One slot (1 min) short of the window the spend still counts; a full window later it has
    // left: restored.
    clock.advance(HOUR - 60_000 - 1);
    assert_eq!(
        flags
            .evaluate("chat", &alice, EvalOptions::default())
            .reason,
        Reason::Budget
    );
    clock.advance(60_001);
    assert_eq!(
        flags
            .evaluate("chat", &alice, EvalOptions::default())
            .reason,
        Reason::Default
    );
    let kinds: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["budget"] == "per-user")
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["budget_exhausted", "budget_restored"]);
    let explained = flags
        .explain("chat", &alice, EvalOptions::default())
        .to_value();
    assert!(explained["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["step"] != "budget"));
}

#[test]
fn a_flag_over_its_cost_budget_serves_its_static_variant_and_status_shows_why() {
    let (flags, _) = flags_at(budget_doc());
    // 100 users × 1000 tokens × $0.01/1k = $1.00: the feature's hourly budget.
    for i in 0..100 {
        call(
            &flags,
            "chat",
            &json!({ "user_id": format!("u{i}") }),
            Some(1000),
        );
    }
    let e = flags.evaluate("chat", &json!({ "user_id": "new" }), EvalOptions::default());
    assert_eq!((e.variant_id(), e.reason), (Some("human"), Reason::Budget));
    let status = flags.status().to_json();
    let feature = status["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["budget"] == "feature-hourly")
        .unwrap()
        .clone();
    assert_eq!(feature["exhausted"], true);
    assert!((feature["spent"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    let per_user = status["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["budget"] == "per-user")
        .unwrap()
        .clone();
    assert_eq!(per_user["scopes"], 100);
    assert_eq!(flags.metrics()["$budgets"].as_array().unwrap().len(), 3);
    let text = flags.metrics_text();
    assert!(text.contains("flagrail_budget_exhausted_scopes{flag=\"chat\",budget=\"feature-hourly\",measure=\"cost\"} 1"));
}

#[test]
fn the_daily_cap_kills_every_ai_flag_and_spares_static_ones() {
    let mut doc = budget_doc();
    // Only the document's daily cap: 510 users × $0.01 passes $5.
    doc["flags"]["chat"]["budgets"] = json!([]);
    let (flags, _) = flags_at(doc);
    for i in 0..510 {
        call(
            &flags,
            "chat",
            &json!({ "user_id": format!("u{i}") }),
            Some(1000),
        );
    }
    let e = flags.evaluate("chat", &json!({ "user_id": "x" }), EvalOptions::default());
    assert_eq!(e.reason, Reason::Killed);
    assert_eq!(e.kill_source, Some(KillSource::Budget));
    assert_eq!(e.variant_id(), Some("human"));
    assert_eq!(e.to_json(None)["budget"], "daily-cap");
    let faq = flags.evaluate("static-only", &json!({}), EvalOptions::default());
    assert_eq!(faq.reason, Reason::Default);
}

#[test]
fn concurrent_calls_overshoot_a_cost_budget_by_at_most_one_reservation() {
    let (flags, _) = flags_at(json!({ "flags": { "chat": {
        "variants": {
            "opus": { "max_tokens": 1000, "cost_per_1k_output_tokens": 0.01 },
            "human": { "ai": false }
        },
        "default": "opus",
        "budgets": [{ "id": "cap", "max_cost": 1.0, "window": "1h", "action": { "serve": "human" } }]
    } } }));
    // Pre-spend $0.95 (95 calls of $0.01).
    for i in 0..95 {
        call(
            &flags,
            "chat",
            &json!({ "user_id": format!("p{i}") }),
            Some(1000),
        );
    }
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most_in_flight = Arc::new(AtomicUsize::new(0));
    let opus_calls = Arc::new(AtomicUsize::new(0));
    let downgraded = Arc::new(AtomicUsize::new(0));
    // All threads start together, so the $0.05 left is reserved by several of them at once.
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let flags = flags.clone();
            let (in_flight, most, opus_calls, downgraded, start) = (
                in_flight.clone(),
                most_in_flight.clone(),
                opus_calls.clone(),
                downgraded.clone(),
                start.clone(),
            );
            thread::spawn(move || {
                start.wait();
                for i in 0..125 {
                    let mut run = flags
                        .start_run("chat", &json!({ "user_id": format!("t{t}-{i}") }))
                        .unwrap();
                    if run.evaluation().reason == Reason::Budget {
                        downgraded.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Step::Call { .. } = run.next_step() {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        // Hold the call until another is in flight too (bounded: on a loaded
                        // machine a thread may not be scheduled before the first call ends).
                        let hold_until = Instant::now() + Duration::from_secs(2);
                        while most.load(Ordering::SeqCst) < 2 && Instant::now() < hold_until {
                            thread::sleep(Duration::from_micros(100));
                        }
                        thread::sleep(Duration::from_micros(200));
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        opus_calls.fetch_add(1, Ordering::Relaxed);
                        // Each call costs $0.008, less than its $0.01 reservation.
                        run.succeed(Usage {
                            output_tokens: Some(800),
                            ..Usage::default()
                        });
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let spent = 0.95 + opus_calls.load(Ordering::Relaxed) as f64 * 0.008;
    assert!(
        most_in_flight.load(Ordering::SeqCst) > 1,
        "calls really overlapped"
    );
    assert!(
        spent <= 1.0 + 0.01 + 1e-9,
        "spent {spent} with {} model calls",
        opus_calls.load(Ordering::Relaxed)
    );
    assert!(downgraded.load(Ordering::Relaxed) >= 990);
    let state = &flags.budget_states()[0];
    assert_eq!(state["reserved"], 0.0, "every reservation was settled");
}

#[test]
fn a_dropped_run_gives_its_reservation_back() {
    let (flags, _) = flags_at(json!({ "flags": { "chat": {
        "variants": { "opus": { "max_tokens": 1000, "cost_per_1k_output_tokens": 0.5 },
                      "human": { "ai": false } },
        "default": "opus",
        "budgets": [{ "id": "cap", "max_cost": 1.0, "window": "1h", "action": { "serve": "human" } }]
    } } }));
    let user = json!({ "user_id": "u" });
    let first = flags.start_run("chat", &user).unwrap();
    let second = flags.start_run("chat", &user).unwrap();
    assert_eq!(
        flags.evaluate("chat", &user, EvalOptions::default()).reason,
        Reason::Budget,
        "two reservations of $0.50 fill the budget"
    );
    drop(first);
    drop(second);
    assert_eq!(
        flags.evaluate("chat", &user, EvalOptions::default()).reason,
        Reason::Default
    );
    // A failed attempt that reported no cost is charged nothing.
    let mut run = flags.start_run("chat", &user).unwrap();
    assert!(matches!(run.next_step(), Step::Call { .. }));
    run.fail(ErrorKind::Server, None, Usage::default());
    assert_eq!(flags.budget_states()[0]["spent"], 0.0);
}

#[test]
fn a_cancelled_attempt_gives_its_reservation_back_at_once_and_is_recorded_as_cancelled() {
    let (flags, _) = flags_at(json!({ "flags": { "chat": {
        "variants": { "opus": { "max_tokens": 1000, "cost_per_1k_output_tokens": 0.5 },
                      "human": { "ai": false } },
        "default": "opus",
        "fallback": ["human"],
        "budgets": [{ "id": "cap", "max_cost": 1.0, "window": "1h", "action": { "serve": "human" } }]
    } } }));
    let events: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = Arc::clone(&events);
    flags.add_event_sink(Arc::new(CallbackSink(move |e: &Event| {
        sink.lock().unwrap().push(e.clone())
    })));
    let user = json!({ "user_id": "u" });
    let mut runs: Vec<_> = (0..2)
        .map(|_| flags.start_run("chat", &user).unwrap())
        .collect();
    for run in &mut runs {
        assert!(matches!(run.next_step(), Step::Call { .. }));
    }
    assert_eq!(
        flags.evaluate("chat", &user, EvalOptions::default()).reason,
        Reason::Budget
    );
    // Kept alive (as a traceback keeps a frame), yet the room is back.
    runs[0].cancel();
    runs[1].cancel();
    assert_eq!(
        flags.evaluate("chat", &user, EvalOptions::default()).reason,
        Reason::Default
    );
    assert_eq!(
        runs[0].next_step(),
        Step::Exhausted,
        "a cancelled run is over"
    );
    let outcomes: Vec<Value> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "outcome")
        .cloned()
        .collect();
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes
        .iter()
        .all(|e| e["outcome"] == "cancelled" && e["error_kind"].is_null()));
    assert!(
        flags.metrics()["chat"].get("opus").is_none(),
        "a cancellation feeds no metric"
    );
    assert_eq!(flags.budget_states()[0]["spent"], 0.0);
}

fn sticky_doc(extra_variants: Value) -> Value {
    let mut variants = json!({
        "stable": { "model": "s" },
        "candidate": { "model": "c" },
        "human": { "ai": false }
    });
    for (k, v) in extra_variants.as_object().unwrap() {
        variants[k] = v.clone();
    }
    json!({ "revision": "s1", "flags": { "chat": {
        "variants": variants,
        "default": "stable",
        "kill": { "active": false, "serve": "human" },
        "fallback": ["stable", "human"],
        "sticky": { "by": "conversation_id", "ttl": "1h" },
        "rules": [{ "id": "canary", "ramp": { "variant": "candidate", "baseline": "stable", "start": T0,
                    "steps": [{ "percent": 50, "hold": "1h" }, { "percent": 100 }] } }],
        "guardrails": [{ "id": "errors", "metric": "error_rate", "max": 0.05, "min_samples": 20,
                         "action": "fallback", "variants": ["candidate"] }]
    } } })
}

/// A unit that the 50 % step leaves on the baseline.
fn unit_outside_half(flags: &Flags) -> String {
    (0..1000)
        .map(|i| format!("user-{i}"))
        .find(|u| {
            flags
                .evaluate("chat", &json!({ "user_id": u }), EvalOptions::default())
                .variant_id()
                == Some("stable")
        })
        .unwrap()
}

#[test]
fn a_pin_holds_while_the_ramp_moves_and_expires_with_its_ttl() {
    let (flags, clock) = flags_at(sticky_doc(json!({})));
    let user = unit_outside_half(&flags);
    let conversation = json!({ "user_id": user, "conversation_id": "c1" });
    let first = flags.evaluate("chat", &conversation, EvalOptions::default());
    assert_eq!(
        (first.variant_id(), first.reason),
        (Some("stable"), Reason::Split)
    );
    // Later: the ramp is at 100 %; the conversation keeps its variant.
    clock.advance(HOUR - 1);
    let ramp_at_100 = t0() + 2 * HOUR;
    let pinned = flags.evaluate("chat", &conversation, EvalOptions::at(ramp_at_100));
    assert_eq!(
        (pinned.variant_id(), pinned.reason),
        (Some("stable"), Reason::Sticky)
    );
    assert_eq!(pinned.rule_index, None);
    let fresh = flags.evaluate(
        "chat",
        &json!({ "user_id": user, "conversation_id": "c2" }),
        EvalOptions::at(ramp_at_100),
    );
    assert_eq!(fresh.variant_id(), Some("candidate"));
    // The TTL runs from the first decision.
    clock.advance(1);
    let expired = flags.evaluate("chat", &conversation, EvalOptions::at(ramp_at_100));
    assert_eq!(
        (expired.variant_id(), expired.reason),
        (Some("candidate"), Reason::Split)
    );
    assert_eq!(flags.status().to_json()["sticky_pins"], 2);
}

#[test]
fn safety_beats_stickiness_kill_trip_and_a_variant_that_is_gone() {
    let (flags, _) = flags_at(sticky_doc(json!({ "extra": { "model": "x" } })));
    let user = (0..1000)
        .map(|i| format!("user-{i}"))
        .find(|u| {
            flags
                .evaluate("chat", &json!({ "user_id": u }), EvalOptions::default())
                .variant_id()
                == Some("candidate")
        })
        .unwrap();
    let conversation = json!({ "user_id": user, "conversation_id": "c1" });
    assert_eq!(
        flags
            .evaluate("chat", &conversation, EvalOptions::default())
            .variant_id(),
        Some("candidate")
    );
    // A kill wins; when it lifts, the pin serves again.
    flags.kill(Some("chat"), Some("drill"));
    assert_eq!(
        flags
            .evaluate("chat", &conversation, EvalOptions::default())
            .reason,
        Reason::Killed
    );
    flags.unkill(Some("chat"));
    assert_eq!(
        flags
            .evaluate("chat", &conversation, EvalOptions::default())
            .reason,
        Reason::Sticky
    );
    // A tripped guardrail on the pinned variant breaks the pin; the re-route is pinned.
    for i in 0..20 {
        let mut run = flags
            .start_run(
                "chat",
                &json!({ "user_id": user, "conversation_id": format!("t{i}") }),
            )
            .unwrap();
        if let Step::Call { .. } = run.next_step() {
            run.fail(ErrorKind::Server, None, Usage::default());
        }
    }
    // (explain reads the pin and writes nothing: look before the evaluation replaces it.)
    let explained = flags
        .explain("chat", &conversation, EvalOptions::default())
        .to_value();
    assert!(explained["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["step"] == "sticky"
            && s["broken"]
                .as_str()
                .is_some_and(|b| b.contains("guardrail \"errors\""))));
    let broken = flags.evaluate("chat", &conversation, EvalOptions::default());
    assert_eq!(
        (broken.variant_id(), broken.reason),
        (Some("stable"), Reason::Guardrail)
    );
    // The re-routed variant is the conversation's pin from now on.
    assert_eq!(
        flags
            .evaluate("chat", &conversation, EvalOptions::default())
            .reason,
        Reason::Sticky
    );
    // A pin to a variant the new document no longer has is replaced.
    let (flags, _) = flags_at(sticky_doc(json!({ "extra": { "model": "x" } })));
    let pinned_to_extra = json!({ "flags": { "chat": {
        "variants": { "stable": {}, "extra": {} }, "default": "extra",
        "sticky": { "by": "conversation_id", "ttl": "1h" } } } });
    flags.replace(Document::from_value(pinned_to_extra).unwrap());
    assert_eq!(
        flags
            .evaluate("chat", &conversation, EvalOptions::default())
            .variant_id(),
        Some("extra")
    );
    let without_extra = json!({ "flags": { "chat": {
        "variants": { "stable": {} }, "default": "stable",
        "sticky": { "by": "conversation_id", "ttl": "1h" } } } });
    flags.replace(Document::from_value(without_extra).unwrap());
    let replaced = flags.evaluate("chat", &conversation, EvalOptions::default());
    assert_eq!(
        (replaced.variant_id(), replaced.reason),
        (Some("stable"), Reason::Default)
    );
}

fn shadow_doc(cap: Option<f64>) -> Value {
    let mut shadow = json!({ "variant": "candidate", "percent": 50 });
    if let Some(cap) = cap {
        shadow["max_cost_per_hour"] = json!(cap);
    }
    json!({ "revision": "sh1", "flags": { "chat": {
        "variants": {
            "stable": { "model": "s" },
            "candidate": { "model": "c", "max_tokens": 1000, "cost_per_1k_output_tokens": 0.01 }
        },
        "default": "stable",
        "shadow": shadow,
        "guardrails": [{ "id": "errors", "metric": "error_rate", "max": 0.05, "min_samples": 20,
                         "action": "kill", "variants": ["candidate"] }]
    } } })
}

#[test]
fn shadows_are_drawn_by_their_own_salt_recorded_beside_the_served_run_and_capped() {
    let (flags, _) = flags_at(shadow_doc(Some(0.05)));
    let events = collect_events(&flags);
    let drawn: Vec<bool> = (0..400)
        .map(|i| {
            flags
                .evaluate(
                    "chat",
                    &json!({ "user_id": format!("u{i}") }),
                    EvalOptions::default(),
                )
                .shadow
                .is_some()
        })
        .collect();
    let share = drawn.iter().filter(|d| **d).count() as f64 / drawn.len() as f64;
    assert!((0.4..0.6).contains(&share), "about half: {share}");
    let (other, _) = flags_at(shadow_doc(None));
    let again: Vec<bool> = (0..400)
        .map(|i| {
            other
                .evaluate(
                    "chat",
                    &json!({ "user_id": format!("u{i}") }),
                    EvalOptions::default(),
                )
                .shadow
                .is_some()
        })
        .collect();
    assert_eq!(drawn, again, "the draw is deterministic by unit");

    let shadowed: Vec<String> = (0..400)
        .filter(|&i| drawn[i])
        .map(|i| format!("u{i}"))
        .collect();
    let mut shadow_runs = 0;
    for user in &shadowed {
        let ctx = json!({ "user_id": user });
        let mut run = flags.start_run("chat", &ctx).unwrap();
        let shadow = run.shadow_run();
        let Some(mut shadow) = shadow else {
            break;
        };
        shadow_runs += 1;
        assert!(run.wants_output() && shadow.wants_output());
        // The shadow fails; the served run is unaffected.
        assert!(matches!(shadow.next_step(), Step::Call { .. }));
        shadow.set_output(json!("candidate says hi"));
        shadow.fail(
            ErrorKind::Server,
            Some("boom"),
            Usage {
                output_tokens: Some(1000),
                ..Usage::default()
            },
        );
        assert!(matches!(run.next_step(), Step::Call { .. }));
        run.set_output(json!("stable says hi"));
        run.succeed(Usage::default());
        assert_eq!(run.served(), Some(0));
        assert!(!run.fallback_used());
    }
    // $0.01 reserved per shadow against a $0.05 cap: five shadows, then no more.
    assert_eq!(shadow_runs, 5);
    let events = events.lock().unwrap();
    let outcomes: Vec<&Event> = events.iter().filter(|e| e["type"] == "outcome").collect();
    let first_run = outcomes[0]["run_id"].clone();
    let pair: Vec<&&Event> = outcomes
        .iter()
        .filter(|e| e["run_id"] == first_run)
        .collect();
    assert_eq!(pair.len(), 2);
    assert_eq!(pair[0]["shadow"], true);
    assert_eq!(pair[0]["variant"], "candidate");
    assert_eq!(pair[0]["output"], "candidate says hi");
    assert_eq!(pair[1]["shadow"], false);
    assert_eq!(pair[1]["output"], "stable says hi");
    // The candidate's metrics show how it did in the shadow (requests include shadow ones).
    let metrics = flags.metrics();
    assert_eq!(metrics["chat"]["candidate"]["shadow_requests"], 5);
    assert_eq!(metrics["chat"]["candidate"]["errors"], 5);
}

#[test]
fn no_shadow_when_killed_or_when_the_candidate_is_served() {
    let (flags, _) = flags_at(shadow_doc(None));
    let user = (0..100)
        .map(|i| json!({ "user_id": format!("u{i}") }))
        .find(|c| {
            flags
                .evaluate("chat", c, EvalOptions::default())
                .shadow
                .is_some()
        })
        .unwrap();
    flags.kill(Some("chat"), None);
    assert_eq!(
        flags.evaluate("chat", &user, EvalOptions::default()).shadow,
        None
    );
    flags.unkill(None);
    let serves_candidate = json!({ "flags": { "chat": {
        "variants": { "stable": {}, "candidate": {} }, "default": "candidate",
        "shadow": { "variant": "candidate", "percent": 100 } } } });
    flags.replace(Document::from_value(serves_candidate).unwrap());
    assert_eq!(
        flags.evaluate("chat", &user, EvalOptions::default()).shadow,
        None
    );
}

#[test]
fn lint_warns_about_variants_a_cost_budget_cannot_reserve() {
    let doc = Document::from_value(json!({ "flags": { "chat": {
        "variants": {
            "priced": { "max_tokens": 100, "cost_per_1k_output_tokens": 0.01 },
            "unpriced": { "model": "m" },
            "human": { "ai": false }
        },
        "default": "priced",
        "fallback": ["unpriced", "human"],
        "budgets": [{ "max_cost": 1.0, "window": "1h", "action": { "serve": "human" } }]
    } } }))
    .unwrap();
    let warnings = flagrail_core::lint::lint(&doc, t0());
    let found: Vec<(&str, &str)> = warnings.iter().map(|w| (w.path.as_str(), w.code)).collect();
    assert_eq!(found, [("flags.chat.variants.unpriced", "UNPRICED_BUDGET")]);
}

#[test]
fn feedback_finds_the_recent_runs_and_forgets_the_oldest() {
    use flagrail_core::runtime::MAX_RECENT_RUNS;
    let (flags, _) = flags_at(json!({ "flags": { "f": {
        "variants": { "a": {} }, "default": "a" } } }));
    let user = json!({ "user_id": "u" });
    let run_id = |flags: &Flags| {
        let mut run = flags.start_run("f", &user).unwrap();
        assert!(matches!(run.next_step(), Step::Call { .. }));
        run.succeed(Usage::default());
        run.run_id().to_string()
    };
    let first = run_id(&flags);
    // A quality now: the score at the end would still count if the run were remembered.
    assert!(flags.feedback(&first, None, Some(0.5)).unwrap());
    // A well-formed id of no run, and the same id with its random half changed, are unknown.
    assert!(!flags.feedback(&"0".repeat(32), Some(1.0), None).unwrap());
    let mut forged = first.clone();
    forged.replace_range(0..1, if first.starts_with('0') { "1" } else { "0" });
    assert!(!flags.feedback(&forged, Some(1.0), None).unwrap());
    for _ in 0..MAX_RECENT_RUNS - 1 {
        run_id(&flags);
    }
    let last = run_id(&flags);
    assert!(flags.feedback(&last, None, Some(0.5)).unwrap());
    assert!(
        !flags.feedback(&first, Some(1.0), None).unwrap(),
        "{MAX_RECENT_RUNS} later runs overwrote the first"
    );
}
