//! The Redis source against a real redis-server and a local 3-node Redis Cluster: push,
//! pub/sub reloads, the safety-net poll, bad and unsigned documents, kills with their audit
//! stream, and Redis missing at startup. Waits are bounded and wait for events or state, not
//! for a wall-clock deadline to pass.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use flagrail_core::admin::{KillChange, Target};
use flagrail_core::Flags;
use flagrail_core::ReloadEvent;
use flagrail_fleet::push::Publisher;
use flagrail_fleet::testing::{RedisCluster, RedisServer};
use flagrail_fleet::{from_redis, RedisOptions, Timeouts};
use flagrail_sources::PrivateKey;
use serde_json::{json, Value};

const KEY: &str = "flagrail:document";

fn document(revision: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "revision": revision,
        "flags": {"chat": {
            "variants": {"control": {"model": "model-a"}, "candidate": {"model": "model-b"}},
            "default": "control"
        }}
    }))
    .unwrap()
}

fn options() -> RedisOptions {
    RedisOptions {
        poll_interval: Duration::from_secs(600),
        startup_timeout: Duration::from_millis(300),
        max_backoff: Duration::from_millis(200),
        ..RedisOptions::default()
    }
}

/// Polls `condition` every 10 ms; panics naming `what` after 20 s.
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn remote(flags: &Flags) -> Value {
    flags.status().remote.unwrap()
}

fn events(flags: &Flags) -> mpsc::Receiver<ReloadEvent> {
    let (send, receive) = mpsc::channel();
    flags.on_reload(move |event| {
        let _ = send.send(event.clone());
    });
    receive
}

fn next_applied(events: &mpsc::Receiver<ReloadEvent>) -> String {
    loop {
        match events
            .recv_timeout(Duration::from_secs(20))
            .expect("a reload event")
        {
            ReloadEvent::Applied { revision, .. } => return revision,
            ReloadEvent::Rejected { .. } => continue,
        }
    }
}

fn push(publisher: &mut Publisher, bytes: &[u8]) -> i64 {
    publisher
        .push(bytes, None, None, "test", 0)
        .unwrap()
        .0
        .revision
}

fn push_reaches_every_subscriber(url: &str) {
    let mut publisher = Publisher::open(url, KEY, Timeouts::default()).unwrap();
    push(&mut publisher, &document("r1"));
    let subscribers: Vec<Flags> = (0..3)
        .map(|_| from_redis(url, options()).unwrap())
        .collect();
    let listeners: Vec<_> = subscribers.iter().map(events).collect();
    for flags in &subscribers {
        assert_eq!(flags.document().revision(), "r1");
        wait_for("the subscription", || {
            remote(flags)["subscribed"] == json!(true)
        });
    }
    let counter = push(&mut publisher, &document("r2"));
    for (flags, events) in subscribers.iter().zip(&listeners) {
        // The safety-net poll is 10 minutes away: only the message can have done this.
        assert_eq!(next_applied(events), "r2");
        assert_eq!(remote(flags)["redis_revision"], json!(counter));
        assert!(remote(flags)["messages"].as_u64().unwrap() >= 1);
        assert_eq!(remote(flags)["kind"], json!("redis"));
        assert!(flags.status().source.starts_with("redis:"));
    }
}

#[test]
fn a_push_reaches_every_subscriber_on_a_single_server() {
    let server = RedisServer::start().unwrap();
    push_reaches_every_subscriber(&server.url());
}

#[test]
fn a_push_reaches_every_subscriber_on_a_cluster() {
    let cluster = RedisCluster::start().unwrap();
    push_reaches_every_subscriber(&cluster.url());
}

