//! Node bindings of flagrail: convert arguments, call flagrail-core, convert results.
//!
//! This addon is private: `bindings-node/index.js` is the public package. It builds `Flags`,
//! `Variant` and `FlagrailError` on top of the entry points here. Evaluation goes through raw
//! Node-API callbacks (`raw.rs`, and `raw_call.rs` for `call`; for speed, see `handle.rs`);
//! everything else is ordinary napi-rs. No module imports one that imports it back
//! (`tools/check_layers.py`). Every entry point catches panics, so none crosses into JS, and evaluation entry
//! points return data for every input instead of throwing.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod error;
pub mod exposures;
pub mod fleet;
mod handle;
mod raw;
mod raw_call;
mod raw_many;
pub mod reload_log;
pub mod runtime;
pub mod sources;

use std::time::Duration;

use flagrail_core::cache_key::KeyPart;
use flagrail_core::live::overrides::for_tests;
use flagrail_core::live::overrides::forced::check_forced;
use flagrail_core::{Document, FileOptions, Flags};
use napi::bindgen_prelude::{BigInt, Either, Either3, Object, Uint8ArraySlice, Unknown};
use napi::JsString;
use napi_derive::napi;

use crate::error::{core_error, invalid_argument, load_failure, LoadFailure};
use crate::handle::{encode_evaluation, STALE};
use crate::raw::read_values;

/// Largest integer a JS number represents exactly (`Number.MAX_SAFE_INTEGER`).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

// Re-exported at the root for the napi functions here and in `runtime.rs`; defined below the
// root so that no module imports the root back (tools/check_layers.py).
pub use crate::error::JsError;
pub use crate::handle::lookup as handle;
pub use crate::raw::attrs;

/// Registers the raw evaluation callbacks next to the generated exports.
#[napi(module_exports)]
pub fn init(mut exports: Object<'_>) -> napi::Result<()> {
    raw::register(&mut exports)?;
    raw_many::register(&mut exports)?;
    raw_call::register(&mut exports)
}

/// Loads flags from JSON text: the handle's slot, or why the document was rejected.
#[napi(catch_unwind)]
pub fn load_json(text: String) -> Either<u32, LoadFailure> {
    match Flags::from_json(&text) {
        Ok(flags) => Either::A(handle::insert(flags)),
        Err(error) => Either::B(load_failure(&error)),
    }
}

/// `diff(old, new, options)`: the change review of `flagrail diff` as JSON text (the logic,
/// limits and messages are `flagrail_core::review::review_documents`). The documents and the
/// given population arrive as JSON text; a rejected document or option is a [`LoadFailure`]
/// (its problems' paths start with `old.` or `new.`).
#[napi(catch_unwind)]
pub fn review(
    old: String,
    new: String,
    population: Option<String>,
    users: Option<f64>,
    seed: Option<f64>,
    at: Option<f64>,
) -> Either<String, LoadFailure> {
    use flagrail_core::review::{review_documents, Population, ReviewOptions};
    let parse = |which: &str, text: &str| {
        serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
            flagrail_core::Error::InvalidArgument {
                message: format!("{which}: not JSON: {e}"),
            }
        })
    };
    let reviewed = (|| {
        let old = parse("old", &old)?;
        let new = parse("new", &new)?;
        let given = match population {
            Some(text) => match parse("population", &text)? {
                serde_json::Value::Array(units) => Some(units),
                _ => {
                    return Err(flagrail_core::Error::InvalidArgument {
                        message: "population must be an array of contexts".to_string(),
                    })
                }
            },
            None => None,
        };
        let population = Population::of_options(users, seed, given)?;
        let at = at.map_or_else(flagrail_core::time::now_millis, |ms| ms as i64);
        let review = review_documents(&old, &new, population, &ReviewOptions { at })?;
        serde_json::to_string(&review).map_err(|e| flagrail_core::Error::InvalidArgument {
            message: format!("review: {e}"),
        })
    })();
    match reviewed {
        Ok(text) => Either::A(text),
        Err(error) => Either::B(load_failure(&error)),
    }
}

