//! The live handle ([`Flags`]) and what hangs off it, one job per file:
//! - [`handle`]: the shared handle — the document behind an `ArcSwap`, local kills, reload
//!   listeners, status, evaluation entry points;
//! - [`overrides`]: local kills and tripped guardrails laid over the document;
//! - [`source`]: where the document comes from (static, or a file), how a file is read, and
//!   the signature check of a signed file;
//! - [`watch`]: loading a file into a handle and the thread that reloads it on change;
//! - [`external`]: the hook for sources implemented outside the core (HTTP, in
//!   `flagrail-sources`), whose poller thread the core owns;
//! - [`recent`]: the live documents a thread evaluated on last, so a snapshot needs no
//!   atomic read-modify-write;
//! - [`snapshot`]: one consistent view for evaluations, the overlay it builds, and the owned
//!   [`Evaluation`];
//! - [`status`]: what `status()` reports, and its JSON as typed serde structs;
//! - [`run`]: the call around the model (fallback chains, budgets reserved and settled);
//! - [`telemetry`]: event sinks, recorded attempts, feedback and metrics;
//! - [`fleet`]: what a fleet sharing state through Redis needs of the handle;
//! - [`fork`]: every lock of the handle held across `fork()`;
//! - [`clock`]: where "now" comes from.
//!
//! Every `impl Flags` block of the crate is in this folder.

mod attempt;
pub mod clock;
pub mod external;
pub mod fleet;
pub mod fork;
pub mod handle;
pub mod overrides;
mod recent;
pub mod run;
pub mod snapshot;
pub mod source;
pub mod status;
pub mod telemetry;
pub mod watch;

pub use attempt::{enter_call, MAX_CALL_DEPTH};
pub use clock::{Clock, ManualClock, SystemClock};
pub use fleet::WeakFlags;
pub use handle::{Flags, LogLevel, ReloadEvent};
pub use run::{Attempt, Run, Step, Usage};
pub use snapshot::{EvalOptions, Evaluation, PinSource, Snapshot};
pub use source::{
    lock_path, read_document, read_signature, signature_path, DocumentVerifier, ExternalSource,
    FileOptions, Poll, DEFAULT_POLL_INTERVAL, MAX_SIGNATURE_BYTES, SIGNATURE_SUFFIX,
};
pub use status::{LoadFailure, Status, StatusReport};
