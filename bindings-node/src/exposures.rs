//! The `exposures` option of the loaders: validated and kept by the core
//! (`flagrail_core::runtime::exposures`); index.js reads the option object.

use flagrail_core::runtime::exposures::ExposureOptions;
use napi_derive::napi;

use crate::error::core_error;
use crate::JsError;

/// The option names as JS spells them, for the core's messages.
const NAMES: [&str; 3] = ["windowMs", "sample", "maxKeys"];

/// Turns on exposures of plain reads for the handle in `slot` (`undefined` options take the
/// core's defaults). Throws `INVALID_ARGUMENT` for a value out of range, or when they are on
/// already.
#[napi(catch_unwind)]
pub fn enable_exposures(
    slot: u32,
    window_ms: Option<f64>,
    sample: Option<f64>,
    max_keys: Option<f64>,
) -> Result<(), JsError> {
    let handle = crate::handle(slot)?;
    let options =
        ExposureOptions::new(window_ms, sample, max_keys, NAMES).map_err(|e| core_error(&e))?;
    handle
        .inner
        .enable_exposures(options)
        .map_err(|e| core_error(&e))
}