/// Loads the flags of a test from the short mapping of `Flags.forTests` (JSON text; see
/// `flagrail_core::live::overrides::for_tests`): the handle's slot, or why it was rejected.
#[napi(catch_unwind)]
pub fn load_for_tests(text: String) -> Either<u32, LoadFailure> {
    let built = serde_json::from_str(&text)
        .map_err(|e| flagrail_core::Error::InvalidArgument {
            message: format!("forTests: the mapping is not JSON: {e}"),
        })
        .and_then(|mapping| for_tests::document(&mapping))
        .and_then(Flags::from_value);
    match built {
        Ok(flags) => Either::A(handle::insert(flags)),
        Err(error) => Either::B(load_failure(&error)),
    }
}

/// Loads flags from JSON bytes (a `Buffer` or `Uint8Array`): invalid UTF-8 is rejected with its
/// position, as the CLI and Python reject it, instead of being decoded with U+FFFD in JS.
#[napi(catch_unwind)]
pub fn load_bytes(bytes: Uint8ArraySlice<'_>) -> Either<u32, LoadFailure> {
    match Document::from_slice(&bytes) {
        Ok(document) => Either::A(handle::insert(Flags::from_document(document))),
        Err(error) => Either::B(load_failure(&error)),
    }
}

/// Loads flags from a file, watching it for changes when `reload` is set; with `verify_key`
/// (the text of `flagrail.pub`) every version must carry a matching `<path>.sig`.
#[napi(catch_unwind)]
pub fn load_file(
    path: String,
    reload: bool,
    poll_interval_ms: Option<u32>,
    verify_key: Option<String>,
) -> Either<u32, LoadFailure> {
    let mut options = FileOptions {
        reload,
        ..FileOptions::default()
    };
    if let Some(ms) = poll_interval_ms {
        options.poll_interval = Duration::from_millis(u64::from(ms.max(1)));
    }
    if let Some(text) = verify_key {
        match flagrail_sources::VerifyKey::parse(&text) {
            Ok(key) => options.verifier = Some(std::sync::Arc::new(key)),
            Err(error) => return Either::B(load_failure(&error)),
        }
    }
    match Flags::from_file_with(&path, options) {
        Ok(flags) => Either::A(reload_log::insert_watched(flags)),
        Err(error) => Either::B(load_failure(&error)),
    }
}

/// How deep `call` may nest (the core's limit, the same as Python's).
#[napi(catch_unwind)]
pub fn max_call_depth() -> u32 {
    flagrail_core::live::MAX_CALL_DEPTH
}

/// The next nesting depth of a `call` of `flag` made at `depth`, or the core's
/// `CALL_DEPTH_EXCEEDED` error (index.js calls this only at the limit).
#[napi(catch_unwind)]
pub fn enter_call(flag: String, depth: u32) -> Result<u32, JsError> {
    flagrail_core::live::enter_call(&flag, depth).map_err(|err| core_error(&err))
}

/// Frees a handle whose `Flags` object was collected.
#[napi(catch_unwind)]
pub fn release(slot: u32) {
    handle::release(slot);
}

/// The live document's lookup tables (JSON), acknowledging it; see `Handle::tables`.
#[napi(catch_unwind)]
pub fn tables(slot: u32) -> Result<String, JsError> {
    Ok(handle(slot)?.tables())
}

/// A flag the JS tables lack: the core answers FLAG_NOT_FOUND, or `STALE` when a reload added
/// it.
#[napi(catch_unwind)]
pub fn eval_key(slot: u32, key: String, at: Option<f64>) -> Result<f64, JsError> {
    Ok(handle(slot)?
        .evaluate_full(None, &key, &[], at)
        .map_or(STALE, |e| encode_evaluation(&e)))
}

