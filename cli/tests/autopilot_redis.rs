//! `flagrail autopilot --redis` and `flagrail report --redis` against a real redis-server and
//! a local 3-node Redis Cluster.
//!
//! Two handles with shared fleet state stand for two processes of a fleet: they serve an
//! autopilot ramp (50 % then 100 %) to 400 users, report outcomes and feedback, and write
//! their events to files as well. Then:
//! - `autopilot --redis --dry-run --json` prints the same evidence as `autopilot --events`
//!   over those files (the parity of the two inputs);
//! - `autopilot --redis --once` promotes a good candidate, rolls back a harmed one, writes the
//!   decision into the document in Redis, and a third handle subscribed to Redis serves the
//!   new step;
//! - `report --redis` renders the decision from the audit stream;
//! - on a signed document, the decision is refused without `--key` (nothing written) and
//!   re-signed with it.
//!
//! Every wait is a bounded poll; no wall-clock assertion.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use flagrail_core::live::{Step, Usage};
use flagrail_core::runtime::ErrorKind;
use flagrail_core::time::{format_timestamp, now_millis};
use flagrail_core::{EvalOptions, Flags};
use flagrail_fleet::push::Publisher;
use flagrail_fleet::shared::series::SeriesMetric;
use flagrail_fleet::shared::{FleetOptions, FleetState};
use flagrail_fleet::testing::{RedisCluster, RedisServer};
use flagrail_fleet::{from_redis, RedisOptions, Timeouts};
use flagrail_sources::PrivateKey;
use serde_json::{json, Value};

const USERS: usize = 400;

fn document(step_began: &str) -> Value {
    json!({ "revision": "r1",
        "flags": { "bot": {
            "bucket_by": "user_id",
            "variants": { "stable": {}, "v2": {} },
            "default": "stable",
            "rules": [ { "id": "canary", "ramp": {
                "variant": "v2", "baseline": "stable",
                "start": step_began, "paused_at": step_began,
                "steps": [ { "percent": 50, "hold": "1h" }, { "percent": 100 } ],
                "autopilot": {
                    "holds": [ { "min": "30m", "max": "6h" } ],
                    "min_units_per_arm": 50,
                    "metrics": [ { "metric": "quality", "difference": 0.1 },
                                 { "metric": "error_rate", "difference": 0.2 } ]
                }
            } } ]
        } }
    })
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "flagrail-autopilot-redis-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn flagrail(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flagrail"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run flagrail")
}

fn json_lines(output: &Output) -> Vec<Value> {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("{err}: {l}")))
        .collect()
}

fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One user's call: every 10th user's call fails; the quality is one of a few exact binary
/// fractions (so sums are exact in any order), 0.375 lower on a harmed candidate.
fn serve(flags: &Flags, user: usize, harmed: bool) {
    let ctx = json!({ "user_id": format!("user-{user}") });
    let mut run = flags.start_run("bot", &ctx).expect("run");
    let candidate = run.evaluation().variant_id() == Some("v2");
    let Step::Call { .. } = run.next_step() else {
        panic!("the run has a call");
    };
    let usage = Usage {
        latency_ms: Some(100.0 + (user % 4) as f64 * 25.0),
        cost: Some(0.125),
        ..Usage::default()
    };
    if user % 10 == 3 {
        // A failed run has no feedback.
        run.fail(ErrorKind::Server, Some("server error"), usage);
        return;
    }
    run.succeed(usage);
    let mut quality = [0.5, 0.625, 0.75, 0.875][user % 4];
    if candidate && harmed {
        quality -= 0.375;
    }
    let run_id = run.run_id().to_string();
    assert!(flags
        .feedback(&run_id, None, Some(quality))
        .expect("feedback"));
}

