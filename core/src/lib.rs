//! flagrail core: the decision engine behind the Python and Node packages and the CLI.
//!
//! Where things are decided:
//! - [`load`]: a JSON document becomes a validated, compiled [`Document`] (every error, with
//!   its path and code);
//! - [`evaluate`]: the decision order (kill → rules → default → guardrail fallback) and
//!   `explain`;
//! - [`condition`]: targeting operators; [`ramp`]: scheduled ramps; [`hash`]: bucketing v1;
//! - [`live`]: the shared, hot-swappable handle ([`Flags`]) with file reload and status;
//! - [`runtime`]: the call around the model: fallback chains, outcomes and metrics,
//!   guardrails (automatic kill switches) and telemetry events.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admin;
pub mod cache_key;
pub mod condition;
pub mod context;
pub mod document;
pub mod error;
pub mod evaluate;
pub mod file;
pub mod hash;
pub mod lint;
pub mod live;
pub mod load;
pub mod ramp;
pub mod runtime;
pub mod time;

pub use context::{Attr, Context, EmptyContext, Positional};
pub use document::{Document, Flag, Variant};
pub use error::{Error, Problem, ProblemKind, Result};
pub use evaluate::{decision_json, At, Decision, KillSource, NoOverlay, Overlay, Reason};
pub use hash::{bucket, HASH_VERSION, PERCENT_TOTAL};
pub use live::{
    Clock, Evaluation, ExternalSource, FileOptions, Flags, ManualClock, Poller, ReloadEvent,
    Status, SystemClock,
};
