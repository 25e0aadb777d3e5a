//! Shared fleet state against a real redis-server (and a local 3-node Redis Cluster): budget
//! leases under concurrent load, a guardrail tripped on fleet totals, pins, metrics, and
//! Redis killed mid-traffic. Several handles in one test process stand for the processes of
//! a fleet: each attaches its own `FleetState` (its own process id, leases and thread).
//!
//! Every wait is a bounded poll (no wall-clock assertion): a condition is awaited for at most
//! a few seconds and the test fails if it never holds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flagrail_core::live::{Step, Usage};
use flagrail_core::runtime::ErrorKind;
use flagrail_core::{Flags, Reason};
use flagrail_fleet::shared::budget::lease_size;
use flagrail_fleet::shared::{FleetOptions, FleetState};
use flagrail_fleet::testing::{RedisCluster, RedisServer};
use serde_json::{json, Value};

const LIMIT: usize = 100;
const PROCESSES: usize = 4;

fn document() -> Value {
    json!({ "revision": "fleet-1",
        "flags": {
            "chat": {
                "variants": {
                    "opus": { "model": "opus" },
                    "haiku": { "model": "haiku" },
                    "human": { "ai": false }
                },
                "default": "opus",
                "budgets": [ { "id": "per-user", "per": "user_id", "max_requests": LIMIT,
                               "window": "1h", "action": { "serve": "haiku" } } ]
            },
            "candidate": {
                "variants": { "new": { "model": "new" }, "old": { "model": "old" } },
                "default": "new",
                "fallback": ["old"],
                "guardrails": [ { "id": "errors", "metric": "error_rate", "max": 0.05,
                                  "min_samples": 20, "action": "fallback", "variants": ["new"] } ]
            }
        }
    })
}

fn fleet(url: &str, n: usize) -> Vec<(Flags, Arc<FleetState>)> {
    (0..n)
        .map(|_| {
            let flags = Flags::from_json(&document().to_string()).unwrap();
            let state = FleetState::attach(&flags, url, FleetOptions::default()).unwrap();
            (flags, state)
        })
        .collect()
}

fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// One call of `chat` for `user`: whether the budget let it through (not BUDGET).
fn served(flags: &Flags, user: &str) -> bool {
    let ctx = json!({ "user_id": user });
    let mut run = flags.start_run("chat", &ctx).unwrap();
    let admitted = run.evaluation().reason != Reason::Budget;
    if let Step::Call { .. } = run.next_step() {
        run.succeed(Usage::default());
    }
    admitted
}

fn budget_bound() -> usize {
    let budget = Flags::from_json(&document().to_string())
        .unwrap()
        .document()
        .flags()[0]
        .budgets[0]
        .clone();
    PROCESSES
        * lease_size(
            &budget,
            flagrail_fleet::shared::budget::DEFAULT_LEASE_FRACTION,
        ) as usize
}

