//! The flag document as a Redis key, pushed atomically and announced on a pub/sub channel.
//! (Being built: see docs/fleet.md.)
