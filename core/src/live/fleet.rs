//! What the live handle offers a fleet ([`crate::runtime::shared`]): attaching the shared
//! state, laying the fleet's guardrail trips over this process, and a weak handle for the
//! fleet's background thread (which must not keep a closed handle alive).

use std::sync::{Arc, Weak};

use serde_json::Value;

use crate::document::guardrail::Guardrail;
use crate::document::Flag;
use crate::live::handle::{Flags, Shared};
use crate::runtime::guardrail::{GuardState, Transition};
use crate::runtime::shared::{SharedHook, SharedState};
use crate::runtime::GuardEntry;
use crate::time::Millis;

/// A handle that does not keep the live state alive: [`WeakFlags::upgrade`] fails once every
/// [`Flags`] clone is dropped.
#[derive(Clone)]
pub struct WeakFlags {
    shared: Weak<Shared>,
}

impl std::fmt::Debug for WeakFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WeakFlags")
    }
}

impl WeakFlags {
    pub fn upgrade(&self) -> Option<Flags> {
        self.shared.upgrade().map(|shared| Flags { shared })
    }
}

impl Flags {
    /// A handle for background threads that must stop when the app drops its handle.
    pub fn downgrade(&self) -> WeakFlags {
        WeakFlags {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Shares budgets and guardrail evidence through `state` from now on (`None`: stop; every
    /// budget is then enforced by this process's own book again). Attaching has no cost for
    /// flags without budgets or guardrails.
    pub fn share_state(&self, state: Option<Arc<dyn SharedState>>) {
        self.shared.runtime.set_shared(SharedHook(state));
    }

    /// Whether shared state is attached.
    pub fn shares_state(&self) -> bool {
        self.shared.runtime.shared().0.is_some()
    }

    /// What the shared state reports about itself (`status()["fleet"]`).
    pub(crate) fn fleet_status(&self, now: Millis) -> Option<Value> {
        self.shared
            .runtime
            .shared()
            .get()
            .map(|fleet| fleet.status_json(now))
    }

    /// This process's trip of `guardrail` on `variant` of `flag`: `(since, probe_from)`.
    pub fn guardrail_trip(
        &self,
        flag: &str,
        variant: &str,
        guardrail: &str,
    ) -> Option<(Millis, Millis)> {
        let state = self.shared.runtime.lock();
        state
            .guards
            .iter()
            .find(|((f, v, g), _)| &**f == flag && &**v == variant && &**g == guardrail)
            .and_then(|(_, entry)| entry.state.trip())
    }

    /// Lays the fleet's state of `guardrail` on `variant` of `flag` over this process:
    /// `Some((since, probe_from))` trips it (half-open from `probe_from`), `None` closes it.
    /// Returns whether this process's state changed. A flag, variant or guardrail the live
    /// document does not have is ignored (`false`).
    pub fn apply_fleet_trip(
        &self,
        flag: &str,
        variant: &str,
        guardrail: &str,
        trip: Option<(Millis, Millis)>,
    ) -> bool {
        let document = self.document();
        let Some(flag_def) = document.flag(flag) else {
            return false;
        };
        let Some(variant_index) = flag_def.variant_position(variant) else {
            return false;
        };
        let Some(config) = flag_def
            .guardrails
            .iter()
            .find(|g| &*g.id == guardrail && g.variants.contains(&variant_index))
        else {
            return false;
        };
        let variant_id = Arc::clone(&flag_def.variants[variant_index].id);
        let changed = {
            let mut state = self.shared.runtime.lock();
            let key = (
                Arc::clone(&flag_def.key),
                Arc::clone(&variant_id),
                Arc::clone(&config.id),
            );
            let entry = state.guards.entry(key).or_insert_with(|| GuardEntry {
                config: config.clone(),
                state: GuardState::new(config),
                salt: flag_def.salt.clone(),
            });
            entry.config = config.clone();
            entry.state.set_fleet_trip(trip)
        };
        if changed {
            let trips = self.active_trips(&flag_def.key);
            self.publish_trips(&flag_def.key, trips);
        }
        changed
    }

    /// Offers the trips this process decided on its own evidence to the fleet.
    pub(crate) fn offer_trips_to_fleet(
        &self,
        flag: &Flag,
        transitions: &[(Arc<str>, Guardrail, Transition)],
    ) {
        let hook = self.shared.runtime.shared();
        let Some(fleet) = hook.get() else {
            return;
        };
        for (variant, guardrail, transition) in transitions {
            if let Transition::Tripped(_) = transition {
                if let Some((since, probe_from)) =
                    self.guardrail_trip(&flag.key, variant, &guardrail.id)
                {
                    fleet.guardrail_tripped(&flag.key, variant, guardrail, since, probe_from);
                }
            }
        }
    }
}
