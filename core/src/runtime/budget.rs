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
use serde::Serialize;
use serde_json::Value;

use crate::document::budget::Budget;
use crate::runtime::shared::SharedHook;
use crate::time::{format_duration, Millis};

/// Slots per window: the resolution of a window is `window / SLOTS`.
pub const SLOTS: i64 = 60;

/// Scopes (distinct units) tracked per budget. Scopes are forgotten oldest activity first: a
/// scope whose window is empty and that has nothing in flight carries no information and is
/// forgotten as soon as it reaches the front of the queue, full table or not; when the table is
/// full and the oldest scope still has spending in its window, it is dropped (and counted in
/// `evicted_scopes`). Scopes with a reservation are never dropped.
pub(crate) const MAX_SCOPES_PER_BUDGET: usize = 100_000;

/// A budget's state for one scope.
#[derive(Debug, Default)]
struct Ledger {
    /// `(slot number, amount)` of non-empty slots, oldest first.
    slots: VecDeque<(i64, f64)>,
    spent: f64,
    reserved: f64,
    exhausted: bool,
    /// The sequence number of this scope's latest entry in [`BudgetState::activity`].
    activity: u64,
    /// The slot number at which that entry was queued: a scope is queued again at most once
    /// per slot (its place is then off by less than one slot, which expiry tolerates).
    queued_slot: i64,
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

/// Idle scopes forgotten per scope touched, beyond the one a full table needs: enough to
/// empty the table of expired scopes over time while keeping each call O(1).
const EXPIRED_PER_TOUCH: usize = 2;

/// All scopes of one budget.
///
/// Scopes are also queued by their last activity (created, charged, reserved): the front of
/// [`BudgetState::activity`] is the scope whose spending is oldest, so it is the first to leave
/// its window and the first to forget. An entry whose sequence number is not the scope's
/// latest is stale and skipped; the queue is compacted when stale entries outnumber live ones.
/// Every operation is O(1) amortised, however many scopes are tracked.
#[derive(Debug)]
struct BudgetState {
    window: Millis,
    scopes: FxHashMap<Arc<str>, Ledger>,
    activity: VecDeque<(u64, Arc<str>)>,
    next_sequence: u64,
    evicted: u64,
}

impl BudgetState {
    fn new(window: Millis) -> BudgetState {
        BudgetState {
            window,
            scopes: FxHashMap::default(),
            activity: VecDeque::new(),
            next_sequence: 0,
            evicted: 0,
        }
    }

    fn slot_length(&self) -> Millis {
        (self.window / SLOTS).max(1)
    }

    /// The ledger of `scope`, created on first use (forgetting the oldest scope when full),
    /// brought to `now`. Each call also forgets up to [`EXPIRED_PER_TOUCH`] idle scopes from
    /// the front of the activity queue. (`None` never happens: the scope is inserted first.)
    fn ledger(&mut self, scope: &str, now: Millis) -> Option<&mut Ledger> {
        let slot_length = self.slot_length();
        if !self.scopes.contains_key(scope) {
            // Only a new scope grows the table: this is where older ones make room.
            for _ in 0..EXPIRED_PER_TOUCH {
                if !self.forget_oldest(now, false, scope) {
                    break;
                }
            }
            if self.scopes.len() >= MAX_SCOPES_PER_BUDGET {
                self.forget_oldest(now, true, scope);
            }
            let key: Arc<str> = Arc::from(scope);
            self.scopes.insert(Arc::clone(&key), Ledger::default());
            self.queue(key, now.div_euclid(slot_length));
        }
        let ledger = self.scopes.get_mut(scope)?;
        ledger.advance(now, slot_length);
        Some(ledger)
    }

    /// Moves `scope` to the back of the activity queue (it just spent or reserved), unless it
    /// was queued in the current slot already.
    fn touch(&mut self, scope: &str, now: Millis) {
        let slot = now.div_euclid(self.slot_length());
        if let Some((key, ledger)) = self.scopes.get_key_value(scope) {
            if ledger.queued_slot != slot {
                let key = Arc::clone(key);
                self.queue(key, slot);
            }
        }
    }

