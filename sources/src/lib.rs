//! flagrail sources: where a live flag document comes from besides a file.
//!
//! - [`http`]: an HTTP(S) URL polled with ETags, backoff and an on-disk cache for cold starts;
//! - [`signature`]: detached ed25519 signatures (`flagrail keygen`, `flagrail sign`, and the
//!   `verify_key` of a source).
//!
//! This crate is the only one that links a network stack. The core's evaluation path never
//! calls into it: a poller thread fetches, validates with the core and swaps the document in
//! through [`flagrail_core::Poll::offer`].
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod cache;
pub mod http;
pub mod signature;

pub use http::{fetch_bytes, from_url, is_url, HttpOptions, HttpSource};
pub use signature::{PrivateKey, VerifyKey};
