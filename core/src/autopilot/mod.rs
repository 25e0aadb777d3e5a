//! The autopilot: ramps that advance on evidence and roll back on proven harm.
//!
//! Given what a ramping candidate and its control collected in the live step (per unit of
//! randomisation: counts, sums and sums of squares per metric), the step's hold time and the
//! pre-committed [`AutopilotSpec`], [`decide()`] says **promote**, **hold**, **roll back** (or
//! **halt**, if the spec says so) or **revert** (maximum hold without proof), and returns the
//! evidence with it ([`Verdict`], serialisable). The test is an anytime-valid confidence
//! sequence, so looking every minute does not inflate false alarms, and a sample-ratio check
//! freezes decisions on a broken split. docs/autopilot.md states the rule, its formulas and
//! its guarantees.
//!
//! Pure: no I/O and no clock; the caller passes the hold time in. [`sim`] runs simulated
//! rollouts through the same code (seeded, reproducible). [`events`] turns events JSON lines
//! into runs and per-unit arm evidence; [`look`] and [`fields_after`] read and move a ramp
//! through its own fields (`start`, `paused_at`, `rolled_back`).

mod decide;
pub mod events;
mod govern;
pub mod sim;
mod spec;
pub mod stats;

pub use decide::{
    decide, ArmEvidence, ArmSummary, Decision, Method, MetricEvidence, MetricStatus, Observation,
    Reason, Samples, Scale, Side, SrmCheck, Verdict,
};
pub(crate) use govern::fields_after;
pub use govern::{look, GovernedState, LastDecision, MetricBrief, RampFields, RampLook};
pub use spec::{
    AutopilotSpec, HoldWindow, Limit, MetricLimit, RegressionAction, SpecProblem, SrmTest,
};
pub(crate) use spec::{Better, DEFAULT_ALPHA, DEFAULT_SRM_P_VALUE};
pub use stats::Moments;