fn scenario(url: &str, name: &str, harmed: bool, signed: bool) {
    let dir = scratch(name);
    let now = now_millis();
    let step_began = format_timestamp(now - 2 * 3_600_000);
    let doc = document(&step_began).to_string();
    std::fs::write(dir.join("flags.json"), &doc).expect("doc");
    let key = PrivateKey::generate().expect("key");
    let mut push_args = vec!["push", "flags.json", "--redis", url, "--actor", "ci"];
    if signed {
        std::fs::write(dir.join("flags.json.sig"), key.sign(doc.as_bytes())).expect("sig");
        std::fs::write(dir.join("flagrail.pub"), key.verify_key().to_text()).expect("pub");
        std::fs::write(dir.join("flagrail.key"), key.to_text()).expect("key");
        push_args.extend(["--verify-key", "flagrail.pub"]);
    }
    let pushed = flagrail(&dir, &push_args);
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );

    let mut publisher = Publisher::open(url, "flagrail:document", Timeouts::default()).unwrap();
    let pushed_at = publisher.read().unwrap().revision;
    let earlier = publisher
        .read_series("bot", now - 3_600_000, now + 3_600_000)
        .unwrap();
    let series_before = |metric: SeriesMetric| -> (u64, f64) {
        earlier
            .iter()
            .filter(|p| p.metric == metric)
            .fold((0, 0.0), |(n, s), p| {
                (n + p.moments.count, s + p.moments.sum)
            })
    };
    // A subscribed handle: it must see the decision by push.
    let subscriber = from_redis(url, RedisOptions::default()).expect("subscribed handle");

    // Two "processes", each serving half the users, with events files for the parity check.
    let processes: Vec<(Flags, std::sync::Arc<FleetState>, PathBuf)> = (0..2)
        .map(|i| {
            let flags = Flags::from_json(&doc).expect("flags");
            let events = dir.join(format!("events-{i}.jsonl"));
            flags.write_events_to(&events).expect("events sink");
            let state = FleetState::attach(&flags, url, FleetOptions::default()).expect("attach");
            (flags, state, events)
        })
        .collect();
    for (flags, state, _) in &processes {
        wait_until(
            "the fleet connects and listens",
            Duration::from_secs(10),
            || {
                state.is_connected()
                    && state.status_json(flags.now_millis())["autopilot"].is_object()
            },
        );
    }
    for user in 0..USERS {
        serve(&processes[user % 2].0, user, harmed);
    }
    // Closing flushes what is pending.
    for (_, state, _) in &processes {
        state.close();
    }
    let began_ms = now - 2 * 3_600_000;
    let stored = publisher.read_evidence("bot", "canary", began_ms).unwrap();
    assert_eq!(stored.units.len(), USERS, "every user is one unit in Redis");
    assert_eq!(stored.dropped_units, 0);
    // The same runs over time, per minute: one error_rate value per run (its first attempt),
    // one quality value per feedback, in both arms. (Less what an earlier scenario on the same
    // Redis wrote for the same flag: the series are per flag and day, not per step.)
    let points = publisher
        .read_series("bot", now - 3_600_000, now_millis() + 60_000)
        .unwrap();
    let total = |metric: SeriesMetric| -> (u64, f64) {
        let (n, s) = points
            .iter()
            .filter(|p| p.metric == metric)
            .fold((0, 0.0), |(n, s), p| {
                (n + p.moments.count, s + p.moments.sum)
            });
        let (n0, s0) = series_before(metric);
        (n - n0, s - s0)
    };
    assert_eq!(
        total(SeriesMetric::ErrorRate),
        (USERS as u64, (USERS / 10) as f64)
    );
    assert_eq!(total(SeriesMetric::Quality).0, (USERS - USERS / 10) as u64);
    assert_eq!(
        total(SeriesMetric::Cost),
        (USERS as u64, USERS as f64 * 0.125)
    );
    let variants: std::collections::BTreeSet<&str> =
        points.iter().map(|p| p.variant.as_str()).collect();
    assert_eq!(variants, ["stable", "v2"].into_iter().collect());

    let at = format_timestamp(now_millis() + 1_000);
    let events: Vec<String> = processes
        .iter()
        .map(|(_, _, e)| e.to_str().expect("path").to_string())
        .collect();
    let mut from_events_args = vec![
        "autopilot",
        "flags.json",
        "--once",
        "--dry-run",
        "--json",
        "--at",
        &at,
        "--events",
    ];
    from_events_args.extend(events.iter().map(String::as_str));
    let from_events = json_lines(&flagrail(&dir, &from_events_args));
    let from_redis_dry = json_lines(&flagrail(
        &dir,
        &[
            "autopilot",
            "--redis",
            url,
            "--once",
            "--dry-run",
            "--json",
            "--at",
            &at,
        ],
    ));
    assert_eq!(from_events.len(), 1);
    assert_eq!(from_redis_dry.len(), 1);
    // The parity of the two inputs: the same evidence, to the last bit.
    assert_eq!(from_redis_dry[0]["evidence"], from_events[0]["evidence"]);
    assert_eq!(from_redis_dry[0]["written"], Value::Null);
    let expected = if harmed { "roll_back" } else { "promote" };
    assert_eq!(
        from_redis_dry[0]["decision"], expected,
        "{}",
        from_redis_dry[0]
    );
    let samples = &from_redis_dry[0]["evidence"]["samples"];
    assert_eq!(
        samples["control"].as_u64().unwrap() + samples["candidate"].as_u64().unwrap(),
        USERS as u64
    );
    // The daemon (bounded here) looks again at each interval, from Redis too.
    let daemon = json_lines(&flagrail(
        &dir,
        &[
            "autopilot",
            "--redis",
            url,
            "--dry-run",
            "--json",
            "--interval",
            "0.05",
            "--max-looks",
            "2",
        ],
    ));
    assert_eq!(daemon.len(), 2);
    assert!(daemon.iter().all(|d| d["decision"] == expected));
    // A dry run wrote nothing.
    assert_eq!(publisher.read().unwrap().revision, pushed_at);

    let mut decide_args = vec![
        "autopilot",
        "--redis",
        url,
        "--once",
        "--json",
        "--actor",
        "autopilot-ci",
    ];
    if signed {
        assert!(publisher.read().unwrap().signature.is_some());
        // A signed document is not rewritten without the key that re-signs it.
        let refused = flagrail(&dir, &decide_args);
        assert_eq!(refused.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("--key"), "{stderr}");
        assert_eq!(publisher.read().unwrap().revision, pushed_at);
        decide_args.extend(["--key", "flagrail.key", "--verify-key", "flagrail.pub"]);
    }
    let decided = json_lines(&flagrail(&dir, &decide_args));
    assert_eq!(decided[0]["decision"], expected);
    assert_eq!(
        decided[0]["written"]["redis_revision"],
        pushed_at + 1,
        "{}",
        decided[0]
    );
    let written = publisher.read().unwrap();
    let written_text = written.document.expect("a document");
    if signed {
        // Re-signed with the decision: the fleet's verifying processes accept it.
        key.verify_key()
            .verify("redis", &written_text, written.signature.as_deref())
            .expect("the written document is signed by the key");
    }
    let stored: Value = serde_json::from_slice(&written_text).unwrap();
    let ramp = &stored["flags"]["bot"]["rules"][0]["ramp"];
    if harmed {
        assert_eq!(ramp["rolled_back"], true);
    } else {
        assert_ne!(ramp["paused_at"], Value::String(step_began.clone()));
        assert_eq!(ramp["rolled_back"], Value::Null);
    }
    let audit = publisher.audit(1).unwrap();
    assert_eq!(audit[0]["record"]["action"], "autopilot");
    assert_eq!(audit[0]["record"]["decision"], expected);
    assert_eq!(audit[0]["record"]["actor"], "autopilot-ci");

    // The subscribed handle serves the new step: everyone on v2 (100 %) or on stable.
    let serves_everyone = if harmed { "stable" } else { "v2" };
    wait_until(
        "the subscriber serves the new step",
        Duration::from_secs(10),
        || {
            (0..40).all(|u| {
                let ctx = json!({ "user_id": format!("user-{u}") });
                subscriber
                    .evaluate("bot", &ctx, EvalOptions::default())
                    .variant_id()
                    == Some(serves_everyone)
            })
        },
    );

    // Its status() shows the autopilot's last decision, carried by the document.
    let status = subscriber.status().to_json();
    let last = &status["autopilot"][0]["last_decision"];
    assert_eq!(last["decision"], expected, "{status}");
    assert_eq!(last["actor"], "autopilot-ci");
    assert_eq!(last["samples"], decided[0]["evidence"]["samples"]);

    // A second look finds nothing left to decide and writes nothing.
    let again = json_lines(&flagrail(
        &dir,
        &["autopilot", "--redis", url, "--once", "--json"],
    ));
    assert_eq!(again[0]["decision"], Value::Null);
    assert_eq!(publisher.read().unwrap().revision, pushed_at + 1);

    // The report renders from Redis: the decision from the audit stream.
    let report = flagrail(&dir, &["report", "--redis", url, "--out", "report.html"]);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report");
    assert!(html.contains(&format!("autopilot {expected}")), "{html}");
    // Redis alone gives the charts too: each arm's metrics over time and the ramp's share.
    for series in [
        "metric:quality:v2",
        "metric:quality:stable",
        "interval:error_rate:v2",
        "metric:latency_ms:stable",
        "metric:cost:v2",
        "ramp:canary",
    ] {
        assert!(
            html.contains(&format!("data-series=\"{series}\"")),
            "{series} missing"
        );
    }

    // After close (above), the evidence sink left on the handle keeps nothing: nothing would
    // flush it. (Last: these calls also reach the events files of the parity check.)
    let (flags, state, _) = &processes[0];
    for user in USERS..USERS + 10 {
        serve(flags, user, harmed);
    }
    let kept = &state.status_json(flags.now_millis())["autopilot"];
    assert_eq!(kept["pending_units"], 0, "{kept}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_good_candidate_is_promoted_from_the_fleets_evidence_on_a_single_server() {
    let server = RedisServer::start().expect("redis-server");
    scenario(&server.url(), "good", false, false);
}

#[test]
fn a_harmed_candidate_is_rolled_back_and_re_signed_on_a_single_server() {
    let server = RedisServer::start().expect("redis-server");
    scenario(&server.url(), "harm", true, true);
}

#[test]
fn promotion_and_rollback_from_the_fleets_evidence_on_a_cluster() {
    let cluster = RedisCluster::start().expect("redis cluster");
    scenario(&cluster.url(), "cluster-good", false, false);
    // A fresh document and step: the same keys are overwritten by the new push.
    scenario(&cluster.url(), "cluster-harm", true, false);
}
