//! What shared fleet state costs a `call`: the same budgeted call (count the request, evaluate,
//! succeed) on a handle without and with `FleetState` attached to a local redis-server. The
//! fleet's hot path is a lease looked up in memory; the round trips happen on its thread.
//!
//! Run by bench/fleet_state.py (`cargo run --release -p flagrail-fleet --example
//! call_overhead`); prints one JSON object.

use std::time::{Duration, Instant};

use flagrail_core::live::{Step, Usage};
use flagrail_core::Flags;
use flagrail_fleet::shared::{FleetOptions, FleetState};
use flagrail_fleet::testing::RedisServer;
use serde_json::json;

const USERS: usize = 1_000;
const BATCH: usize = 1_000;
const BATCHES: usize = 200;

fn document() -> String {
    json!({ "revision": "bench",
        "flags": { "chat": {
            "variants": { "opus": { "model": "opus" }, "haiku": { "model": "haiku" } },
            "default": "opus",
            "budgets": [ { "id": "per-user", "per": "user_id", "max_requests": 1_000_000_000u64,
                           "window": "1h", "action": { "serve": "haiku" } } ] } } })
    .to_string()
}

fn one_call(flags: &Flags, context: &serde_json::Value) {
    let mut run = match flags.start_run("chat", context) {
        Ok(run) => run,
        Err(error) => panic!("start_run: {error}"),
    };
    if let Step::Call { .. } = run.next_step() {
        run.succeed(Usage::default());
    }
}

/// Median nanoseconds per call over `BATCHES` batches of `BATCH` calls.
fn measure(flags: &Flags, contexts: &[serde_json::Value]) -> f64 {
    for context in contexts {
        one_call(flags, context);
    }
    let mut per_call: Vec<f64> = (0..BATCHES)
        .map(|b| {
            let start = Instant::now();
            for i in 0..BATCH {
                one_call(flags, &contexts[(b * BATCH + i) % contexts.len()]);
            }
            start.elapsed().as_nanos() as f64 / BATCH as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[per_call.len() / 2]
}

fn main() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("redis-server: {e}"));
    let contexts: Vec<serde_json::Value> = (0..USERS)
        .map(|i| json!({ "user_id": format!("user-{i}") }))
        .collect();
    let plain = Flags::from_json(&document()).unwrap_or_else(|e| panic!("{e}"));
    let shared = Flags::from_json(&document()).unwrap_or_else(|e| panic!("{e}"));
    let fleet = FleetState::attach(&shared, &server.url(), FleetOptions::default())
        .unwrap_or_else(|e| panic!("attach: {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fleet.is_connected() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Alternate the two handles so that load on the machine hits both alike.
    let mut without = Vec::new();
    let mut with = Vec::new();
    for _ in 0..3 {
        without.push(measure(&plain, &contexts));
        with.push(measure(&shared, &contexts));
    }
    without.sort_by(f64::total_cmp);
    with.sort_by(f64::total_cmp);
    let status = fleet.status_json(0);
    println!(
        "{}",
        json!({
            "calls_per_sample": BATCH * BATCHES,
            "users": USERS,
            "median_ns_without_fleet": without[1],
            "median_ns_with_fleet": with[1],
            "overhead_ns": with[1] - without[1],
            "fleet_connected": fleet.is_connected(),
            "fleet_flushes": status["flushes"],
        })
    );
    fleet.close();
}
