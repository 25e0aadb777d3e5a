//! Connections against a real redis-server and a local 3-node Redis Cluster.

use std::time::Duration;

use flagrail_fleet::connection::{connect, Reconnecting};
use flagrail_fleet::testing::{RedisCluster, RedisServer};
use flagrail_fleet::{Backoff, KeySpace, RedisUrl, Timeouts};
use redis::Commands;

#[test]
fn a_single_server_answers_and_a_restart_is_reconnected_after_the_backoff() {
    let mut server = RedisServer::start().unwrap();
    let url = RedisUrl::parse(&server.url()).unwrap();
    let mut connection = Reconnecting::new(
        url,
        Timeouts::default(),
        Backoff::new(Duration::from_millis(10), Duration::from_millis(10)),
    );
    let pong: String = connection.run(|c| redis::cmd("PING").query(c)).unwrap();
    assert_eq!(pong, "PONG");

    server.stop();
    let error = connection
        .run(|c| redis::cmd("PING").query::<String>(c))
        .unwrap_err();
    assert_eq!(error.code(), "REDIS_UNAVAILABLE");
    assert!(!connection.is_connected());

    server.restart().unwrap();
    // Bounded: the backoff is 10 ms, so a few attempts suffice.
    let mut answered = None;
    for _ in 0..200 {
        if let Ok(pong) = connection.run(|c| redis::cmd("PING").query::<String>(c)) {
            answered = Some(pong);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(answered.as_deref(), Some("PONG"));
}

#[test]
fn every_key_of_a_document_lands_in_one_cluster_slot_and_cluster_commands_route() {
    let cluster = RedisCluster::start().unwrap();
    for document_key in ["flagrail:document", "app:{tenant-7}:flags", "x"] {
        let keys = KeySpace::new(document_key).unwrap();
        let slot = cluster.key_slot(keys.document()).unwrap();
        for sibling in [
            keys.revision(),
            keys.signature(),
            keys.audit(),
            keys.channel(),
        ] {
            assert_eq!(cluster.key_slot(&sibling).unwrap(), slot, "{sibling}");
        }
    }

    let url = RedisUrl::parse(&cluster.url()).unwrap();
    let mut connection = connect(&url, Timeouts::default()).unwrap();
    // Keys spread over the three nodes: the cluster connection follows the slot map.
    for index in 0..30 {
        let _: () = connection.set(format!("k{index}"), index).unwrap();
    }
    for index in 0..30 {
        let value: i64 = connection.get(format!("k{index}")).unwrap();
        assert_eq!(value, index);
    }
}
