//! What this process lays over the document without touching it: local kills and tripped
//! guardrails. Budgets and pins are runtime state, read through the snapshot's overlay.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::document::budget::Budget;
use crate::document::Flag;
use crate::evaluate::{Overlay, PinLookup, Trip};
use crate::time::Millis;

/// One local kill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalKill {
    pub reason: Option<String>,
    pub at: Millis,
}

/// What this process overlays on the document: kills applied with [`crate::Flags::kill`] and
/// tripped guardrails. Neither touches the document.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub all: Option<LocalKill>,
    pub flags: FxHashMap<Box<str>, LocalKill>,
    /// Tripped (or half-open) guardrails by flag key.
    pub trips: FxHashMap<Arc<str>, Vec<Trip>>,
}

impl Overrides {
    pub(super) fn is_empty(&self) -> bool {
        self.all.is_none() && self.flags.is_empty() && self.trips.is_empty()
    }
}

impl Overlay for Overrides {
    #[inline]
    fn all_killed(&self) -> bool {
        self.all.is_some()
    }
    #[inline]
    fn flag_killed(&self, flag: &str) -> bool {
        !self.flags.is_empty() && self.flags.contains_key(flag)
    }
    #[inline]
    fn trips(&self, flag: &str) -> &[Trip] {
        if self.trips.is_empty() {
            return &[];
        }
        self.trips.get(flag).map_or(&[], Vec::as_slice)
    }
    /// Budgets and pins are runtime state, not overrides: see [`crate::live::snapshot::LiveOverlay`].
    fn budget_exhausted(&self, _budget: &Budget, _scope: &str) -> bool {
        false
    }
    fn pin(&self, _flag: &Flag, _conversation: &str) -> PinLookup {
        PinLookup::Absent
    }
}