/// Checks a test override (`flags.override(key, variant, fn)`) against the live document: the
/// failure (`INVALID_ARGUMENT`, naming the flag or the variant) or `null`.
#[napi(catch_unwind)]
pub fn check_override(
    slot: u32,
    key: String,
    variant: String,
) -> Result<Option<LoadFailure>, JsError> {
    let document = handle(slot)?.inner.document();
    Ok(check_forced(&document, &key, &variant)
        .err()
        .map(|e| load_failure(&e)))
}

/// Flag `index` of the JS tables with `variant` forced by a test override: the packed result,
/// `STALE`, `WIDE`, or `-4` when the flag has no such variant.
#[napi(catch_unwind)]
pub fn eval_forced(slot: u32, index: u32, variant: String) -> Result<f64, JsError> {
    Ok(handle(slot)?.decide_forced(index, &variant))
}

/// The unpacked form of the last result of this thread that did not fit the packed number
/// (`-2`), taken once: `[variantIndex, reasonCode, ruleIndex, bucket, killSourceCode,
/// shadowIndex, budgetCode, pinEffect]` (see `handle::unpacked`). The evaluation is not
/// repeated: it may have written a sticky pin.
#[napi(catch_unwind)]
pub fn take_wide() -> Option<Vec<f64>> {
    handle::take_wide()
}

/// The key of the conversation's pin in a shared pin store for flag `index` (`values` of its
/// attributes, or with `run` of its run attributes), or `null` when the flag is not sticky or
/// the context names no conversation.
#[napi(catch_unwind)]
pub fn pin_key(
    slot: u32,
    index: u32,
    values: Unknown<'_>,
    run: bool,
) -> Result<Option<String>, JsError> {
    let owned = read_values(values);
    Ok(handle(slot)?.pin_key(index, &attrs(&owned), run))
}

/// Evaluates flag `index` with the pin read from a shared store (`null`: none), writing no
/// pin: the unpacked result (as `takeWide`), whose last element says what to do with the
/// store; `null` when stale.
#[napi(catch_unwind)]
pub fn eval_pinned(
    slot: u32,
    index: u32,
    values: Unknown<'_>,
    pin: Option<String>,
    at: Option<f64>,
) -> Result<Option<Vec<f64>>, JsError> {
    let owned = read_values(values);
    Ok(handle(slot)?.evaluate_pinned(index, &attrs(&owned), pin.as_deref(), at))
}

/// `explain` as JSON text, or `null` when stale. `index` is -1 for a flag the tables lack.
/// With `pinned`, `pin` is the pin read from a shared store (the in-memory pins otherwise).
#[napi(catch_unwind)]
pub fn explain(
    slot: u32,
    index: i32,
    key: String,
    values: Unknown<'_>,
    at: Option<f64>,
    pinned: Option<bool>,
    pin: Option<String>,
) -> Result<Option<String>, JsError> {
    let owned = read_values(values);
    let index = u32::try_from(index).ok();
    let pin = pinned.unwrap_or(false).then_some(pin.as_deref());
    Ok(handle(slot)?
        .explain(index, &key, &attrs(&owned), at, pin)
        .map(|v| v.to_string()))
}

/// `variant.cacheKey(...parts)`: `flagrail:v1:<flag>:<variant>:<payload hash>[:<parts hash>]`
/// (docs/flag-document.md, "Cache keys"). Integer parts arrive as their decimal text, which
/// is how the core hashes integers.
#[napi(catch_unwind)]
pub fn cache_key(
    flag: String,
    variant: String,
    payload_hash: String,
    parts: Vec<String>,
) -> String {
    let parts: Vec<KeyPart<'_>> = parts.iter().map(|p| KeyPart::Text(p)).collect();
    flagrail_core::cache_key::cache_key(&flag, &variant, &payload_hash, &parts)
}

/// `status()` as JSON text.
#[napi(catch_unwind)]
pub fn status(slot: u32) -> Result<String, JsError> {
    Ok(handle(slot)?.inner.status().to_json().to_string())
}

