//! Cost circuit breakers: budgets of requests or money over a rolling window, per unit, per flag
//! or for the whole document.
//!
//! A budget is *exhausted* for a scope (one user, the flag, everything) when what was spent in
//! its window plus what calls in flight have reserved reaches the limit. Evaluation then serves
//! the budget's action (decision step 2 for `kill`, step 4 for `serve`, see
//! [`crate::evaluate`]).
//!
//! Enforcement happens before the call: `call` checks and reserves under one lock — a request
//! for a `max_requests` budget, the variant's estimated maximum cost ([`crate::Variant::max_cost`]) for a
//! `max_cost` budget — and reconciles with the actual cost when the attempt ends. So a burst of
//! concurrent calls against a nearly spent budget overshoots by at most what the calls admitted
//! last had reserved, and by nothing when the estimates hold.
//!
//! Windows are rolling and kept in [`SLOTS`] slots of `window / SLOTS` each: an amount spent at
//! time `t` counts until the slot that holds `t` leaves the window, which is between
//! `window - window / SLOTS` and `window` after `t` (1 h: between 59 and 60 minutes).

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::{json, Value};

use crate::document::budget::Budget;
use crate::time::{format_duration, Millis};

/// Slots per window: the resolution of a window is `window / SLOTS`.
pub const SLOTS: i64 = 60;

/// Scopes (distinct units) tracked per budget before idle ones are forgotten. A scope whose
/// window is empty and that has nothing in flight carries no information and goes first; if
/// every scope is active, the least recently touched one is dropped (and counted).
pub const MAX_SCOPES_PER_BUDGET: usize = 100_000;

/// A budget's state for one scope.
#[derive(Debug, Default)]
struct Ledger {
    /// `(slot number, amount)` of non-empty slots, oldest first.
    slots: VecDeque<(i64, f64)>,
    spent: f64,
    reserved: f64,
    exhausted: bool,
    touched: Millis,
}

impl Ledger {
    fn advance(&mut self, now: Millis, slot_length: Millis) {
        let current = now.div_euclid(slot_length);
        while let Some(&(number, amount)) = self.slots.front() {
            if current - number < SLOTS {
                break;
            }
            self.spent -= amount;
            self.slots.pop_front();
        }
        if self.slots.is_empty() {
            // Floating-point residue of additions and subtractions.
            self.spent = 0.0;
        }
    }

    fn add(&mut self, now: Millis, slot_length: Millis, amount: f64) {
        let number = now.div_euclid(slot_length);
        match self.slots.back_mut() {
            Some((last, total)) if *last == number => *total += amount,
            _ => self.slots.push_back((number, amount)),
        }
        self.spent += amount;
    }

    fn is_idle(&self) -> bool {
        self.slots.is_empty() && self.reserved <= 0.0
    }
}

/// All scopes of one budget.
#[derive(Debug)]
struct BudgetState {
    window: Millis,
    scopes: FxHashMap<Box<str>, Ledger>,
    evicted: u64,
}

impl BudgetState {
    fn new(window: Millis) -> BudgetState {
        BudgetState {
            window,
            scopes: FxHashMap::default(),
            evicted: 0,
        }
    }

    fn slot_length(&self) -> Millis {
        (self.window / SLOTS).max(1)
    }

    /// The ledger of `scope`, created on first use (forgetting idle scopes when full).
    fn ledger(&mut self, scope: &str, now: Millis) -> &mut Ledger {
        if !self.scopes.contains_key(scope) && self.scopes.len() >= MAX_SCOPES_PER_BUDGET {
            self.make_room(now);
        }
        let slot_length = self.slot_length();
        let ledger = self.scopes.entry(Box::from(scope)).or_default();
        ledger.advance(now, slot_length);
        ledger.touched = now;
        ledger
    }

    fn make_room(&mut self, now: Millis) {
        let slot_length = self.slot_length();
        self.scopes.retain(|_, ledger| {
            ledger.advance(now, slot_length);
            !ledger.is_idle()
        });
        if self.scopes.len() >= MAX_SCOPES_PER_BUDGET {
            let oldest = self
                .scopes
                .iter()
                .filter(|(_, l)| l.reserved <= 0.0)
                .min_by_key(|(_, l)| l.touched)
                .map(|(k, _)| k.clone());
            if let Some(key) = oldest {
                self.scopes.remove(&key);
                self.evicted += 1;
            }
        }
    }
}

/// A change of a budget's state for one scope, turned into an event by the caller.
#[derive(Debug, Clone)]
pub struct BudgetTransition {
    pub budget: Budget,
    pub scope: Box<str>,
    pub exhausted: bool,
    pub spent: f64,
    pub reserved: f64,
}

/// The state of every budget of a handle.
#[derive(Debug, Default)]
pub struct BudgetBook {
    budgets: FxHashMap<Arc<str>, BudgetState>,
    /// Transitions not yet turned into events.
    pending: Vec<BudgetTransition>,
}

impl BudgetBook {
    fn state(&mut self, budget: &Budget) -> &mut BudgetState {
        let state = self
            .budgets
            .entry(Arc::clone(&budget.key))
            .or_insert_with(|| BudgetState::new(budget.window));
        if state.window != budget.window {
            // A reloaded document changed the window: the old slots mean something else now.
            *state = BudgetState::new(budget.window);
        }
        state
    }