#[test]
fn a_lost_message_is_covered_by_the_poll_and_a_dropped_subscription_catches_up() {
    let server = RedisServer::start().unwrap();
    let mut publisher = Publisher::open(&server.url(), KEY, Timeouts::default()).unwrap();
    push(&mut publisher, &document("r1"));
    let flags = from_redis(
        &server.url(),
        RedisOptions {
            poll_interval: Duration::from_millis(200),
            ..options()
        },
    )
    .unwrap();
    wait_for("the subscription", || {
        remote(&flags)["subscribed"] == json!(true)
    });
    // A write without PUBLISH: the message is "lost".
    server
        .cli(&[
            "set",
            KEY,
            std::str::from_utf8(&document("r2-silent")).unwrap(),
        ])
        .unwrap();
    wait_for("the poll to find r2", || {
        flags.document().revision() == "r2-silent"
    });
    assert_eq!(remote(&flags)["messages"], json!(0));

    // Subscribers dropped by the server (as after a failover): they resubscribe and re-read.
    let subscriptions = remote(&flags)["subscriptions"].as_u64().unwrap();
    server.cli(&["client", "kill", "type", "pubsub"]).unwrap();
    server
        .cli(&[
            "set",
            KEY,
            std::str::from_utf8(&document("r3-while-away")).unwrap(),
        ])
        .unwrap();
    wait_for("the resubscription", || {
        remote(&flags)["subscriptions"].as_u64().unwrap() > subscriptions
    });
    wait_for("r3", || flags.document().revision() == "r3-while-away");
}

#[test]
fn a_bad_document_is_rejected_with_its_path_and_the_last_good_one_stays() {
    let server = RedisServer::start().unwrap();
    let mut publisher = Publisher::open(&server.url(), KEY, Timeouts::default()).unwrap();
    push(&mut publisher, &document("r1"));
    let flags = from_redis(&server.url(), options()).unwrap();
    wait_for("the subscription", || {
        remote(&flags)["subscribed"] == json!(true)
    });
    let events = events(&flags);

    // `push` validates first: nothing is written.
    let bad = br#"{"revision":"r2-bad","flags":{"chat":{"variants":{},"default":"gone"}}}"#;
    let error = publisher.push(bad, None, None, "test", 0).unwrap_err();
    assert_eq!(error.code(), "INVALID_DOCUMENT");
    assert_eq!(publisher.read().unwrap().revision, 1);

    // Written behind flagrail's back (raw script, no validation): rejected by every reader.
    publisher.write(bad, None, None, None).unwrap();
    let rejected = match events.recv_timeout(Duration::from_secs(20)).unwrap() {
        ReloadEvent::Rejected { error } => error,
        ReloadEvent::Applied { .. } => panic!("a bad document was applied"),
    };
    assert_eq!(rejected.code(), "INVALID_DOCUMENT");
    assert!(
        rejected
            .problems()
            .iter()
            .any(|p| p.path.starts_with("flags.chat")),
        "{rejected}"
    );
    assert_eq!(flags.document().revision(), "r1");
    assert_eq!(
        remote(&flags)["last_error"]["kind"],
        json!("invalid_document")
    );

    push(&mut publisher, &document("r3-good"));
    assert_eq!(next_applied(&events), "r3-good");
}

#[test]
fn signatures_are_required_and_checked() {
    let server = RedisServer::start().unwrap();
    let key = PrivateKey::generate().unwrap();
    let other = PrivateKey::generate().unwrap();
    let mut publisher = Publisher::open(&server.url(), KEY, Timeouts::default()).unwrap();
    let r1 = document("r1");
    let signed = key.sign(&r1);
    publisher
        .push(
            &r1,
            Some(signed.as_bytes()),
            Some(&key.verify_key()),
            "t",
            0,
        )
        .unwrap();
    // push verifies too: a wrong signature is refused before anything is written.
    let r2 = document("r2");
    let wrong = other.sign(&r2);
    let refused = publisher
        .push(&r2, Some(wrong.as_bytes()), Some(&key.verify_key()), "t", 0)
        .unwrap_err();
    assert_eq!(refused.code(), "SIGNATURE_INVALID");

    let verifying = RedisOptions {
        verify_key: Some(key.verify_key()),
        ..options()
    };
    let flags = from_redis(&server.url(), verifying.clone()).unwrap();
    assert_eq!(flags.document().revision(), "r1");
    wait_for("the subscription", || {
        remote(&flags)["subscribed"] == json!(true)
    });
    let events = events(&flags);

    for (bytes, signature) in [(document("r2-unsigned"), None), (r2.clone(), Some(wrong))] {
        publisher
            .write(&bytes, signature.as_deref().map(str::as_bytes), None, None)
            .unwrap();
        match events.recv_timeout(Duration::from_secs(20)).unwrap() {
            ReloadEvent::Rejected { error } => assert_eq!(error.code(), "SIGNATURE_INVALID"),
            ReloadEvent::Applied { revision, .. } => panic!("{revision} applied unsigned"),
        }
        assert_eq!(flags.document().revision(), "r1");
    }
    // Unsigned at startup with a verify key: a definite answer, raised.
    let error = from_redis(&server.url(), verifying).unwrap_err();
    assert_eq!(error.code(), "SIGNATURE_INVALID");

    let good = key.sign(&r2);
    publisher
        .write(&r2, Some(good.as_bytes()), None, None)
        .unwrap();
    assert_eq!(next_applied(&events), "r2");
}

