//! The steps of a decision, recorded for `explain` and compiled away for plain evaluation.

use serde_json::Value;

/// Receives the steps of a decision. [`NoTrace`] drops them at compile time.
pub trait Tracer {
    /// Records a note; `make` runs only when tracing is enabled.
    fn note(&mut self, make: impl FnOnce() -> Value);
}

/// The tracer of plain evaluation: records nothing, costs nothing.
#[derive(Debug, Default)]
pub struct NoTrace;

impl Tracer for NoTrace {
    #[inline(always)]
    fn note(&mut self, _make: impl FnOnce() -> Value) {}
}

/// Collects notes for `explain`.
#[derive(Debug, Default)]
pub struct Trace {
    pub notes: Vec<Value>,
}

impl Tracer for Trace {
    fn note(&mut self, make: impl FnOnce() -> Value) {
        self.notes.push(make());
    }
}
