//! How long a guardrail trip decided on fleet totals takes to reach every process: 8 handles
//! (each its own `FleetState`: process id, flush and read threads) on one local redis-server;
//! each records 3 failures of the candidate (below `min_samples` = 20 alone, 24 together); the
//! clock starts after the last failure and stops when the last handle serves the fallback.
//! The figure includes the flush interval (evidence reaching Redis), the fleet decision and
//! the read that brings it back to every process.
//!
//! `cargo run --release -p flagrail-fleet --example trip_propagation [REPS]`; prints JSON.

use std::time::{Duration, Instant};

use flagrail_core::live::{Step, Usage};
use flagrail_core::runtime::ErrorKind;
use flagrail_core::Flags;
use flagrail_fleet::shared::{FleetOptions, FleetState};
use flagrail_fleet::testing::RedisServer;
use serde_json::json;

const PROCESSES: usize = 8;
const FAILURES_EACH: usize = 3;
const GIVE_UP: Duration = Duration::from_secs(10);

fn document() -> String {
    json!({ "revision": "trip-bench",
        "flags": { "candidate": {
            "variants": { "new": { "model": "new" }, "old": { "model": "old" } },
            "default": "new",
            "fallback": ["old"],
            "guardrails": [ { "id": "errors", "metric": "error_rate", "max": 0.05,
                              "min_samples": 20, "action": "fallback", "variants": ["new"] } ] } } })
    .to_string()
}

fn fail_once(flags: &Flags, unit: usize) {
    let context = json!({ "user_id": format!("u{unit}") });
    let Ok(mut run) = flags.start_run("candidate", &context) else {
        return;
    };
    if let Step::Call { .. } = run.next_step() {
        run.fail(ErrorKind::Server, Some("server error"), Usage::default());
        if let Step::Call { .. } = run.next_step() {
            run.succeed(Usage::default());
        }
    }
}

fn tripped(flags: &Flags) -> bool {
    flags.guardrail_trip("candidate", "new", "errors").is_some()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(20);
    let mut first_ms = Vec::new();
    let mut last_ms = Vec::new();
    for _ in 0..reps {
        let server = RedisServer::start().expect("redis-server");
        let fleet: Vec<(Flags, std::sync::Arc<FleetState>)> = (0..PROCESSES)
            .map(|_| {
                let flags = Flags::from_json(&document()).expect("document");
                let state = FleetState::attach(&flags, &server.url(), FleetOptions::default())
                    .expect("attach");
                (flags, state)
            })
            .collect();
        let connected = Instant::now();
        while !fleet.iter().all(|(_, state)| state.is_connected()) {
            assert!(connected.elapsed() < GIVE_UP, "never connected");
            std::thread::sleep(Duration::from_millis(5));
        }
        for (index, (flags, _)) in fleet.iter().enumerate() {
            for failure in 0..FAILURES_EACH {
                fail_once(flags, index * 100 + failure);
            }
        }
        let start = Instant::now();
        let mut first = None;
        loop {
            let seen = fleet.iter().filter(|(flags, _)| tripped(flags)).count();
            if seen > 0 && first.is_none() {
                first = Some(start.elapsed());
            }
            if seen == PROCESSES {
                break;
            }
            assert!(
                start.elapsed() < GIVE_UP,
                "the trip never reached every process"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let last = start.elapsed();
        first_ms.push(first.unwrap_or(last).as_secs_f64() * 1e3);
        last_ms.push(last.as_secs_f64() * 1e3);
        for (_, state) in &fleet {
            state.close();
        }
    }
    first_ms.sort_by(f64::total_cmp);
    last_ms.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "processes": PROCESSES, "reps": reps,
            "first_process_ms": { "p50": percentile(&first_ms, 50.0), "max": percentile(&first_ms, 100.0) },
            "last_process_ms": { "p50": percentile(&last_ms, 50.0), "p99": percentile(&last_ms, 99.0), "max": percentile(&last_ms, 100.0) },
        })
    );
}
