//! What this process lays over the document when it evaluates: local kills, tripped
//! guardrails, exhausted budgets and sticky pins. The live handle implements [`Overlay`]; the
//! document alone (CLI, tests) uses [`NoOverlay`].

use std::sync::Arc;

use crate::document::budget::Budget;
use crate::document::guardrail::GuardAction;
use crate::document::Flag;
use crate::hash::{scale, SaltedHasher, PERCENT_TOTAL};
use crate::time::Millis;

/// State of this process that changes decisions without touching the document: local kills,
/// tripped guardrails, budgets and sticky pins. Every method is required, not defaulted: an
/// overlay that forgot to forward one would silently ignore that safety mechanism.
pub trait Overlay {
    /// Whether every flag is killed locally.
    fn all_killed(&self) -> bool;
    /// Whether this flag is killed locally.
    fn flag_killed(&self, flag: &str) -> bool;
    /// The tripped guardrails of this flag (usually none).
    fn trips(&self, flag: &str) -> &[Trip];
    /// Whether `budget` is exhausted for `scope` (the value of its `per` attribute; empty for
    /// a budget of the whole flag or document).
    fn budget_exhausted(&self, budget: &Budget, scope: &str) -> bool;
    /// The pin of `conversation` for a sticky flag.
    fn pin(&self, flag: &Flag, conversation: &str) -> PinLookup;
}

/// Nothing overlaid: the document alone decides (CLI, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOverlay;

impl Overlay for NoOverlay {
    fn all_killed(&self) -> bool {
        false
    }
    fn flag_killed(&self, _flag: &str) -> bool {
        false
    }
    fn trips(&self, _flag: &str) -> &[Trip] {
        &[]
    }
    fn budget_exhausted(&self, _budget: &Budget, _scope: &str) -> bool {
        false
    }
    fn pin(&self, _flag: &Flag, _conversation: &str) -> PinLookup {
        PinLookup::Absent
    }
}

/// A tripped guardrail as evaluation sees it (held in the process's overrides).
#[derive(Debug, Clone)]
pub struct Trip {
    pub(crate) guardrail: Arc<str>,
    /// The variant whose outcomes tripped it.
    pub(crate) variant: Arc<str>,
    pub(crate) action: GuardAction,
    pub(crate) since: Millis,
    /// From this instant on the guardrail is half-open: probing units are not affected.
    pub(crate) probe_from: Millis,
    /// Share of units (over 100 000) that probe.
    pub(crate) probe_share: u32,
    /// Hashes units for the probe draw (salt `<flag salt>/probe/<guardrail id>`), independent
    /// of every split of the flag.
    pub(crate) probe_hasher: SaltedHasher,
}

impl Trip {
    /// Whether a unit with this id is a probe at `now` (only while half-open).
    #[inline]
    pub(crate) fn is_probe(&self, now: Millis, unit: Option<&str>) -> bool {
        if now < self.probe_from {
            return false;
        }
        match unit {
            Some(unit) => scale(self.probe_hasher.hash(unit), PERCENT_TOTAL) < self.probe_share,
            None => false,
        }
    }

    pub(crate) fn is_half_open(&self, now: Millis) -> bool {
        now >= self.probe_from
    }

    /// Whether this trip keeps units off `variant` (a `fallback` or `kill` trip of that
    /// variant): a chain or a re-route must not pick it.
    pub(crate) fn takes_out(&self, variant: &str) -> bool {
        &*self.variant == variant
            && matches!(self.action, GuardAction::Fallback | GuardAction::Kill)
    }
}

/// What the caller of an evaluation does with the pin store afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PinEffect {
    /// Nothing (not a sticky flag, no conversation id, or a decision that is never pinned:
    /// `KILLED`, `BUDGET`).
    #[default]
    None,
    /// A pin served (`STICKY`): leave it.
    Keep,
    /// Pin the served variant (a first decision, or one that replaced a broken pin).
    Write,
    /// The pin was broken and the decision is not pinnable: remove it.
    Delete,
}

/// What the store held for this conversation, resolved against the flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinLookup {
    Absent,
    /// The pinned variant, by index.
    Variant(usize),
    /// A pin naming a variant the flag no longer has.
    Gone,
}

impl PinLookup {
    /// Resolves a stored variant id.
    pub(crate) fn of(flag: &Flag, stored: Option<&str>) -> PinLookup {
        match stored {
            None => PinLookup::Absent,
            Some(id) => flag
                .variant_position(id)
                .map_or(PinLookup::Gone, PinLookup::Variant),
        }
    }
}