    /// Whether `budget` is exhausted for `scope` at `now` (records a transition when that
    /// changed since the last look).
    pub fn is_exhausted(&mut self, budget: &Budget, scope: &str, now: Millis) -> bool {
        let state = self.state(budget);
        if !state.scopes.contains_key(scope) {
            // Nothing spent or reserved (limits are positive): do not track a scope for a look.
            return false;
        }
        let ledger = state.ledger(scope, now);
        let exhausted = ledger.spent + ledger.reserved >= budget.limit;
        let changed = exhausted != ledger.exhausted;
        ledger.exhausted = exhausted;
        let (spent, reserved) = (ledger.spent, ledger.reserved);
        if changed {
            self.pending.push(BudgetTransition {
                budget: budget.clone(),
                scope: Box::from(scope),
                exhausted,
                spent,
                reserved,
            });
        }
        exhausted
    }

    /// Counts `amount` as spent now.
    pub fn charge(&mut self, budget: &Budget, scope: &str, amount: f64, now: Millis) {
        if amount > 0.0 {
            let state = self.state(budget);
            let slot_length = state.slot_length();
            state.ledger(scope, now).add(now, slot_length, amount);
        }
        self.is_exhausted(budget, scope, now);
    }

    /// Holds `amount` for a call in flight.
    pub fn reserve(&mut self, budget: &Budget, scope: &str, amount: f64, now: Millis) {
        if amount > 0.0 {
            self.state(budget).ledger(scope, now).reserved += amount;
            self.is_exhausted(budget, scope, now);
        }
    }

    /// Gives back a reservation (the call ended; its actual cost is charged separately).
    pub fn release(&mut self, budget: &Budget, scope: &str, amount: f64, now: Millis) {
        if amount > 0.0 {
            let ledger = self.state(budget).ledger(scope, now);
            ledger.reserved = (ledger.reserved - amount).max(0.0);
        }
    }

    pub fn take_transitions(&mut self) -> Vec<BudgetTransition> {
        std::mem::take(&mut self.pending)
    }

    /// The state of `budget` for status and metrics: the single scope's spend, or counts of
    /// the scopes of a per-unit budget.
    pub fn describe(&mut self, budget: &Budget, now: Millis) -> Value {
        let state = self.state(budget);
        let slot_length = state.slot_length();
        let mut spent = 0.0;
        let mut reserved = 0.0;
        let mut exhausted_scopes = 0u64;
        for ledger in state.scopes.values_mut() {
            ledger.advance(now, slot_length);
            spent += ledger.spent;
            reserved += ledger.reserved;
            if ledger.spent + ledger.reserved >= budget.limit {
                exhausted_scopes += 1;
            }
        }
        let mut out = json!({
            "budget": &*budget.id,
            "flag": budget.flag.as_deref(),
            "per": budget.per.as_deref(),
            "measure": budget.measure.as_str(),
            "limit": budget.limit,
            "window": format_duration(budget.window),
            "action": budget.action_str(),
        });
        if budget.per.is_some() {
            out["scopes"] = json!(state.scopes.len());
            out["exhausted_scopes"] = json!(exhausted_scopes);
            out["evicted_scopes"] = json!(state.evicted);
            out["spent_total"] = json!(spent);
        } else {
            out["spent"] = json!(spent);
            out["reserved"] = json!(reserved);
            out["remaining"] = json!((budget.limit - spent - reserved).max(0.0));
            out["exhausted"] = json!(exhausted_scopes > 0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::budget::{BudgetAction, Measure};

    fn budget(limit: f64) -> Budget {
        Budget {
            id: Arc::from("b"),
            key: Arc::from("f/b"),
            flag: Some(Arc::from("f")),
            per: None,
            measure: Measure::Cost,
            limit,
            window: 60_000,
            action: BudgetAction::Kill,
        }
    }

    #[test]
    fn spend_leaves_the_window_with_its_slot() {
        let b = budget(1.0);
        let mut book = BudgetBook::default();
        book.charge(&b, "", 1.0, 0);
        assert!(book.is_exhausted(&b, "", 59_999));
        // Slot length is 1 s: the slot of t=0 covers [0, 1000) and leaves at t=60 s.
        assert!(!book.is_exhausted(&b, "", 60_000));
        let kinds: Vec<bool> = book
            .take_transitions()
            .iter()
            .map(|t| t.exhausted)
            .collect();
        assert_eq!(kinds, [true, false]);
    }

    #[test]
    fn reservations_count_until_released() {
        let b = budget(1.0);
        let mut book = BudgetBook::default();
        book.reserve(&b, "", 0.6, 0);
        assert!(!book.is_exhausted(&b, "", 0));
        book.reserve(&b, "", 0.6, 0);
        assert!(book.is_exhausted(&b, "", 0));
        book.release(&b, "", 0.6, 0);
        book.charge(&b, "", 0.1, 0);
        assert!(!book.is_exhausted(&b, "", 0));
    }

    #[test]
    fn idle_scopes_are_forgotten_first() {
        let mut b = budget(1.0);
        b.per = Some("user_id".into());
        let mut book = BudgetBook::default();
        let state = book.state(&b);
        for i in 0..MAX_SCOPES_PER_BUDGET {
            state.ledger(&format!("u{i}"), 0);
        }
        // Every scope is idle (nothing spent): one new scope empties the table.
        state.ledger("new", 0);
        assert_eq!(state.scopes.len(), 1);
        assert_eq!(state.evicted, 0);
    }
}
