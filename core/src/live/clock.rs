//! Where the live handle reads "now": the system clock, or a manual one for tests.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::evaluate::Now;
use crate::time::{now_millis, Millis};

/// A source of wall-clock time, injectable so that ramps can be tested.
pub trait Clock: Send + Sync {
    fn now_millis(&self) -> Millis;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> Millis {
        now_millis()
    }
}

/// A clock that only moves when told to (tests, simulations).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(at: Millis) -> Self {
        ManualClock(AtomicI64::new(at))
    }
    pub fn set(&self, at: Millis) {
        self.0.store(at, Ordering::SeqCst);
    }
    pub fn advance(&self, by: Millis) {
        self.0.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

impl Clock for Arc<ManualClock> {
    fn now_millis(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

pub(crate) struct ClockNow<'a>(pub(crate) &'a dyn Clock);

impl Now for ClockNow<'_> {
    #[inline]
    fn now(&self) -> Millis {
        self.0.now_millis()
    }
}
