//! Scheduled percentage ramps.
//!
//! A ramp gives its variant the bucket range `[0, p·100000)` where `p` is the percentage live at
//! the evaluation time. The percentage is a pure function of the document and the clock, and it
//! only grows along the schedule, so a unit that is in the variant at one step is in it at every
//! later step (monotonic). Pausing freezes the clock of the ramp; rolling back sets `p` to 0.

use crate::hash::PERCENT_TOTAL;
use crate::time::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RampStep {
    /// Percentage in thousandths of a percent (`1 %` is 1000; `100 %` is 100 000).
    pub milli_percent: u32,
    /// How long the step holds before the next one; `None` only on the last step.
    pub(crate) hold: Option<Millis>,
    /// When the step begins (start + the holds of the earlier steps).
    pub(crate) begins: Millis,
}

#[derive(Debug, Clone)]
pub struct Ramp {
    pub variant: usize,
    /// Served to units outside the ramp; `None` lets them fall through to later rules.
    pub baseline: Option<usize>,
    pub start: Millis,
    pub steps: Vec<RampStep>,
    /// The schedule is frozen at this instant (the step live then holds indefinitely).
    pub paused_at: Option<Millis>,
    /// Rolled back to 0 %: nobody is in the ramp, whatever the schedule says.
    pub rolled_back: bool,
    /// The statistical gate that moves this ramp (`autopilot` in the document): its place in
    /// the flag's `autopilots`, plus one (see `Flag::autopilot_of`). An index, not the spec, so
    /// that it fits the padding after `rolled_back` and the rules evaluation walks keep their
    /// size. Evaluation never reads it: the autopilot acts by rewriting `start`, `paused_at`
    /// and `rolled_back`.
    pub(crate) autopilot: Option<std::num::NonZeroU32>,
}

/// Where a ramp stands at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RampPosition {
    /// Index of the live step; `None` before the start or when rolled back.
    pub(crate) step: Option<usize>,
    pub(crate) milli_percent: u32,
    pub(crate) paused: bool,
    pub(crate) rolled_back: bool,
    /// When the next step begins, if one is scheduled and the ramp is not paused.
    pub(crate) next_step_at: Option<Millis>,
}

impl Ramp {
    /// The ramp's position at `now`.
    pub(crate) fn position(&self, now: Millis) -> RampPosition {
        let paused = self.paused_at.is_some_and(|p| p <= now);
        let effective_now = match self.paused_at {
            Some(paused_at) => now.min(paused_at),
            None => now,
        };
        if self.rolled_back {
            return RampPosition {
                step: None,
                milli_percent: 0,
                paused,
                rolled_back: true,
                next_step_at: None,
            };
        }
        let live = self.steps.iter().rposition(|s| s.begins <= effective_now);
        let next_step_at = match live {
            None => self.steps.first().map(|s| s.begins),
            Some(i) => self.steps.get(i + 1).map(|s| s.begins),
        }
        .filter(|_| !paused);
        RampPosition {
            step: live,
            milli_percent: live.map_or(0, |i| self.steps[i].milli_percent),
            paused,
            rolled_back: false,
            next_step_at,
        }
    }

    /// The percentage live at `now`, in thousandths of a percent.
    #[inline]
    pub(crate) fn milli_percent_at(&self, now: Millis) -> u32 {
        self.position(now).milli_percent
    }

    /// Whether a unit in `bucket` (over 100 000) is in the ramped variant at `milli_percent`.
    #[inline]
    pub(crate) fn includes(bucket: u32, milli_percent: u32) -> bool {
        debug_assert!(milli_percent <= PERCENT_TOTAL);
        bucket < milli_percent
    }

    /// Every instant at which the percentage changes, with the new percentage (for timelines).
    pub fn schedule(&self) -> Vec<(Millis, u32)> {
        self.steps
            .iter()
            .map(|s| (s.begins, s.milli_percent))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Ramp {
        let hour = 3_600_000;
        let steps = [
            (1000, Some(24 * hour)),
            (5000, Some(48 * hour)),
            (100_000, None),
        ];
        let mut begins = 1_000_000;
        let steps = steps
            .iter()
            .map(|&(milli_percent, hold)| {
                let step = RampStep {
                    milli_percent,
                    hold,
                    begins,
                };
                begins += hold.unwrap_or(0);
                step
            })
            .collect();
        Ramp {
            variant: 1,
            baseline: None,
            start: 1_000_000,
            steps,
            paused_at: None,
            rolled_back: false,
            autopilot: None,
        }
    }

    #[test]
    fn percentage_follows_the_schedule() {
        let r = ramp();
        let hour = 3_600_000;
        assert_eq!(r.milli_percent_at(0), 0);
        assert_eq!(r.milli_percent_at(1_000_000), 1000);
        assert_eq!(r.milli_percent_at(1_000_000 + 24 * hour - 1), 1000);
        assert_eq!(r.milli_percent_at(1_000_000 + 24 * hour), 5000);
        assert_eq!(r.milli_percent_at(1_000_000 + 72 * hour), 100_000);
        assert_eq!(r.milli_percent_at(i64::MAX), 100_000);
    }

    #[test]
    fn pause_freezes_and_rollback_zeroes() {
        let hour = 3_600_000;
        let mut r = ramp();
        r.paused_at = Some(1_000_000 + hour);
        assert_eq!(r.milli_percent_at(1_000_000 + 100 * hour), 1000);
        assert!(r.position(1_000_000 + 100 * hour).paused);
        assert_eq!(r.position(1_000_000 + 100 * hour).next_step_at, None);
        r.rolled_back = true;
        assert_eq!(r.milli_percent_at(1_000_000 + 100 * hour), 0);
    }
}
