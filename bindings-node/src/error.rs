//! Core errors as data for the JS side, which throws them as `FlagrailError`.
//!
//! Loaders return a [`LoadFailure`] instead of throwing from Rust so that the JS wrapper can
//! throw one `FlagrailError` with `.code` (the core's stable code, the same in Python and Rust)
//! and `.problems` (every path, code and message), with a stack trace that starts in the
//! caller's code rather than inside the addon.

use napi_derive::napi;

/// The error of a fallible napi function (the napi macros recognise one by a return type
/// spelled `Result<..>`).
pub type JsError = napi::Error<String>;

/// One problem in a rejected document.
#[napi(object)]
pub struct ProblemInfo {
    /// Where, as a dotted path such as `flags.support-bot.rules[2].when.op`.
    pub path: String,
    /// The problem's stable code, such as `UNKNOWN_OPERATOR`.
    pub code: String,
    pub message: String,
}

/// A failed load or reload.
#[napi(object)]
pub struct LoadFailure {
    /// `INVALID_DOCUMENT`, `SOURCE_UNREACHABLE` or `INVALID_ARGUMENT`.
    pub code: String,
    pub message: String,
    pub problems: Vec<ProblemInfo>,
}

pub fn load_failure(error: &flagrail_core::Error) -> LoadFailure {
    LoadFailure {
        code: error.code().to_string(),
        message: error.to_string(),
        problems: error
            .problems()
            .iter()
            .map(|p| ProblemInfo {
                path: p.path.clone(),
                code: p.code().to_string(),
                message: p.message.clone(),
            })
            .collect(),
    }
}

/// An error thrown straight from Rust, with the core's code as the JS `.code`.
pub fn invalid_argument(message: impl Into<String>) -> napi::Error<String> {
    let error = flagrail_core::Error::InvalidArgument {
        message: message.into(),
    };
    napi::Error::new(error.code().to_string(), error.to_string())
}

/// A core error thrown straight from Rust, with its code as the JS `.code`.
pub fn core_error(error: &flagrail_core::Error) -> napi::Error<String> {
    napi::Error::new(error.code().to_string(), error.to_string())
}
