//! The built-in Redis pin store: the pins of sticky flags at the keys the bindings' pin-store
//! protocol names (`flagrail/pin/<flag>/<conversation>`, value: the variant id, TTL: the
//! flag's `sticky.ttl`), so a conversation pinned from Python is honoured from Node.
//!
//! A read is the one round trip the fleet makes on an evaluation — of a sticky flag only,
//! and only while Redis is reachable: it has its own connection with a short read timeout
//! ([`PIN_READ_TIMEOUT`]), and is skipped (a miss, counted by the binding as a store error)
//! while the background thread finds Redis down. Writes and deletes never wait: they are
//! queued for the background thread (at most [`MAX_QUEUED_PIN_WRITES`]; the oldest are
//! dropped beyond that).

use std::collections::VecDeque;
use std::time::Duration;

/// How long a pin read may wait for Redis before the evaluation goes on without the pin.
pub const PIN_READ_TIMEOUT: Duration = Duration::from_millis(50);

/// Pin writes waiting for the background thread.
pub const MAX_QUEUED_PIN_WRITES: usize = 10_000;

/// One queued write.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PinWrite {
    Set {
        key: String,
        variant: String,
        ttl_ms: u64,
    },
    Delete {
        key: String,
    },
}

/// The queue of pin writes.
#[derive(Debug, Default)]
pub(crate) struct PinQueue {
    pub writes: VecDeque<PinWrite>,
    pub dropped: u64,
}

impl PinQueue {
    pub fn push(&mut self, write: PinWrite) {
        if self.writes.len() >= MAX_QUEUED_PIN_WRITES {
            self.writes.pop_front();
            self.dropped += 1;
        }
        self.writes.push_back(write);
    }
}
