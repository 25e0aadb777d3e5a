//! Sticky conversations: the first decision in a conversation is pinned, and the conversation
//! keeps its variant while ramps move and rules change, until the pin's TTL.
//!
//! What a pin may override is decided in [`crate::evaluate`] (step 3): a kill still wins, and a
//! pin whose variant a guardrail has tripped, or that names a variant the flag no longer has, is
//! broken and replaced by a fresh decision. Pins live in a bounded in-memory store
//! ([`MemoryPins`]) unless a binding installs a shared store (get / set / delete with TTL): then
//! the binding reads the pin before evaluating, passes it in, and carries out the
//! [`crate::evaluate::PinEffect`] the decision returns.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use rustc_hash::FxHashMap;

use crate::time::Millis;

/// Pins kept in memory before the oldest are forgotten.
pub(crate) const MAX_MEMORY_PINS: usize = 100_000;

/// The key of a pin in a shared store: `flagrail/pin/<flag>/<conversation>`.
pub fn pin_key(flag: &str, conversation: &str) -> String {
    format!("flagrail/pin/{flag}/{conversation}")
}

#[derive(Debug)]
struct Pin {
    variant: Arc<str>,
    expires: Millis,
    /// Insertion number, to tell a live entry from a stale slot of the eviction queue.
    seq: u64,
}

#[derive(Debug, Default)]
pub(crate) struct PinTable {
    by_flag: FxHashMap<Arc<str>, FxHashMap<Box<str>, Pin>>,
    order: VecDeque<(Arc<str>, Box<str>, u64)>,
    len: usize,
    next_seq: u64,
}

/// The default pin store: in memory, per handle, at most [`MAX_MEMORY_PINS`] pins (the oldest
/// are forgotten first; an expired pin is dropped when read).
#[derive(Debug, Default)]
pub struct MemoryPins {
    table: Mutex<PinTable>,
}

impl MemoryPins {
    fn lock(&self) -> MutexGuard<'_, PinTable> {
        // Every update leaves the table consistent: keep going after a panic elsewhere.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The table's lock if no other thread holds it (see [`super::ForkHold`]).
    pub(crate) fn try_hold(&self) -> Option<MutexGuard<'_, PinTable>> {
        super::try_hold(&self.table)
    }

    /// The pinned variant id of this conversation, if a live pin exists.
    pub(crate) fn get(&self, flag: &str, conversation: &str, now: Millis) -> Option<Arc<str>> {
        let mut table = self.lock();
        let pins = table.by_flag.get_mut(flag)?;
        let pin = pins.get(conversation)?;
        if pin.expires > now {
            return Some(Arc::clone(&pin.variant));
        }
        pins.remove(conversation);
        table.len -= 1;
        None
    }

    pub fn set(&self, flag: &Arc<str>, conversation: &str, variant: &Arc<str>, expires: Millis) {
        let mut table = self.lock();
        let seq = table.next_seq;
        table.next_seq += 1;
        let previous = table.by_flag.entry(Arc::clone(flag)).or_default().insert(
            Box::from(conversation),
            Pin {
                variant: Arc::clone(variant),
                expires,
                seq,
            },
        );
        if previous.is_none() {
            table.len += 1;
        }
        table
            .order
            .push_back((Arc::clone(flag), Box::from(conversation), seq));
        while table.len > MAX_MEMORY_PINS {
            let Some((flag, conversation, seq)) = table.order.pop_front() else {
                break;
            };
            let removed = table.by_flag.get_mut(&flag).is_some_and(|pins| {
                pins.get(&conversation).is_some_and(|p| p.seq == seq)
                    && pins.remove(&conversation).is_some()
            });
            if removed {
                table.len -= 1;
            }
        }
        // The queue keeps one slot per write: compact it when rewrites made it much longer
        // than the table.
        if table.order.len() > 2 * MAX_MEMORY_PINS {
            let PinTable { by_flag, order, .. } = &mut *table;
            order.retain(|(f, c, s)| {
                by_flag
                    .get(f)
                    .and_then(|pins| pins.get(c))
                    .is_some_and(|p| p.seq == *s)
            });
        }
    }

    pub(crate) fn delete(&self, flag: &str, conversation: &str) {
        let mut table = self.lock();
        if let Some(pins) = table.by_flag.get_mut(flag) {
            if pins.remove(conversation).is_some() {
                table.len -= 1;
            }
        }
    }

    /// Pins held (expired ones included until read or evicted).
    pub fn len(&self) -> usize {
        self.lock().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_expire_and_are_bounded() {
        let pins = MemoryPins::default();
        let flag: Arc<str> = Arc::from("f");
        let v: Arc<str> = Arc::from("a");
        pins.set(&flag, "c1", &v, 1_000);
        assert_eq!(pins.get("f", "c1", 999).as_deref(), Some("a"));
        assert_eq!(pins.get("f", "c1", 1_000), None, "expired at its TTL");
        assert_eq!(pins.len(), 0);
        for i in 0..MAX_MEMORY_PINS + 10 {
            pins.set(&flag, &format!("c{i}"), &v, 10_000);
        }
        assert_eq!(pins.len(), MAX_MEMORY_PINS);
        assert_eq!(pins.get("f", "c0", 0), None, "the oldest went first");
        assert!(pins
            .get("f", &format!("c{}", MAX_MEMORY_PINS + 9), 0)
            .is_some());
    }

    #[test]
    fn rewriting_a_pin_does_not_evict_it_early() {
        let pins = MemoryPins::default();
        let flag: Arc<str> = Arc::from("f");
        let v: Arc<str> = Arc::from("a");
        pins.set(&flag, "keep", &v, 10);
        pins.set(&flag, "keep", &v, 10);
        pins.delete("f", "keep");
        assert!(pins.is_empty());
    }
}
