//! The evaluation benchmark of docs/benchmarks.md for the Rust core.
//!
//!   cargo bench -p flagrail-core --bench evaluate              # criterion + RESULT lines
//!   N=200000 REPS=7 cargo bench -p flagrail-core --bench evaluate
//!
//! Scenario: flag `chat-model`, rule `segment eq "internal"` -> v3, then 90/5/5 control/v2/v3
//! by user_id; users `user-<i>`, every 10th internal. One evaluation = build the context the way
//! a handler would (two borrowed attributes), evaluate, read the variant id.

use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use flagrail_core::EvalOptions;
use flagrail_core::{Attr, Flags};

const DOCUMENT: &str = r#"{
  "revision": "bench-1",
  "flags": { "chat-model": {
    "bucket_by": "user_id",
    "variants": { "control": { "model": "model-a" }, "v2": { "model": "model-b" }, "v3": { "model": "model-c" } },
    "default": "control",
    "rules": [
      { "id": "internal", "when": { "attr": "segment", "op": "eq", "value": "internal" }, "serve": "v3" },
      { "id": "split", "split": [ { "variant": "control", "percent": 90 },
                                  { "variant": "v2", "percent": 5 }, { "variant": "v3", "percent": 5 } ] }
    ]
  }}
}"#;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn users(n: usize) -> Vec<(String, &'static str)> {
    (0..n)
        .map(|i| {
            (
                format!("user-{i}"),
                if i % 10 == 0 { "internal" } else { "external" },
            )
        })
        .collect()
}

#[inline]
fn evaluate_one(flags: &Flags, uid: &str, segment: &str) -> usize {
    let context = [("user_id", Attr::Str(uid)), ("segment", Attr::Str(segment))];
    let snapshot = flags.snapshot();
    let decision = snapshot.evaluate("chat-model", &context, EvalOptions::default());
    decision.variant_id().map_or(0, str::len)
}

fn correctness(flags: &Flags, users: &[(String, &'static str)]) {
    let mut counts = std::collections::HashMap::new();
    let mut external = 0usize;
    for (uid, segment) in users {
        let e = flags.evaluate(
            "chat-model",
            &[("user_id", Attr::Str(uid)), ("segment", Attr::Str(segment))],
            EvalOptions::default(),
        );
        let id = e.variant_id().unwrap_or("");
        if *segment == "internal" {
            assert_eq!(id, "v3", "internal users get v3");
        } else {
            *counts.entry(id.to_string()).or_insert(0usize) += 1;
            external += 1;
        }
    }
    for (variant, expected) in [("control", 90.0), ("v2", 5.0), ("v3", 5.0)] {
        let share = counts.get(variant).copied().unwrap_or(0) as f64 * 100.0 / external as f64;
        assert!(
            (share - expected).abs() <= 1.0,
            "{variant}: {share:.2} % vs {expected} %"
        );
    }
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The protocol of docs/benchmarks.md: correctness pass, warm-up pass, REPS timed passes, median.
fn protocol(flags: &Flags, users: &[(String, &'static str)], reps: usize) {
    correctness(flags, users);
    let pass = || {
        let start = Instant::now();
        let mut sink = 0usize;
        for (uid, segment) in users {
            sink = sink.wrapping_add(evaluate_one(flags, black_box(uid), black_box(segment)));
        }
        black_box(sink);
        start.elapsed().as_nanos() as f64 / users.len() as f64
    };
    pass();
    let mut times: Vec<f64> = (0..reps).map(|_| pass()).collect();
    let reps_text: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "RESULT {{\"name\": \"rust-core-evaluate\", \"ns_per_eval\": {median:.1}, \"reps\": [{}], \"peak_rss_mb\": {:.1}, \"n\": {}}}",
        reps_text.join(", "),
        peak_rss_mb(),
        users.len()
    );
}

fn main() {
    let n = env_usize("N", 200_000);
    let reps = env_usize("REPS", 7).max(5);
    let flags = Flags::from_json(DOCUMENT).expect("bench document is valid");
    let users = users(n);
    protocol(&flags, &users, reps);

    let mut criterion = Criterion::default().configure_from_args();
    let mut i = 0usize;
    criterion.bench_function("evaluate chat-model (snapshot per call)", |b| {
        b.iter(|| {
            let (uid, segment) = &users[i % users.len()];
            i += 1;
            evaluate_one(&flags, uid, segment)
        })
    });
    let snapshot = flags.snapshot();
    criterion.bench_function("evaluate chat-model (shared snapshot)", |b| {
        b.iter(|| {
            let (uid, segment) = &users[i % users.len()];
            i += 1;
            let context = [("user_id", Attr::Str(uid)), ("segment", Attr::Str(segment))];
            snapshot
                .evaluate("chat-model", &context, EvalOptions::default())
                .variant_index
        })
    });
    criterion.bench_function("evaluate chat-model (owned result)", |b| {
        b.iter(|| {
            let (uid, segment) = &users[i % users.len()];
            i += 1;
            let context = [("user_id", Attr::Str(uid)), ("segment", Attr::Str(segment))];
            flags
                .evaluate("chat-model", &context, EvalOptions::default())
                .variant_index
        })
    });
    criterion.final_summary();
}