fn kill_change(active: bool) -> KillChange<'static> {
    KillChange {
        target: Target::Flag("chat"),
        active,
        reason: Some("bad answers"),
        actor: "oncall",
        at: 1_795_000_000_000,
    }
}

fn kill_and_audit(url: &str) {
    let mut publisher = Publisher::open(url, KEY, Timeouts::default()).unwrap();
    push(&mut publisher, &document("r1"));
    let flags = from_redis(url, options()).unwrap();
    wait_for("the subscription", || {
        remote(&flags)["subscribed"] == json!(true)
    });
    let events = events(&flags);

    let killed = publisher.kill(&kill_change(true), None, None).unwrap();
    assert!(killed.changed);
    assert_eq!(next_applied(&events), killed.new_revision);
    assert!(flags.document().flag("chat").unwrap().kill.active);
    // Again: already killed, nothing written.
    let again = publisher.kill(&kill_change(true), None, None).unwrap();
    assert!(!again.changed);
    assert_eq!(again.redis_revision, killed.redis_revision);

    let unkilled = publisher.kill(&kill_change(false), None, None).unwrap();
    assert_eq!(next_applied(&events), unkilled.new_revision);
    assert!(!flags.document().flag("chat").unwrap().kill.active);

    let audit = publisher.audit(10).unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .map(|entry| entry["record"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["unkill", "kill", "push"]);
    assert_eq!(audit[1]["record"]["actor"], json!("oncall"));
    assert_eq!(audit[1]["record"]["reason"], json!("bad answers"));
    assert_eq!(audit[1]["revision"], json!(killed.redis_revision));
}

#[test]
fn kill_and_unkill_are_read_modify_writes_with_an_audit_stream() {
    let server = RedisServer::start().unwrap();
    kill_and_audit(&server.url());
}

#[test]
fn kill_and_unkill_on_a_cluster() {
    let cluster = RedisCluster::start().unwrap();
    kill_and_audit(&cluster.url());
}

#[test]
fn concurrent_kills_never_lose_an_update() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let mut publisher = Publisher::open(&url, KEY, Timeouts::default()).unwrap();
    let mut flags = serde_json::Map::new();
    for index in 0..4 {
        flags.insert(
            format!("f{index}"),
            json!({"variants": {"a": {}, "b": {}}, "default": "a"}),
        );
    }
    let doc = serde_json::to_vec(&json!({"revision": "r1", "flags": flags})).unwrap();
    push(&mut publisher, &doc);
    let writers: Vec<_> = (0..4)
        .map(|index| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut publisher = Publisher::open(&url, KEY, Timeouts::default()).unwrap();
                let flag = format!("f{index}");
                let change = KillChange {
                    target: Target::Flag(&flag),
                    active: true,
                    reason: Some("race"),
                    actor: "t",
                    at: 1_795_000_000_000,
                };
                publisher.kill(&change, None, None).unwrap().changed
            })
        })
        .collect();
    for writer in writers {
        assert!(writer.join().unwrap());
    }
    let stored = publisher.read().unwrap();
    let stored = flagrail_core::Document::from_slice(&stored.document.unwrap()).unwrap();
    for index in 0..4 {
        assert!(
            stored.flag(&format!("f{index}")).unwrap().kill.active,
            "f{index}"
        );
    }
    assert_eq!(publisher.read().unwrap().revision, 5);
}

