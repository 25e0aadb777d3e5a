//! flagrail fleet: everything that talks to Redis, so that many processes (Python and Node
//! alike) act as one.
//!
//! What lives where:
//!
//! - [`connection`]: Redis URLs (a single server or a Redis Cluster), one connection type for
//!   both, timeouts, reconnection with exponential backoff and jitter, the typed errors of
//!   this crate ([`FleetError`], stable codes such as `REDIS_UNAVAILABLE`) and the key names
//!   ([`KeySpace`]): every key of one document shares one hash tag, so each multi-key
//!   operation stays in one cluster slot;
//! - [`source`]: the flag document as a Redis key, pushed atomically and announced on a
//!   pub/sub channel, with a slow poll as a safety net;
//! - [`push`]: writing the document (`flagrail push`, and `kill` / `unkill` / `status` with
//!   `--redis`): one Lua script per write, compare-and-set for kills, an audit stream;
//! - [`shared`]: the state a fleet shares (budgets, guardrails, metrics, pins);
//! - [`testing`]: starting a throwaway redis-server or 3-node Redis Cluster on loopback for
//!   tests (never used by the library itself).
//!
//! Nothing here runs on the evaluation path: connections live on background threads and in
//! administrative calls (push, kill, status).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod connection;
pub mod push;
pub mod shared;
pub mod source;
pub mod testing;

pub use connection::{Backoff, FleetError, KeySpace, RedisConnection, RedisUrl, Timeouts};
pub use push::Publisher;
pub use source::{from_redis, RedisOptions, RedisSource};
