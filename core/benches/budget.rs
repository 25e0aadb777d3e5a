//! Call overhead with a per-unit budget, however many units it tracks (issue 13, "budgets at
//! scale"): one call = `start_run` (evaluate, count the request, reserve the estimate under the
//! budget lock) + `next_step` + `succeed` (settle the reservation against the actual cost).
//!
//!   cargo bench -p flagrail-core --bench budget
//!
//! `one unit`: every call from the same user. `1M units`: calls cycle through 1,000,000
//! distinct users, so the per-unit budgets stay full (100,000 tracked scopes each, the cap) and
//! every call creates a scope and forgets the oldest one. Prints a `RESULT` line per case and
//! the ratio.

use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use flagrail_core::live::{Step, Usage};
use flagrail_core::{Attr, Flags};

const DOCUMENT: &str = r#"{
  "revision": "bench-budget",
  "flags": { "bot": {
    "bucket_by": "user_id",
    "variants": {
      "big": { "model": "m", "max_tokens": 1000, "cost_per_1k_input_tokens": 0.003,
               "cost_per_1k_output_tokens": 0.015 },
      "small": { "model": "s" }
    },
    "default": "big",
    "budgets": [
      { "id": "requests", "per": "user_id", "max_requests": 1000000000, "window": "1h",
        "action": { "serve": "small" } },
      { "id": "cost", "per": "user_id", "max_cost": 1000000000.0, "window": "1h",
        "action": { "serve": "small" } }
    ]
  }}
}"#;

const UNITS: usize = 1_000_000;

fn call(flags: &Flags, user: &str) -> usize {
    let context = [("user_id", Attr::Str(user))];
    let Ok(mut run) = flags.start_run("bot", &context[..]) else {
        return 0;
    };
    let variant = match run.next_step() {
        Step::Call { variant, .. } => variant,
        _ => return 0,
    };
    run.succeed(Usage {
        cost: Some(0.001),
        ..Usage::default()
    });
    variant
}

fn timed(flags: &Flags, users: &[String], calls: usize, offset: &mut usize) -> f64 {
    let started = Instant::now();
    for _ in 0..calls {
        let user = &users[*offset % users.len()];
        *offset += 1;
        black_box(call(flags, user));
    }
    started.elapsed().as_nanos() as f64 / calls as f64
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let flags = Flags::from_json(DOCUMENT).expect("the bench document loads");
    let one = vec!["user-0".to_string()];
    let many: Vec<String> = (0..UNITS).map(|i| format!("user-{i}")).collect();
    let reps = 5;
    let calls = 200_000;

    // Fill: every unit once, so the budgets are at their cap before timing.
    let mut offset = 0;
    timed(&flags, &many, UNITS, &mut offset);
    let one_flags = Flags::from_json(DOCUMENT).expect("the bench document loads");
    let mut one_offset = 0;
    timed(&one_flags, &one, calls, &mut one_offset);

    let mut results = Vec::new();
    for (name, flags, users, offset) in [
        ("one unit", &one_flags, &one, &mut one_offset),
        ("1M units", &flags, &many, &mut offset),
    ] {
        let passes: Vec<f64> = (0..reps)
            .map(|_| timed(flags, users, calls, offset))
            .collect();
        let ns = median(passes.clone());
        println!(
            "RESULT {{\"name\": \"budget call, {name}\", \"ns_per_call\": {ns:.1}, \"reps\": {passes:.1?}}}"
        );
        results.push(ns);
    }
    println!("ratio 1M units / one unit: {:.2}", results[1] / results[0]);
    let status = flags.metrics();
    println!("tracked scopes: {}", status["$budgets"]);

    let mut criterion = Criterion::default().configure_from_args();
    let mut i = 0usize;
    criterion.bench_function("budget call, one unit", |b| {
        b.iter(|| black_box(call(&one_flags, &one[0])))
    });
    criterion.bench_function("budget call, 1M units", |b| {
        b.iter(|| {
            i += 1;
            black_box(call(&flags, &many[i % UNITS]))
        })
    });
    criterion.final_summary();
}
