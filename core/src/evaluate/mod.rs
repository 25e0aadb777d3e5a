//! The decision: which variant a context gets from a flag, and why.
//!
//! The order is fixed (docs/flag-document.md, "The decision"):
//! 1. unknown flag → the caller's default, `FLAG_NOT_FOUND`;
//! 2. a kill (document-wide, the flag's own, a local override, a tripped guardrail whose
//!    action is `kill`, or an exhausted budget whose action is `kill`) → the kill variant,
//!    `KILLED`;
//! 3. a live sticky pin of this conversation whose variant still exists and has no tripped
//!    guardrail → that variant, `STICKY` (a broken pin is replaced by steps 4–7);
//! 4. an exhausted budget whose action is `serve` → its variant, `BUDGET`;
//! 5. rules in order: a `serve` rule that matches → `TARGETING_MATCH`; a split or ramp that
//!    places the unit → `SPLIT` (a ramp whose variant tripped a `halt` or `rollback` guardrail
//!    is held at its percentage of the trip, or at 0 %);
//! 6. the flag's `default` → `DEFAULT`;
//! 7. if the chosen variant tripped a guardrail whose action is `fallback` → the next healthy
//!    variant of the flag's `fallback` list, `GUARDRAIL`.
//!
//! A decision of steps 5–7 is pinned when the flag is sticky ([`PinEffect::Write`]); `KILLED`
//! and `BUDGET` never are. Last, a decision that is not `KILLED` or `BUDGET` may draw the
//! flag's shadow variant (its own salt, its hourly cost cap).
//!
//! Units drawn for the half-open probe of a guardrail (see [`crate::document::guardrail`]) are
//! not affected by it.
//!
//! One function makes the decision for both plain evaluation and `explain`: it is generic over
//! a [`crate::trace::Tracer`], and the no-op tracer compiles away, so the explanation can never drift from
//! what evaluation actually does.

//!
//! Files: [`decision`] (the types of a decision), `decide.rs` (the steps above, in order),
//! [`explain`] (the decision as JSON, with its steps), [`overlay`] (what the process lays over
//! the document: local kills, trips, budgets, pins).

mod decide;
pub mod decision;
pub mod explain;
pub(crate) mod overlay;

pub use decision::{budget_of, At, Choice, Decision, FlagRef, KillSource, Now, Reason};
pub use explain::{decision_json, DecisionReport, Explanation};
pub use overlay::{NoOverlay, Overlay, PinEffect, PinLookup, Trip};
// The steps are defined below this layer (condition matching writes them too) and are part
// of this layer's `Explanation`.
pub use crate::trace::{Actual, Pin, Reroute, RuleOutcome, Step};
