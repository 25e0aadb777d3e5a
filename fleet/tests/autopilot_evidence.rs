//! The autopilot's per-unit evidence in Redis (`flagrail_fleet::shared::evidence`) against a
//! real redis-server and a local 3-node Redis Cluster: partial totals of one unit add up
//! exactly across writes, a unit keeps its first arm, a step's hash is capped and counts what
//! did not fit, and both keys expire.

use flagrail_core::autopilot::events::UnitTotals;
use flagrail_fleet::connection::{connect, RedisConnection};
use flagrail_fleet::shared::evidence::{
    dropped_key, read_step, step_key, write_units, EVIDENCE_SCRIPT, EVIDENCE_TTL_MS,
};
use flagrail_fleet::testing::{RedisCluster, RedisServer};
use flagrail_fleet::{KeySpace, RedisUrl, Timeouts};

fn totals(error: bool, latency: f64, quality: Option<f64>) -> UnitTotals {
    let mut t = UnitTotals::default();
    t.add_outcome(error, Some(latency), Some(0.1));
    t.add_feedback(quality, None);
    t
}

fn open(url: &str) -> (RedisConnection, KeySpace) {
    let url = RedisUrl::parse(url).expect("url");
    (
        connect(&url, Timeouts::default()).expect("connect"),
        KeySpace::new("flagrail:document").expect("keys"),
    )
}

fn ttl_ms(connection: &mut RedisConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(connection).expect("PTTL")
}

fn evidence_adds_up_and_is_bounded(url: &str) {
    let (mut c, keys) = open(url);
    let script = redis::Script::new(EVIDENCE_SCRIPT);
    let hash = step_key(&keys, "bot", "canary", 1_000);
    let dropped = dropped_key(&keys, "bot", "canary", 1_000);
    // Two processes' partial totals of u1 (candidate), one of u2 (control); then u1 seen in
    // the control arm by a third process: ignored, it stays a candidate unit.
    let first = vec![
        (Box::from("u1"), true, totals(false, 100.1, Some(0.3))),
        (Box::from("u2"), false, totals(true, 50.0, None)),
    ];
    let second = vec![(Box::from("u1"), true, totals(true, 200.7, Some(0.7)))];
    let other_arm = vec![(Box::from("u1"), false, totals(false, 9e9, Some(0.0)))];
    for batch in [&first, &second, &other_arm] {
        assert_eq!(
            write_units(&mut c, &script, &hash, &dropped, batch).expect("write"),
            0
        );
    }
    let target = url.to_string();
    let stored = read_step(&mut c, &target, &keys, "bot", "canary", 1_000).expect("read");
    let mut expected_u1 = totals(false, 100.1, Some(0.3));
    expected_u1.merge(&totals(true, 200.7, Some(0.7)));
    assert_eq!(stored.units["u1"], (true, expected_u1));
    assert_eq!(stored.units["u2"], (false, totals(true, 50.0, None)));
    assert_eq!((stored.dropped_units, stored.unreadable), (0, 0));
    let (control, candidate) = stored.arms();
    assert_eq!((control.units, candidate.units), (1, 1));
    assert_eq!(candidate.metrics["error_rate"].sum, 0.5);
    assert_eq!(candidate.metrics["quality"].sum, 0.5);

    // Both keys expire (7 days after the last write).
    let ttl = ttl_ms(&mut c, &hash);
    assert!(
        ttl > EVIDENCE_TTL_MS - 60_000 && ttl <= EVIDENCE_TTL_MS,
        "{ttl}"
    );

    // The cap: with room for 3 units, a batch of 4 new ones stores 1 and counts 3; a unit
    // already stored still adds up.
    let capped = step_key(&keys, "bot", "canary", 2_000);
    let capped_dropped = dropped_key(&keys, "bot", "canary", 2_000);
    let mut invocation = script.prepare_invoke();
    invocation
        .key(&capped)
        .key(&capped_dropped)
        .arg(3)
        .arg(60_000);
    for unit in ["a", "b", "c", "d", "a"] {
        invocation.arg(unit).arg("c");
        for x in totals(false, 10.0, None).to_fields() {
            invocation.arg(x.to_string());
        }
    }
    let _: u64 = invocation.invoke(&mut c).expect("first batch");
    let mut invocation = script.prepare_invoke();
    invocation
        .key(&capped)
        .key(&capped_dropped)
        .arg(3)
        .arg(60_000);
    for unit in ["e", "f", "g", "h", "a"] {
        invocation.arg(unit).arg("c");
        for x in totals(false, 10.0, None).to_fields() {
            invocation.arg(x.to_string());
        }
    }
    let dropped_now: u64 = invocation.invoke(&mut c).expect("capped batch");
    assert_eq!(dropped_now, 4);
    let stored = read_step(&mut c, &target, &keys, "bot", "canary", 2_000).expect("read");
    assert_eq!(stored.units.len(), 3);
    assert_eq!(stored.dropped_units, 5);
    assert_eq!(stored.units["a"].1.with_outcome, 3);
    assert!(ttl_ms(&mut c, &capped_dropped) > 0);
}

#[test]
fn evidence_adds_up_and_is_bounded_on_a_single_server() {
    let server = RedisServer::start().expect("redis-server");
    evidence_adds_up_and_is_bounded(&server.url());
}

#[test]
fn evidence_adds_up_and_is_bounded_on_a_cluster() {
    let cluster = RedisCluster::start().expect("redis cluster");
    evidence_adds_up_and_is_bounded(&cluster.url());
}
