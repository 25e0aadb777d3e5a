//! The hook through which a fleet of processes shares runtime state (budgets and guardrail
//! evidence), implemented outside the core (over Redis, in `flagrail-fleet`).
//!
//! The core never does I/O on the evaluation path, and neither may an implementation of
//! [`SharedState`]: every method is called with a runtime lock held, on the path of an
//! evaluation or of a recorded outcome, so it must answer from memory — a budget lease already
//! granted, an outcome added to a pending tally — and leave the round trips to its own
//! background thread. docs/fleet.md ("Shared state") describes the implementation and its
//! bounds.
//!
//! What the hook does **not** cover, and how it is shared instead:
//! - guardrail *trips*: the fleet decides them on fleet totals and lays them over each
//!   process with [`crate::Flags::apply_fleet_trip`] (a trip this process decides alone is
//!   offered to the fleet through [`SharedState::guardrail_tripped`]);
//! - sticky pins: a pin store, installed by the binding (the pluggable store of
//!   [`crate::runtime::sticky`]);
//! - metrics: the fleet reads each process's [`crate::Flags::metrics`] in the background.

use serde_json::Value;

use crate::document::budget::Budget;
use crate::document::guardrail::Guardrail;
use crate::runtime::stats::Tally;
use crate::time::Millis;

/// State shared with the other processes of a fleet. Every method must return at once
/// (no I/O, no waiting on a lock held across I/O): see the module documentation.
pub trait SharedState: Send + Sync {
    /// Whether the fleet has no room left in `budget` for `scope` for this process: its
    /// lease is spent (or, while the fleet is unreachable, its local share). The process's
    /// own book is checked as well; either one being exhausted is enough.
    fn budget_exhausted(&self, budget: &Budget, scope: &str, now: Millis) -> bool;

    /// Counts `amount` spent now against `budget` for `scope` (a request, or a call's actual
    /// cost).
    fn budget_charge(&self, budget: &Budget, scope: &str, amount: f64, now: Millis);

    /// Holds `amount` for a call in flight (a `max_cost` budget's estimate).
    fn budget_reserve(&self, budget: &Budget, scope: &str, amount: f64, now: Millis);

    /// Gives back a reservation.
    fn budget_release(&self, budget: &Budget, scope: &str, amount: f64, now: Millis);

    /// One observation of `guardrail`'s metric for `variant` of `flag` (the same tally the
    /// local window receives), to be added to the fleet's totals.
    fn guardrail_observed(
        &self,
        flag: &str,
        variant: &str,
        guardrail: &Guardrail,
        observation: Tally,
        now: Millis,
    );

    /// This process tripped `guardrail` on its own evidence: offer the trip to the fleet.
    fn guardrail_tripped(
        &self,
        flag: &str,
        variant: &str,
        guardrail: &Guardrail,
        since: Millis,
        probe_from: Millis,
    );

    /// What `status()["fleet"]` reports: connection, last error, fallback mode, pending spend.
    fn status_json(&self, now: Millis) -> Value;
}

/// An optional [`SharedState`], printable (runtime structs derive `Debug`).
#[derive(Clone, Default)]
pub(crate) struct SharedHook(pub Option<std::sync::Arc<dyn SharedState>>);

impl std::fmt::Debug for SharedHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "SharedHook(attached)"
        } else {
            "SharedHook(none)"
        })
    }
}

impl SharedHook {
    #[inline]
    pub(crate) fn get(&self) -> Option<&dyn SharedState> {
        self.0.as_deref()
    }
}
