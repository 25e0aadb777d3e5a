//! `{ redis: URL }`: a handle's budgets, guardrails, metrics and sticky pins shared with a
//! fleet through Redis (`flagrail_fleet::shared`). The JS side installs the pin functions
//! here as its pin store; everything else is the fleet crate's.

use std::sync::Arc;

use flagrail_fleet::shared::{FleetOptions, FleetState};
use napi_derive::napi;

use crate::error::{core_error, invalid_argument};
use crate::{handle, JsError};

fn fleet_of(slot: u32) -> Result<Arc<FleetState>, JsError> {
    handle(slot)?.fleet.borrow().clone().ok_or_else(|| {
        invalid_argument("this Flags does not share state: open it with { redis: 'redis://…' }")
    })
}

/// Shares the handle's state through the Redis at `url` (never waits for Redis); the keys
/// carry the hash tag of `document_key` (default `flagrail:document`).
#[napi(catch_unwind)]
pub fn fleet_attach(slot: u32, url: String, document_key: Option<String>) -> Result<(), JsError> {
    let handle = handle(slot)?;
    let mut options = FleetOptions::default();
    if let Some(key) = document_key {
        options.document_key = key;
    }
    let fleet = FleetState::attach(&handle.inner, &url, options)
        .map_err(|error| core_error(&flagrail_core::Error::from(error)))?;
    *handle.fleet.borrow_mut() = Some(fleet);
    Ok(())
}

/// The pinned variant at `key` (a 50 ms read), or null; throws while Redis is unreachable.
#[napi(catch_unwind)]
pub fn fleet_pin_get(slot: u32, key: String) -> Result<Option<String>, JsError> {
    fleet_of(slot)?
        .pin_get(&key)
        .map_err(|error| core_error(&flagrail_core::Error::from(error)))
}

/// Queues a pin write.
#[napi(catch_unwind)]
pub fn fleet_pin_set(
    slot: u32,
    key: String,
    value: String,
    ttl_seconds: f64,
) -> Result<(), JsError> {
    fleet_of(slot)?.pin_set(&key, &value, ttl_seconds);
    Ok(())
}

/// Queues a pin delete.
#[napi(catch_unwind)]
pub fn fleet_pin_delete(slot: u32, key: String) -> Result<(), JsError> {
    fleet_of(slot)?.pin_delete(&key);
    Ok(())
}

/// `fleetMetrics()` as JSON text.
#[napi(catch_unwind)]
pub fn fleet_metrics(slot: u32) -> Result<String, JsError> {
    Ok(fleet_of(slot)?.fleet_metrics().to_string())
}

/// `fleetMetricsText()`.
#[napi(catch_unwind)]
pub fn fleet_metrics_text(slot: u32) -> Result<String, JsError> {
    Ok(fleet_of(slot)?.fleet_metrics_text())
}

/// Stops sharing: reports spend, gives leases back, stops the thread (idempotent).
#[napi(catch_unwind)]
pub fn fleet_close(slot: u32) -> Result<(), JsError> {
    let taken = handle(slot)?.fleet.borrow_mut().take();
    if let Some(fleet) = taken {
        fleet.close();
    }
    Ok(())
}
