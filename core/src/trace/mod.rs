//! The steps of a decision, recorded for `explain` and compiled away for plain evaluation.
//! What a step can say is in [`steps`].

mod steps;

pub use steps::{Actual, Pin, Reroute, RuleOutcome, Step};

/// Receives the steps of a decision. [`NoTrace`] drops them at compile time.
pub(crate) trait Tracer {
    /// Records a step; `make` runs only when tracing is enabled.
    fn note(&mut self, make: impl FnOnce() -> Step);
}

/// The tracer of plain evaluation: records nothing, costs nothing.
#[derive(Debug, Default)]
pub(crate) struct NoTrace;

impl Tracer for NoTrace {
    #[inline(always)]
    fn note(&mut self, _make: impl FnOnce() -> Step) {}
}

/// Collects steps for `explain`.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    pub(crate) steps: Vec<Step>,
}

impl Tracer for Trace {
    fn note(&mut self, make: impl FnOnce() -> Step) {
        self.steps.push(make());
    }
}