    fn queue(&mut self, key: Arc<str>, slot: i64) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        if let Some(ledger) = self.scopes.get_mut(&key) {
            ledger.activity = sequence;
            ledger.queued_slot = slot;
        }
        self.activity.push_back((sequence, key));
        if self.activity.len() > 2 * self.scopes.len() + 64 {
            // Compaction: at least half the entries are stale, so this is O(1) amortised.
            let scopes = &self.scopes;
            self.activity
                .retain(|(seq, key)| scopes.get(key).is_some_and(|l| l.activity == *seq));
        }
    }

    /// Looks at the scope with the oldest activity: forgets it when it is idle at `now`, or,
    /// with `even_active`, when nothing is reserved for it (counted in `evicted`). A scope
    /// with a reservation goes to the back; `keep` (the scope being asked for) is never
    /// forgotten. Returns whether a scope was forgotten.
    fn forget_oldest(&mut self, now: Millis, even_active: bool, keep: &str) -> bool {
        let slot_length = self.slot_length();
        // Each scope is looked at most once per call (a reserved one goes to the back).
        let mut budget = self.scopes.len();
        while let Some((sequence, key)) = self.activity.front().cloned() {
            let Some(ledger) = self.scopes.get_mut(&key) else {
                self.activity.pop_front();
                continue;
            };
            if ledger.activity != sequence {
                self.activity.pop_front();
                continue;
            }
            if budget == 0 || (!even_active && &*key == keep) {
                return false;
            }
            budget -= 1;
            ledger.advance(now, slot_length);
            if ledger.reserved > 0.0 {
                if !even_active {
                    return false;
                }
                self.activity.pop_front();
                self.queue(key, now.div_euclid(slot_length));
                continue;
            }
            let idle = ledger.is_idle();
            if !idle && !even_active {
                return false;
            }
            self.activity.pop_front();
            self.scopes.remove(&key);
            if !idle {
                self.evicted += 1;
            }
            return true;
        }
        false
    }
}

/// A change of a budget's state for one scope, turned into an event by the caller.
#[derive(Debug, Clone)]
pub(crate) struct BudgetTransition {
    pub(crate) budget: Budget,
    pub(crate) scope: Box<str>,
    pub(crate) exhausted: bool,
    pub(crate) spent: f64,
    pub(crate) reserved: f64,
}

