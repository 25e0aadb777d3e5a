//! `Flags.fromUrl` (the HTTP(S) source of `flagrail-sources`) and `Flags.fromRedis` (the Redis
//! source of `flagrail-fleet`), converted and delegated.
//!
//! The poller is a Rust thread owned by the core: it never keeps the event loop alive, each
//! worker thread's handles have their own, and it stops with `close()` or when the `Flags`
//! object is collected (the handle holds the only strong reference).

use std::time::Duration;

use flagrail_sources::{HttpOptions, VerifyKey};
use napi::bindgen_prelude::Either;
use napi_derive::napi;

use crate::error::{load_failure, LoadFailure};

/// What `fromUrl` passes down, already checked for types by index.js.
#[napi(object)]
pub struct UrlOptions {
    pub poll_interval_ms: Option<u32>,
    pub cache_path: Option<String>,
    pub verify_key: Option<String>,
    /// Name, value, name, value … (index.js flattens the `headers` object).
    pub headers: Option<Vec<String>>,
    pub ca_file: Option<String>,
    pub startup_timeout_ms: Option<u32>,
    pub timeout_ms: Option<u32>,
}

fn options(given: UrlOptions) -> Result<HttpOptions, flagrail_core::Error> {
    let mut options = HttpOptions::default();
    if let Some(ms) = given.poll_interval_ms {
        options.poll_interval = Duration::from_millis(u64::from(ms.max(1)));
    }
    if let Some(ms) = given.timeout_ms {
        options.read_timeout = Duration::from_millis(u64::from(ms));
    }
    if let Some(ms) = given.startup_timeout_ms {
        options.startup_timeout = Duration::from_millis(u64::from(ms));
    }
    options.cache_path = given.cache_path.map(Into::into);
    options.ca_file = given.ca_file.map(Into::into);
    options.verify_key = given
        .verify_key
        .as_deref()
        .map(VerifyKey::parse)
        .transpose()?;
    options.headers = given
        .headers
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    Ok(options)
}

/// Loads flags from a URL and starts polling it: the handle's slot, or why it failed.
#[napi(catch_unwind)]
pub fn load_url(url: String, given: UrlOptions) -> Either<u32, LoadFailure> {
    match options(given).and_then(|options| flagrail_sources::from_url(&url, options)) {
        Ok(flags) => Either::A(crate::reload_log::insert_watched(flags)),
        Err(error) => Either::B(load_failure(&error)),
    }
}

/// What `fromRedis` passes down, already checked for types by index.js.
#[napi(object)]
pub struct RedisSourceOptions {
    pub key: Option<String>,
    pub poll_interval_ms: Option<u32>,
    pub cache_path: Option<String>,
    pub verify_key: Option<String>,
    pub startup_timeout_ms: Option<u32>,
    pub timeout_ms: Option<u32>,
}

fn redis_options(
    given: RedisSourceOptions,
) -> Result<flagrail_fleet::RedisOptions, flagrail_core::Error> {
    let mut options = flagrail_fleet::RedisOptions::default();
    if let Some(key) = given.key {
        options.key = key;
    }
    if let Some(ms) = given.poll_interval_ms {
        options.poll_interval = Duration::from_millis(u64::from(ms.max(1)));
    }
    if let Some(ms) = given.timeout_ms {
        let timeout = Duration::from_millis(u64::from(ms.max(1)));
        options.timeouts = flagrail_fleet::Timeouts {
            connect: timeout,
            read: timeout,
            write: timeout,
        };
    }
    if let Some(ms) = given.startup_timeout_ms {
        options.startup_timeout = Duration::from_millis(u64::from(ms));
    }
    options.cache_path = given.cache_path.map(Into::into);
    options.verify_key = given
        .verify_key
        .as_deref()
        .map(VerifyKey::parse)
        .transpose()?;
    Ok(options)
}

/// Loads flags from a Redis key and follows its pushes: the handle's slot, or why it failed.
#[napi(catch_unwind)]
pub fn load_redis(url: String, given: RedisSourceOptions) -> Either<u32, LoadFailure> {
    match redis_options(given).and_then(|options| flagrail_fleet::from_redis(&url, options)) {
        Ok(flags) => Either::A(crate::handle::insert(flags)),
        Err(error) => Either::B(load_failure(&error)),
    }
}
