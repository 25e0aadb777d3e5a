//! Node bindings: convert arguments, call flagrail-core, convert results.
use napi_derive::napi;

/// The bucket in `0..total` that `unit` falls into under `salt` (bucketing v1).
#[napi]
pub fn bucket(salt: String, unit: String, total: Option<u32>) -> napi::Result<u32> {
    flagrail_core::bucket(&salt, &unit, total.unwrap_or(100_000))
        .ok_or_else(|| napi::Error::from_reason("total must be at least 1"))
}