fn budget_under_load(url: &str) {
    let fleet = fleet(url, PROCESSES);
    wait_until("every process connected", Duration::from_secs(10), || {
        fleet.iter().all(|(_, s)| s.is_connected())
    });
    let served_total = Arc::new(AtomicUsize::new(0));
    // 2,000 calls of one user spread over 4 processes × 2 threads, in bursts with short
    // pauses so that leases are refilled while the load goes on.
    thread::scope(|scope| {
        for (flags, _) in &fleet {
            for _ in 0..2 {
                let served_total = Arc::clone(&served_total);
                scope.spawn(move || {
                    for burst in 0..25 {
                        for _ in 0..10 {
                            if served(flags, "alice") {
                                served_total.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        if burst % 5 == 4 {
                            thread::sleep(Duration::from_millis(60));
                        }
                    }
                });
            }
        }
    });
    let served_total = served_total.load(Ordering::Relaxed);
    let bound = budget_bound();
    assert!(
        served_total <= LIMIT + bound,
        "served {served_total} > limit {LIMIT} + bound {bound}"
    );
    assert!(served_total >= 1, "nothing served");
    // Every call is reported, served or downgraded (a downgraded request still counts, as in
    // one process), except those downgraded only because a process's lease ran dry while the
    // fleet had room: once every process has closed, the two add up to the calls.
    let denied: f64 = fleet
        .iter()
        .map(|(_, s)| s.status_json(0)["denied_for_lease"].as_f64().unwrap())
        .sum();
    for (_, state) in &fleet {
        state.close();
    }
    assert_eq!(fleet_spend(url, "alice") + denied, 2_000.0);
}

/// The fleet's spend of the `chat/per-user` budget for `user`, read straight from Redis.
fn fleet_spend(url: &str, user: &str) -> f64 {
    let url = flagrail_fleet::RedisUrl::parse(url).unwrap();
    let mut connection = flagrail_fleet::connection::connect(&url, Default::default()).unwrap();
    let key = flagrail_fleet::KeySpace::new("flagrail:document")
        .unwrap()
        .sibling(&format!("budget:chat/per-user:{user}"));
    let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(&key)
        .query(&mut connection)
        .unwrap();
    fields
        .iter()
        .filter(|(k, _)| k.starts_with("s:"))
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_per_user_budget_holds_across_the_fleet_within_one_lease_per_process() {
    let server = RedisServer::start().expect("redis-server");
    budget_under_load(&server.url());
}

#[test]
fn a_per_user_budget_holds_on_a_redis_cluster() {
    let cluster = RedisCluster::start().expect("redis cluster");
    budget_under_load(&cluster.url());
}

fn fail_candidate(flags: &Flags, unit: usize) -> bool {
    let ctx = json!({ "user_id": format!("u{unit}") });
    let mut run = flags.start_run("candidate", &ctx).unwrap();
    let assigned_new = run.evaluation().variant_id() == Some("new");
    if let Step::Call { variant, .. } = run.next_step() {
        if run.evaluation().document.flags()[1].variants[variant]
            .id
            .as_ref()
            == "new"
        {
            run.fail(ErrorKind::Server, Some("server error"), Usage::default());
            if let Step::Call { .. } = run.next_step() {
                run.succeed(Usage::default());
            }
        } else {
            run.succeed(Usage::default());
        }
    }
    assigned_new
}

#[test]
fn a_guardrail_trips_on_fleet_totals_that_no_process_sees_alone() {
    let server = RedisServer::start().expect("redis-server");
    guardrail_on_fleet_totals(&server.url());
}

#[test]
fn a_guardrail_trips_on_fleet_totals_on_a_redis_cluster() {
    let cluster = RedisCluster::start().expect("redis cluster");
    guardrail_on_fleet_totals(&cluster.url());
}

fn guardrail_on_fleet_totals(url: &str) {
    let fleet = fleet(url, PROCESSES);
    wait_until("every process connected", Duration::from_secs(10), || {
        fleet.iter().all(|(_, s)| s.is_connected())
    });
    // 8 failures per process: below min_samples (20) in each, 32 across the fleet.
    for (i, (flags, _)) in fleet.iter().enumerate() {
        for j in 0..8 {
            assert!(fail_candidate(flags, i * 100 + j), "served before the trip");
        }
        assert_eq!(
            flags.guardrail_trip("candidate", "new", "errors"),
            None,
            "tripped alone"
        );
    }
    wait_until(
        "every process follows the fleet's trip",
        Duration::from_secs(10),
        || {
            fleet
                .iter()
                .all(|(f, _)| f.guardrail_trip("candidate", "new", "errors").is_some())
        },
    );
    for (flags, _) in &fleet {
        for unit in 1000..1050 {
            let e = flags.evaluate(
                "candidate",
                &json!({ "user_id": format!("u{unit}") }),
                Default::default(),
            );
            assert_eq!(e.variant_id(), Some("old"), "served the tripped candidate");
        }
    }
    // Each process publishes its metrics every second: the fleet's view adds them up.
    wait_until(
        "fleet metrics add up every process's failures",
        Duration::from_secs(5),
        || {
            let merged = fleet[0].1.fleet_metrics();
            merged["$fleet"]["processes"] == PROCESSES && merged["candidate"]["new"]["errors"] == 32
        },
    );
    assert!(fleet[0].1.fleet_metrics_text().contains(
        "flagrail_fleet_guardrail_state{flag=\"candidate\",variant=\"new\",guardrail=\"errors\"} 1"
    ));
}

#[test]
fn pins_written_by_one_process_are_read_by_another() {
    let server = RedisServer::start().expect("redis-server");
    pins_shared(&server.url());
}

#[test]
fn pins_written_by_one_process_are_read_by_another_on_a_redis_cluster() {
    let cluster = RedisCluster::start().expect("redis cluster");
    pins_shared(&cluster.url());
}

fn pins_shared(url: &str) {
    let fleet = fleet(url, 2);
    wait_until("connected", Duration::from_secs(10), || {
        fleet.iter().all(|(_, s)| s.is_connected())
    });
    fleet[0].1.pin_set("flagrail/pin/chat/c1", "haiku", 60.0);
    wait_until(
        "the pin is visible from the other process",
        Duration::from_secs(5),
        || {
            fleet[1]
                .1
                .pin_get("flagrail/pin/chat/c1")
                .ok()
                .flatten()
                .as_deref()
                == Some("haiku")
        },
    );
    fleet[1].1.pin_delete("flagrail/pin/chat/c1");
    wait_until("the pin is gone", Duration::from_secs(5), || {
        fleet[0].1.pin_get("flagrail/pin/chat/c1").ok() == Some(None)
    });
}

#[test]
fn metrics_add_up_every_process_of_the_fleet() {
    let server = RedisServer::start().expect("redis-server");
    metrics_merged(&server.url());
}

#[test]
fn metrics_add_up_every_process_of_the_fleet_on_a_redis_cluster() {
    let cluster = RedisCluster::start().expect("redis cluster");
    metrics_merged(&cluster.url());
}

/// Each process serves a different number of requests; any process reads the fleet's sum.
fn metrics_merged(url: &str) {
    let fleet = fleet(url, 3);
    wait_until("connected", Duration::from_secs(10), || {
        fleet.iter().all(|(_, s)| s.is_connected())
    });
    let mut expected = 0u64;
    for (index, (flags, _)) in fleet.iter().enumerate() {
        for call in 0..(index + 1) * 5 {
            served(flags, &format!("m{index}-{call}"));
            expected += 1;
        }
    }
    for (_, state) in &fleet {
        wait_until(
            "every process reads the fleet's total",
            Duration::from_secs(10),
            || {
                let merged = state.fleet_metrics();
                merged["$fleet"]["processes"] == json!(3)
                    && merged["chat"]["opus"]["requests"] == json!(expected)
            },
        );
    }
    let text = fleet[0].1.fleet_metrics_text();
    assert!(
        text.contains("flagrail_fleet_processes 3"),
        "the Prometheus text names the fleet's size:\n{text}"
    );
}

#[test]
fn redis_down_mid_traffic_falls_back_locally_and_reconciles_spend() {
    let mut server = RedisServer::start().expect("redis-server");
    let fleet = fleet(&server.url(), 2);
    wait_until("connected", Duration::from_secs(10), || {
        fleet.iter().all(|(_, s)| s.is_connected())
    });
    wait_until("fleet size seen", Duration::from_secs(5), || {
        fleet.iter().all(|(f, _)| {
            f.status()
                .fleet
                .as_ref()
                .is_some_and(|s| s["fleet_size"] == 2)
        })
    });
    for _ in 0..10 {
        assert!(served(&fleet[0].0, "bob"));
        // Slower than the lease refills (every 50 ms): never short of a lease.
        thread::sleep(Duration::from_millis(120));
    }
    server.stop();
    wait_until("local mode", Duration::from_secs(10), || {
        fleet.iter().all(|(_, s)| !s.is_connected())
    });
    let status = fleet[0].0.status().to_json();
    assert_eq!(status["fleet"]["mode"], "local");
    assert!(fleet[0]
        .0
        .metrics_text()
        .contains("flagrail_fleet_connected 0"));
    // Local enforcement: what is left of the lease, then limit / fleet size per process.
    let mut offline = 0;
    for _ in 0..200 {
        if served(&fleet[0].0, "bob") {
            offline += 1;
        }
    }
    assert!(
        offline > 0,
        "the process kept serving from its lease and local share"
    );
    assert!(
        offline <= LIMIT / 2 + budget_bound(),
        "offline served {offline}"
    );
    server.restart().expect("restart");
    wait_until("reconnected", Duration::from_secs(20), || {
        fleet.iter().all(|(_, s)| s.is_connected())
    });
    wait_until("offline spend flushed", Duration::from_secs(10), || {
        fleet[0]
            .0
            .status()
            .fleet
            .as_ref()
            .is_some_and(|s| s["pending_spend"] == 0.0)
    });
    // The restarted server lost its data (no persistence): the fleet's spend is now what was
    // reported after it came back, which includes every call made while it was down.
    assert!(fleet_spend(&server.url(), "bob") >= 200.0);
}

/// A ramp in an autopilot step (50 %, paused two hours ago), so the fleet installs its
/// evidence sink.
fn autopilot_document() -> Value {
    let began =
        flagrail_core::time::format_timestamp(flagrail_core::time::now_millis() - 2 * 3_600_000);
    json!({ "revision": "autopilot-1",
        "flags": { "bot": {
            "bucket_by": "user_id",
            "variants": { "stable": { "model": "stable" }, "v2": { "model": "v2" } },
            "default": "stable",
            "rules": [ { "id": "canary", "ramp": {
                "variant": "v2", "baseline": "stable", "start": began, "paused_at": began,
                "steps": [ { "percent": 50, "hold": "1h" }, { "percent": 100 } ],
                "autopilot": { "holds": [ { "min": "30m", "max": "6h" } ],
                               "min_units_per_arm": 50,
                               "metrics": [ { "metric": "error_rate", "difference": 0.1 } ] }
            } } ]
        } }
    })
}

fn call_bot(flags: &Flags, users: std::ops::Range<usize>) {
    for user in users {
        let ctx = json!({ "user_id": format!("user-{user}") });
        let mut run = flags.start_run("bot", &ctx).unwrap();
        if let Step::Call { .. } = run.next_step() {
            run.succeed(Usage::default());
        }
    }
}

#[test]
fn a_state_forgotten_in_a_forked_child_gets_no_more_events_and_detaches() {
    let server = RedisServer::start().unwrap();
    let flags = Flags::from_json(&autopilot_document().to_string()).unwrap();
    let state = FleetState::attach(&flags, &server.url(), FleetOptions::default()).unwrap();
    let now = flagrail_core::time::now_millis;
    let evidence = |state: &FleetState| state.status_json(now())["autopilot"].clone();
    wait_until("the evidence sink", Duration::from_secs(10), || {
        !evidence(&state).is_null()
    });
    // While attached, runs reach the fleet's pending evidence.
    let seen = |state: &FleetState| {
        let e = evidence(state);
        e["tracked_runs"].as_u64().unwrap()
            + e["pending_units"].as_u64().unwrap()
            + e["flushed_units"].as_u64().unwrap()
    };
    let before = seen(&state);
    call_bot(&flags, 0..50);
    wait_until(
        "evidence of the first runs",
        Duration::from_secs(10),
        || seen(&state) > before,
    );

    // What a forked child does with its parent's state (here in one process: the thread
    // still runs, so `observer` can read the state afterwards and stop it at the end).
    let observer = Arc::clone(&state);
    state.forget_in_forked_child();
    assert!(!flags.shares_state(), "the handle no longer shares state");
    wait_until("the last flush", Duration::from_secs(10), || {
        evidence(&observer)["pending_units"] == 0
    });
    let settled = seen(&observer);
    call_bot(&flags, 50..100);
    // Past two flushes (every 250 ms): a run that had reached the forgotten state would be
    // tracked, pending or flushed by now.
    thread::sleep(Duration::from_millis(600));
    assert_eq!(seen(&observer), settled);
    observer.close();
}
