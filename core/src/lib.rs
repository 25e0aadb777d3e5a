//! flagrail core: the decision engine behind the Python and Node packages and the CLI.
//!
//! The crate reads bottom-up, in layers. A module may use its own layer and the layers listed
//! before it, never one listed after it (`make lint` checks this, and that no two files import
//! each other in a circle, with `tools/check_layers.py`):
//!
//! 1. **primitives** — [`time`] (instants, durations, timestamps), [`hash`] (bucketing v1),
//!    [`context`] (attributes of a caller), [`error`] (typed errors and codes), [`trace`]
//!    (the steps `explain` records), [`cache_key`];
//! 2. **conditions** — [`condition`] (targeting operators and segments), [`ramp`]
//!    (scheduled ramps), [`autopilot`] (the ramp's statistical gate: promote, hold, roll back
//!    or revert from evidence; pure, no I/O);
//! 3. **document** — [`document`]: every *spec* type, as written and compiled: flags,
//!    variants, rules, kill switches, shadows, and [`document::budget`],
//!    [`document::guardrail`], [`document::sticky`];
//! 4. **evaluate** — [`evaluate`]: the decision order (kill → sticky pin → budget → rules →
//!    default → guardrail fallback) and `explain`, with what the process overlays on the
//!    document ([`evaluate::overlay`]);
//! 5. **runtime state** — [`runtime`]: what budgets, guardrails and pins have *seen*
//!    (budget books, guardrail windows, pins, metrics, event sinks, run ids);
//! 6. **live** — [`live`]: the shared, hot-swappable handle ([`Flags`]): sources and reload,
//!    snapshots, the call around the model ([`live::run`]) and telemetry;
//! 7. **load and tooling** — [`load`] (a JSON document becomes a validated, compiled
//!    [`Document`], every error with its path and code), [`lint`], [`admin`], [`review`]
//!    (what a new document changes and whom it moves: `flagrail diff`);
//! 8. **binding boundary** — [`codes`]: the numbers both bindings use for reasons, kill
//!    sources, error kinds, pin effects and run steps when they cross a language boundary.
//!
//! Where each decision is made:
//!
//! | decision | module |
//! |---|---|
//! | is this JSON a valid document, and every problem with its path | [`load`] |
//! | which variant a context gets, and why (the seven steps, in order) | `evaluate/decide.rs` ([`Document::evaluate`]) |
//! | the steps as `explain` reports them | [`evaluate::explain`] |
//! | does a condition or segment match | [`condition`] |
//! | which bucket a unit falls in (bucketing v1) | [`hash`] |
//! | what percentage a ramp is at now | [`ramp`] |
//! | is a budget exhausted for a scope | [`runtime::budget`] |
//! | does a guardrail trip, go half-open, recover | [`runtime::guardrail`] (bounds in [`runtime::stats`]) |
//! | is a conversation pin still live | [`runtime::sticky`] |
//! | which kind an error is (`timeout`, `rate_limit`, …) | [`mod@runtime::classify`] |
//! | which variant a call tries next, and when it stops | [`live::run`] |
//! | when a changed file is reloaded | [`live::watch`] |
//! | what `status()` reports | [`live::status`] |
//! | the cache key of a served variant | [`cache_key`] |
//! | what `flagrail lint` warns about | [`lint`] |
//! | what a new document changes, whom it moves, and whether that needs approval | [`review`] |
//! | the numbers a value takes across a binding | [`codes`] |
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admin;
pub mod autopilot;
pub mod cache_key;
pub mod codes;
pub mod condition;
pub mod context;
pub mod document;
pub mod error;
pub mod evaluate;
pub mod hash;
pub mod lint;
pub mod live;
pub mod load;
pub mod ramp;
pub mod review;
pub mod runtime;
pub mod time;
pub(crate) mod trace;

pub use context::{Attr, Context, EmptyContext, Positional, Slotted};
pub use document::{Document, Flag, Variant};
pub use error::{Error, Problem, ProblemKind, Result};
pub use evaluate::{
    decision_json, At, Choice, Decision, DecisionReport, Explanation, FlagRef, KillSource,
    NoOverlay, Overlay, Reason,
};
pub use hash::{bucket, HASH_VERSION, PERCENT_TOTAL};
pub use live::{
    Clock, EvalOptions, Evaluation, ExternalSource, FileOptions, Flags, ManualClock, PinSource,
    Poll, ReloadEvent, Status, SystemClock,
};