/// The state of every budget of a handle.
#[derive(Debug, Default)]
pub(crate) struct BudgetBook {
    budgets: FxHashMap<Arc<str>, BudgetState>,
    /// Transitions not yet turned into events.
    pending: Vec<BudgetTransition>,
    /// The fleet's view of every budget, when the handle shares state
    /// ([`crate::runtime::shared`]): told of every charge and reservation, and asked at every
    /// look (from memory: its leases).
    pub(crate) shared: SharedHook,
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
    pub(crate) fn is_exhausted(&mut self, budget: &Budget, scope: &str, now: Millis) -> bool {
        let fleet_exhausted = self
            .shared
            .get()
            .is_some_and(|fleet| fleet.budget_exhausted(budget, scope, now));
        let state = self.state(budget);
        if !fleet_exhausted && !state.scopes.contains_key(scope) {
            // Nothing spent or reserved (limits are positive): do not track a scope for a look.
            return false;
        }
        let Some(ledger) = state.ledger(scope, now) else {
            return false;
        };
        let exhausted = fleet_exhausted || ledger.spent + ledger.reserved >= budget.limit;
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
    pub(crate) fn charge(&mut self, budget: &Budget, scope: &str, amount: f64, now: Millis) {
        if amount > 0.0 {
            let state = self.state(budget);
            let slot_length = state.slot_length();
            if let Some(ledger) = state.ledger(scope, now) {
                ledger.add(now, slot_length, amount);
            }
            state.touch(scope, now);
            if let Some(fleet) = self.shared.get() {
                fleet.budget_charge(budget, scope, amount, now);
            }
        }
        self.is_exhausted(budget, scope, now);
    }

    /// Holds `amount` for a call in flight.
    pub fn reserve(&mut self, budget: &Budget, scope: &str, amount: f64, now: Millis) {
        if amount > 0.0 {
            let state = self.state(budget);
            if let Some(ledger) = state.ledger(scope, now) {
                ledger.reserved += amount;
            }
            state.touch(scope, now);
            if let Some(fleet) = self.shared.get() {
                fleet.budget_reserve(budget, scope, amount, now);
            }
            self.is_exhausted(budget, scope, now);
        }
    }

    /// Gives back a reservation (the call ended; its actual cost is charged separately).
    pub(crate) fn release(&mut self, budget: &Budget, scope: &str, amount: f64, now: Millis) {
        if amount > 0.0 {
            if let Some(ledger) = self.state(budget).ledger(scope, now) {
                ledger.reserved = (ledger.reserved - amount).max(0.0);
            }
            if let Some(fleet) = self.shared.get() {
                fleet.budget_release(budget, scope, amount, now);
            }
        }
    }

    pub(crate) fn take_transitions(&mut self) -> Vec<BudgetTransition> {
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
        let per_unit = budget.per.is_some();
        let report = BudgetReport {
            budget: &budget.id,
            flag: budget.flag.as_deref(),
            per: budget.per.as_deref(),
            measure: budget.measure.as_str(),
            limit: budget.limit,
            window: format_duration(budget.window),
            action: budget.action_str(),
            scopes: per_unit.then_some(state.scopes.len()),
            exhausted_scopes: per_unit.then_some(exhausted_scopes),
            evicted_scopes: per_unit.then_some(state.evicted),
            spent_total: per_unit.then_some(spent),
            spent: (!per_unit).then_some(spent),
            reserved: (!per_unit).then_some(reserved),
            remaining: (!per_unit).then_some((budget.limit - spent - reserved).max(0.0)),
            exhausted: (!per_unit).then_some(exhausted_scopes > 0),
        };
        serde_json::to_value(report).unwrap_or(Value::Null)
    }
}

/// A budget in `status()["budgets"]` and `metrics()["$budgets"]`: a per-unit budget reports
/// its scopes (`scopes` … `spent_total`), a single-scope one its room (`spent` … `exhausted`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BudgetReport<'a> {
    pub(crate) budget: &'a str,
    pub(crate) flag: Option<&'a str>,
    pub(crate) per: Option<&'a str>,
    pub(crate) measure: &'static str,
    pub(crate) limit: f64,
    pub(crate) window: String,
    pub(crate) action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) scopes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) exhausted_scopes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) evicted_scopes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) spent_total: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) spent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reserved: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) remaining: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) exhausted: Option<bool>,
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
    fn idle_scopes_are_forgotten_first_and_active_ones_only_when_full() {
        let mut b = budget(1.0);
        b.per = Some("user_id".into());
        let mut book = BudgetBook::default();
        // Slot length 1 s, window 60 s. A full table of scopes that spent at t=0.
        for i in 0..MAX_SCOPES_PER_BUDGET {
            book.charge(&b, &format!("u{i}"), 0.1, 0);
        }
        let state = book.state(&b);
        assert_eq!(state.scopes.len(), MAX_SCOPES_PER_BUDGET);
        // Still in their window: a new scope drops the oldest one, counted.
        book.charge(&b, "new", 0.1, 1_000);
        let state = book.state(&b);
        assert_eq!(state.scopes.len(), MAX_SCOPES_PER_BUDGET);
        assert_eq!(state.evicted, 1);
        assert!(!state.scopes.contains_key("u0"));
        // After the window every old scope is idle: each new scope forgets two of them, none
        // counted, so the table shrinks by one per new scope.
        for i in 0..1_000 {
            book.charge(&b, &format!("v{i}"), 0.1, 61_000);
        }
        let state = book.state(&b);
        assert_eq!(state.evicted, 1);
        assert_eq!(state.scopes.len(), MAX_SCOPES_PER_BUDGET - 1_000);
        assert!(state.scopes.contains_key("v999") && state.scopes.contains_key("new"));
        assert!(state.activity.len() <= 2 * state.scopes.len() + 64);
    }

    #[test]
    fn a_scope_with_a_reservation_is_never_dropped() {
        let mut b = budget(1.0);
        b.per = Some("user_id".into());
        let mut book = BudgetBook::default();
        book.reserve(&b, "in-flight", 0.5, 0);
        for i in 0..MAX_SCOPES_PER_BUDGET + 10 {
            book.charge(&b, &format!("u{i}"), 0.1, 1);
        }
        let state = book.state(&b);
        assert!(state.scopes.contains_key("in-flight"));
        assert_eq!(state.scopes.len(), MAX_SCOPES_PER_BUDGET);
        assert_eq!(state.evicted, 11);
    }
}
