//! How fast a guardrail trips when a variant starts failing, whatever its window already holds.
//!
//! Deterministic (a manual clock and a seeded generator), so the figures in docs/benchmarks.md
//! come out the same on every machine:
//!
//!     cargo run --release -p flagrail-core --example guardrail_onset
//!
//! The guardrail is the documented default (`5m` window, `min_samples: 20`) with `max: 0.25`;
//! one call every 10 ms of the manual clock (20,000 calls span 200 s, inside the window).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use flagrail_core::live::ManualClock;
use flagrail_core::live::{Step, Usage};
use flagrail_core::runtime::{CallbackSink, ErrorKind, Event};
use flagrail_core::{Document, Flags};
use serde_json::json;

const START: i64 = 1_800_000_000_000;
const STEP_MS: i64 = 10;

struct Bench {
    flags: Flags,
    clock: Arc<ManualClock>,
    tripped: Arc<AtomicBool>,
    calls: u64,
}

impl Bench {
    fn new() -> Bench {
        let doc = json!({ "flags": { "bot": {
            "variants": { "cand": { "model": "m" }, "human": { "ai": false } },
            "default": "cand",
            "fallback": ["human"],
            "guardrails": [{ "metric": "error_rate", "max": 0.25, "action": "fallback",
                             "variants": ["cand"] }]
        } } });
        let clock = Arc::new(ManualClock::new(START));
        let document = Document::from_value(doc).expect("the bench document loads");
        let flags = Flags::from_document_with_clock(document, clock.clone());
        let tripped = Arc::new(AtomicBool::new(false));
        let seen = tripped.clone();
        flags.add_event_sink(Arc::new(CallbackSink(move |e: &Event| {
            if e["type"] == "guardrail_trip" {
                seen.store(true, Ordering::SeqCst);
            }
        })));
        Bench {
            flags,
            clock,
            tripped,
            calls: 0,
        }
    }

    /// One call whose attempt on `cand` fails when `fail` says so; `true` once tripped.
    fn call(&mut self, fail: bool) -> bool {
        self.calls += 1;
        self.clock.set(START + self.calls as i64 * STEP_MS);
        let user = format!("u{}", self.calls);
        let mut run = self
            .flags
            .start_run("bot", &json!({ "user_id": user }))
            .expect("the flag exists");
        if let Step::Call { .. } = run.next_step() {
            let usage = Usage {
                latency_ms: Some(5.0),
                ..Usage::default()
            };
            if fail {
                run.fail(ErrorKind::Server, None, usage);
            } else {
                run.succeed(usage);
            }
        }
        self.tripped.swap(false, Ordering::SeqCst)
    }
}

/// splitmix64: a seeded stream of uniform draws in [0, 1).
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn main() {
    println!("## Outage onset: healthy calls already in the window, then every call fails");
    println!("| healthy calls already in the window | failures before the trip |");
    println!("|---|---|");
    for healthy in [0u64, 1_000, 20_000] {
        let mut bench = Bench::new();
        for _ in 0..healthy {
            assert!(!bench.call(false), "a healthy variant tripped");
        }
        let failures = (1..=100_000u64).find(|_| bench.call(true));
        println!(
            "| {healthy} | {} |",
            failures.map_or("none".into(), |f| f.to_string())
        );
    }

    println!();
    println!("## A rise from 1 % to 30 % errors after 20,000 calls at 1 % (20 seeds)");
    let mut after: Vec<u64> = Vec::new();
    for seed in 0..20u64 {
        let mut bench = Bench::new();
        let mut draws = Draws(seed);
        let mut early = false;
        for _ in 0..20_000 {
            early |= bench.call(draws.next() < 0.01);
        }
        assert!(!early, "seed {seed}: tripped at 1 %");
        let calls = (1..=100_000u64).find(|_| bench.call(draws.next() < 0.30));
        after.push(calls.unwrap_or(u64::MAX));
    }
    after.sort_unstable();
    println!(
        "calls after the rise until the trip: min {}, median {}, max {}",
        after[0],
        after[after.len() / 2],
        after[after.len() - 1]
    );

    println!();
    println!("## False trips: 200,000 calls (2,000 s) at a steady error rate under max: 0.25");
    for rate in [0.01, 0.05, 0.10, 0.15, 0.20] {
        let mut bench = Bench::new();
        let mut draws = Draws(42);
        let trips = (0..200_000)
            .filter(|_| bench.call(draws.next() < rate))
            .count();
        println!("error rate {:>4.0} %: {trips} trips", rate * 100.0);
    }
}