/// Kills one flag or, without `flag`, every flag, in this process.
#[napi(catch_unwind)]
pub fn kill(slot: u32, flag: Option<String>, reason: Option<String>) -> Result<(), JsError> {
    handle(slot)?.inner.kill(flag.as_deref(), reason.as_deref());
    Ok(())
}

/// Lifts a local kill of one flag or, without `flag`, every local kill.
#[napi(catch_unwind)]
pub fn unkill(slot: u32, flag: Option<String>) -> Result<(), JsError> {
    handle(slot)?.inner.unkill(flag.as_deref());
    Ok(())
}

/// Checks a file source now and reloads it when it changed (the watcher does the same in the
/// background): whether a new document went live, or why the new one was rejected.
#[napi(catch_unwind)]
pub fn reload_now(slot: u32) -> Result<Either<bool, LoadFailure>, JsError> {
    Ok(match handle(slot)?.inner.reload_if_changed() {
        Ok(applied) => Either::A(applied),
        Err(error) => Either::B(load_failure(&error)),
    })
}

/// Stops the background file watcher (the handle keeps serving the last document).
#[napi(catch_unwind)]
pub fn close(slot: u32) -> Result<(), JsError> {
    handle(slot)?.inner.stop_watching();
    Ok(())
}

/// A JS string as UTF-8, or `INVALID_ARGUMENT` when it holds a lone surrogate (it has no UTF-8
/// form; Node would silently put U+FFFD in its place and hash something else than Python).
fn well_formed(text: JsString<'_>, name: &str) -> Result<String, JsError> {
    let units = text
        .into_utf16()
        .map_err(|e| invalid_argument(format!("{name} could not be read: {e}")))?;
    units
        .as_str()
        .map_err(|_| core_error(&flagrail_core::Error::unpaired_surrogates(name)))
}

/// `bucket(salt, unit, total)`: the bucket in `0..total` that `unit` falls into under `salt`
/// (bucketing v1, docs/bucketing.md). `unit` is a string, a safe integer or a bigint within
/// 64 bits (integers hash as their decimal text); `total` is an integer in `1..=2^32-1`. A
/// string with a lone surrogate is refused with `INVALID_ARGUMENT`.
#[napi(catch_unwind)]
pub fn bucket(
    salt: JsString<'_>,
    unit: Either3<JsString<'_>, f64, BigInt>,
    total: Option<f64>,
) -> Result<u32, JsError> {
    let salt = well_formed(salt, "salt")?;
    let total = match total {
        None => flagrail_core::PERCENT_TOTAL,
        Some(t) if t.fract() == 0.0 && (1.0..=f64::from(u32::MAX)).contains(&t) => t as u32,
        Some(t) => {
            return Err(invalid_argument(format!(
                "total must be an integer from 1 to 4294967295, got {t}"
            )))
        }
    };
    let bucket = match unit {
        Either3::A(unit) => flagrail_core::bucket(&salt, &well_formed(unit, "unit")?, total),
        Either3::B(n) if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER => {
            flagrail_core::hash::bucket_i64(&salt, n as i64, total)
        }
        Either3::B(n) => {
            return Err(invalid_argument(format!(
            "unit must be a string or an integer (a number within ±(2^53-1) or a bigint), got {n}"
        )))
        }
        Either3::C(big) => match big.get_i64() {
            (i, true) => flagrail_core::hash::bucket_i64(&salt, i, total),
            (_, false) => {
                return Err(invalid_argument(
                    "unit bigint is outside the 64-bit signed range",
                ))
            }
        },
    };
    bucket.ok_or_else(|| invalid_argument("total must be at least 1"))
}

/// Parses an RFC 3339 timestamp or a `YYYY-MM-DD` date into Unix milliseconds, the way flag
/// documents are parsed; `null` when it does not parse.
#[napi(catch_unwind)]
pub fn parse_timestamp(text: String) -> Option<f64> {
    flagrail_core::time::parse_timestamp(&text).map(|ms| ms as f64)
}

/// The bucketing algorithm version this build implements.
#[napi]
pub const HASH_VERSION: u32 = flagrail_core::HASH_VERSION;