#[test]
fn redis_down_at_start_serves_a_stand_in_and_loads_when_it_returns() {
    let mut server = RedisServer::start().unwrap();
    server.stop();
    let flags = from_redis(&server.url(), options()).unwrap();
    assert_eq!(
        flags.document().revision(),
        flagrail_fleet::source::WAITING_REVISION
    );
    let status = remote(&flags);
    assert_eq!(status["connected"], json!(false));
    assert_eq!(status["document_loaded"], json!(false));
    assert_eq!(status["last_error"]["code"], json!("SOURCE_UNREACHABLE"));
    assert!(status["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("REDIS_UNAVAILABLE"));

    server.restart().unwrap();
    let mut publisher = Publisher::open(&server.url(), KEY, Timeouts::default()).unwrap();
    push(&mut publisher, &document("r1-after"));
    wait_for("the document after Redis returned", || {
        flags.document().revision() == "r1-after"
    });
    let status = remote(&flags);
    assert_eq!(status["connected"], json!(true));
    assert_eq!(status["document_loaded"], json!(true));
}

#[test]
fn a_cached_copy_serves_while_redis_is_down() {
    let dir = std::env::temp_dir().join(format!("flagrail-redis-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cache = dir.join("flags.json");
    let mut server = RedisServer::start().unwrap();
    let mut publisher = Publisher::open(&server.url(), KEY, Timeouts::default()).unwrap();
    push(&mut publisher, &document("r1-cached"));
    let cached = RedisOptions {
        cache_path: Some(cache.clone()),
        ..options()
    };
    drop(from_redis(&server.url(), cached.clone()).unwrap());
    server.stop();
    let flags = from_redis(&server.url(), cached).unwrap();
    assert_eq!(flags.document().revision(), "r1-cached");
    assert_eq!(remote(&flags)["served_from_cache"], json!(true));
    assert_eq!(remote(&flags)["document_loaded"], json!(false));
    // Redis returns (empty: no persistence) and the same document is pushed again: the live
    // document is now confirmed by Redis, not only by the cache.
    server.restart().unwrap();
    let mut publisher = Publisher::open(&server.url(), KEY, Timeouts::default()).unwrap();
    push(&mut publisher, &document("r1-cached"));
    wait_for("Redis to confirm the cached document", || {
        remote(&flags)["document_loaded"] == json!(true)
    });
    assert_eq!(remote(&flags)["served_from_cache"], json!(false));
    drop(flags);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn redis_lost_mid_run_keeps_serving_says_so_and_recovers() {
    let mut server = RedisServer::start().unwrap();
    let mut publisher = Publisher::open(&server.url(), KEY, Timeouts::default()).unwrap();
    push(&mut publisher, &document("r1"));
    let flags = from_redis(&server.url(), options()).unwrap();
    wait_for("the subscription", || {
        remote(&flags)["subscribed"] == json!(true)
    });

    server.stop();
    wait_for("the status to say Redis is gone", || {
        let status = remote(&flags);
        status["subscribed"] == json!(false) && status["connected"] == json!(false)
    });
    assert_eq!(
        remote(&flags)["last_error"]["kind"],
        json!("connect"),
        "{}",
        remote(&flags)
    );
    assert_eq!(flags.document().revision(), "r1");

    server.restart().unwrap();
    let mut publisher = Publisher::open(&server.url(), KEY, Timeouts::default()).unwrap();
    push(&mut publisher, &document("r2-after"));
    wait_for("the push after Redis returned", || {
        flags.document().revision() == "r2-after"
    });
    assert_eq!(remote(&flags)["connected"], json!(true));
}
