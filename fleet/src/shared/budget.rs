//! Fleet budgets by leases: each process spends from a lease (a slice of the fleet's remaining
//! room) held in memory, so a budget check never waits on Redis; the background thread reports
//! what was spent and takes the next lease before this one runs out.
//!
//! In Redis, one hash per budget and scope (`budget:<budget key>:<scope>` under the
//! document's hash tag) holds the fleet's spend in the budget's 60 window slots (`s:<slot>`)
//! and each process's outstanding lease (`l:<process>` = `amount@granted_at_ms`). One Lua
//! script reports spend, drops slots that left the window and leases that expired, and grants
//! `min(lease size, limit − spent − other processes' leases)`, atomically.
//!
//! **Bound on overshoot.** Everything a process admits is either reported spend, or covered
//! by its lease in Redis, except: the credit a process gives a scope it has never leased (one
//! lease, so that a user's first request never waits), and what it spent from its previous
//! lease while a refresh was on the wire (at most that lease). Both are at most one lease, and
//! never both at once for one scope, so at any time the fleet has admitted at most
//! `limit + processes × lease_size` per scope and window (docs/fleet.md, "Budgets").
//!
//! **Redis down.** A process keeps spending what its lease still holds (that room is held for
//! it in Redis), then at most `limit / fleet size` more per scope (the fleet size it last
//! saw). Spend made meanwhile is kept and reported when Redis answers again.

use std::collections::VecDeque;

use flagrail_core::document::budget::{Budget, Measure};
use flagrail_core::time::Millis;
use rustc_hash::FxHashMap;

/// The lease a process asks for: this share of the budget's limit (at least one request).
pub const DEFAULT_LEASE_FRACTION: f64 = 0.05;

/// A lease not refreshed for this long is void in Redis (its room goes back to the fleet);
/// processes refresh active leases well before.
pub const LEASE_TTL_MS: Millis = 30_000;

/// A scope with no activity for this long gives its lease back (the background thread
/// reports and releases it), so idle users do not hold room.
pub const IDLE_RETURN_MS: Millis = 5_000;

/// Scopes tracked per process before the least recently used idle ones are forgotten.
pub const MAX_LEASED_SCOPES: usize = 100_000;

/// The lease of one budget and scope in this process.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    /// Room this process may still spend without asking.
    pub allowance: f64,
    /// Held for calls in flight (a `max_cost` budget's estimate).
    pub reserved: f64,
    /// Spent since the last report was sent.
    pub unreported: f64,
    /// Spent beyond the allowance while Redis was unreachable (the local share).
    pub offline_spent: f64,
    /// When the lease in Redis was granted (`None`: credit only, never granted).
    pub granted_at: Option<Millis>,
    /// The fleet's room after the last grant (`None`: never asked).
    pub fleet_room: Option<f64>,
    /// The fleet's spend in the window at the last report.
    pub fleet_spent: f64,
    pub last_used: Millis,
    /// A report or a new lease is wanted (spend to report, allowance running low, new).
    pub dirty: bool,
    /// The lease was given back because the scope went idle.
    pub returned: bool,
    /// The background thread was woken for this lease since its last request (wake once).
    pub woken: bool,
    /// Requests downgraded because the lease ran dry while the fleet had room (not counted).
    pub denied_for_lease: f64,
    pub limit: f64,
    pub lease_size: f64,
}

impl Lease {
    fn room(&self) -> f64 {
        self.allowance - self.reserved
    }
}

/// The size of a lease of `budget`.
pub fn lease_size(budget: &Budget, fraction: f64) -> f64 {
    let raw = budget.limit * fraction;
    match budget.measure {
        Measure::Requests => raw.ceil().max(1.0).min(budget.limit.max(1.0)),
        Measure::Cost => raw.max(f64::MIN_POSITIVE).min(budget.limit),
    }
}

/// One report + lease request, built by [`Leases::take_requests`] for the background thread.
#[derive(Debug, Clone)]
pub(crate) struct LeaseRequest {
    pub budget_key: Box<str>,
    pub scope: Box<str>,
    pub limit: f64,
    pub window: Millis,
    /// Spend reported with this request.
    pub used: f64,
    /// Lease asked for (0: give the lease back).
    pub want: f64,
}

/// What Redis answered to a [`LeaseRequest`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseGrant {
    pub spent: f64,
    pub grant: f64,
    pub room_after: f64,
}

/// Every lease of this process.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    by_budget: FxHashMap<Box<str>, FxHashMap<Box<str>, Lease>>,
    /// `(budget key, scope)` in order of creation, for forgetting the oldest idle scopes.
    order: VecDeque<(Box<str>, Box<str>)>,
    count: usize,
    pub fraction: f64,
    /// Whether the background thread reaches Redis now.
    pub connected: bool,
    /// Processes seen alive in the fleet (at least 1).
    pub fleet_size: u64,
    /// Spend counted while disconnected and not yet reported (for status).
    pub forgotten_scopes: u64,
}

impl Leases {
    pub fn new(fraction: f64) -> Leases {
        Leases {
            fraction,
            fleet_size: 1,
            ..Leases::default()
        }
    }

    fn lease_mut(&mut self, budget: &Budget, scope: &str, now: Millis) -> Option<&mut Lease> {
        let exists = self
            .by_budget
            .get(&*budget.key)
            .is_some_and(|scopes| scopes.contains_key(scope));
        if !exists {
            if self.count >= MAX_LEASED_SCOPES {
                self.forget_oldest();
            }
            let size = lease_size(budget, self.fraction);
            // A scope never leased gets one lease of credit: its first request must not wait.
            let lease = Lease {
                allowance: size,
                reserved: 0.0,
                unreported: 0.0,
                offline_spent: 0.0,
                granted_at: None,
                fleet_room: None,
                fleet_spent: 0.0,
                last_used: now,
                dirty: true,
                returned: false,
                woken: false,
                denied_for_lease: 0.0,
                limit: budget.limit,
                lease_size: size,
            };
            self.by_budget
                .entry(Box::from(&*budget.key))
                .or_default()
                .insert(Box::from(scope), lease);
            self.order
                .push_back((Box::from(&*budget.key), Box::from(scope)));
            self.count += 1;
        }
        let lease = self.by_budget.get_mut(&*budget.key)?.get_mut(scope)?;
        lease.last_used = now;
        if lease.limit != budget.limit {
            // A reloaded document changed the limit: size the next lease for it.
            lease.limit = budget.limit;
            lease.lease_size = lease_size(budget, self.fraction);
            lease.dirty = true;
        }
        Some(lease)
    }

    fn forget_oldest(&mut self) {
        let mut looked = self.order.len();
        while let Some((budget, scope)) = self.order.pop_front() {
            looked = looked.saturating_sub(1);
            let removable = self
                .by_budget
                .get(&budget)
                .and_then(|s| s.get(&scope))
                .is_some_and(|l| l.unreported == 0.0 && l.reserved == 0.0);
            if removable || looked == 0 {
                if let Some(scopes) = self.by_budget.get_mut(&budget) {
                    if scopes.remove(&scope).is_some() {
                        self.count -= 1;
                        self.forgotten_scopes += 1;
                    }
                }
                return;
            }
            self.order.push_back((budget, scope));
        }
    }

    /// Whether this process has no room left for `scope` (see the module documentation).
    pub fn exhausted(&mut self, budget: &Budget, scope: &str, now: Millis) -> bool {
        let connected = self.connected;
        let share = budget.limit / self.fleet_size.max(1) as f64;
        let known = self
            .by_budget
            .get(&*budget.key)
            .is_some_and(|scopes| scopes.contains_key(scope));
        if !known {
            // Never spent here: the first charge opens it with one lease of credit.
            return false;
        }
        let Some(lease) = self.lease_mut(budget, scope, now) else {
            return false;
        };
        if lease.room() > 0.0 {
            return false;
        }
        lease.dirty = true;
        if connected {
            return true;
        }
        lease.offline_spent + lease.reserved.max(0.0) >= share
    }

    /// Spends `amount`; returns whether the background thread should be woken now (the lease
    /// just fell below half, or this is a new scope, and it was not woken for it yet).
    fn spend(&mut self, budget: &Budget, scope: &str, amount: f64, now: Millis) -> bool {
        let connected = self.connected;
        let Some(lease) = self.lease_mut(budget, scope, now) else {
            return false;
        };
        if connected
            && budget.measure == Measure::Requests
            && lease.room() <= 0.0
            && lease.fleet_spent < lease.limit
        {
            // This request was downgraded only because this process's lease (or its first
            // credit) ran dry while the fleet, as last heard, had not spent its limit (the rest
            // is in leases, or a refill is on its way): counting it would spend room the fleet
            // never served. Requests downgraded
            // once the fleet's spend reached the limit, or while Redis is unreachable, count,
            // as in one process.
            lease.dirty = true;
            lease.denied_for_lease += amount;
            return false;
        }
        let from_lease = amount.min(lease.allowance.max(0.0));
        lease.allowance -= amount;
        lease.offline_spent += amount - from_lease;
        lease.unreported += amount;
        lease.dirty = true;
        let wake = connected
            && !lease.woken
            && (lease.granted_at.is_none() || lease.room() < lease.lease_size / 2.0);
        lease.woken |= wake;
        wake
    }

    /// Counts a charge; returns whether to wake the background thread (see `spend`).
    pub fn charge(&mut self, budget: &Budget, scope: &str, amount: f64, now: Millis) -> bool {
        self.spend(budget, scope, amount, now)
    }

    pub fn reserve(&mut self, budget: &Budget, scope: &str, amount: f64, now: Millis) {
        if let Some(lease) = self.lease_mut(budget, scope, now) {
            lease.reserved += amount;
        }
    }

    pub fn release(&mut self, budget: &Budget, scope: &str, amount: f64, now: Millis) {
        if let Some(lease) = self.lease_mut(budget, scope, now) {
            lease.reserved = (lease.reserved - amount).max(0.0);
        }
    }

    /// The reports and lease requests due now; the spend they report is moved out of
    /// `unreported` (put back by [`Leases::failed`] when the round trip fails).
    pub fn take_requests(
        &mut self,
        now: Millis,
        windows: &FxHashMap<Box<str>, Millis>,
    ) -> Vec<LeaseRequest> {
        let mut requests = Vec::new();
        for (budget_key, scopes) in &mut self.by_budget {
            let Some(&window) = windows.get(budget_key) else {
                continue;
            };
            for (scope, lease) in scopes.iter_mut() {
                let idle = now - lease.last_used >= IDLE_RETURN_MS;
                let stale = lease
                    .granted_at
                    .is_some_and(|at| now - at >= LEASE_TTL_MS / 3);
                let low = lease.room() < lease.lease_size / 2.0;
                // A scope the fleet had no room for is re-asked at most every second (its
                // window slides; nobody waits on the answer).
                let recently_refused = lease.fleet_room.is_some_and(|r| r <= 0.0)
                    && lease.granted_at.is_some_and(|at| now - at < 1_000);
                let due = if idle {
                    !lease.returned && (lease.granted_at.is_some() || lease.unreported > 0.0)
                } else {
                    lease.unreported > 0.0
                        || (lease.dirty && !recently_refused && (low || lease.granted_at.is_none()))
                        || stale
                };
                if !due {
                    continue;
                }
                let want = if idle { 0.0 } else { lease.lease_size };
                requests.push(LeaseRequest {
                    budget_key: budget_key.clone(),
                    scope: scope.clone(),
                    limit: lease.limit,
                    window,
                    used: lease.unreported,
                    want,
                });
                lease.unreported = 0.0;
                lease.dirty = false;
                lease.woken = false;
            }
        }
        requests
    }

    /// Applies Redis's answer: the new lease replaces the old one, less what was spent from
    /// it while the request was on the wire.
    pub fn granted(&mut self, request: &LeaseRequest, grant: LeaseGrant, now: Millis) {
        let Some(lease) = self
            .by_budget
            .get_mut(&request.budget_key)
            .and_then(|s| s.get_mut(&request.scope))
        else {
            return;
        };
        let spent_meanwhile = lease.unreported;
        lease.fleet_spent = grant.spent;
        lease.fleet_room = Some(grant.room_after);
        lease.offline_spent = 0.0;
        if request.want == 0.0 {
            // Given back (idle): the next request of this scope gets credit again only when
            // the fleet had room for a whole lease.
            lease.returned = true;
            lease.granted_at = None;
            lease.allowance = if grant.room_after >= lease.lease_size {
                lease.lease_size
            } else {
                0.0
            } - spent_meanwhile;
        } else {
            lease.returned = false;
            lease.granted_at = Some(now);
            lease.allowance = grant.grant - spent_meanwhile;
        }
    }

    /// The round trip failed: the spend goes back to be reported next time.
    pub fn failed(&mut self, request: &LeaseRequest) {
        if let Some(lease) = self
            .by_budget
            .get_mut(&request.budget_key)
            .and_then(|s| s.get_mut(&request.scope))
        {
            lease.unreported += request.used;
            lease.dirty = true;
        }
    }

    /// Spend not yet reported to Redis (status: what will be flushed when it answers).
    pub fn pending_spend(&self) -> f64 {
        self.by_budget
            .values()
            .flat_map(|s| s.values())
            .map(|l| l.unreported)
            .sum::<f64>()
            // An empty sum is -0.0: report 0.
            + 0.0
    }

    /// Requests downgraded for want of a lease while the fleet had room (status).
    pub fn denied_for_lease(&self) -> f64 {
        self.by_budget
            .values()
            .flat_map(|s| s.values())
            .map(|l| l.denied_for_lease)
            .sum::<f64>()
            + 0.0
    }

    pub fn scopes(&self) -> usize {
        self.count
    }

    /// Every lease, for a final report on close: give everything back.
    pub fn take_all_for_close(
        &mut self,
        windows: &FxHashMap<Box<str>, Millis>,
    ) -> Vec<LeaseRequest> {
        let mut requests = Vec::new();
        for (budget_key, scopes) in &mut self.by_budget {
            let window = windows.get(budget_key).copied().unwrap_or(3_600_000);
            for (scope, lease) in scopes.iter_mut() {
                if lease.granted_at.is_none() && lease.unreported == 0.0 {
                    continue;
                }
                requests.push(LeaseRequest {
                    budget_key: budget_key.clone(),
                    scope: scope.clone(),
                    limit: lease.limit,
                    window,
                    used: lease.unreported,
                    want: 0.0,
                });
                lease.unreported = 0.0;
            }
        }
        requests
    }
}

/// Reports spend and grants a lease, atomically (one key: one slot).
///
/// `KEYS[1]`: the budget/scope hash. ARGV: process id, current slot, slots per window, limit,
/// spend to report, lease wanted, now (ms), lease TTL (ms), key TTL (ms).
/// Returns `{spent, grant, room_after}` as strings (Lua numbers would be truncated).
pub(crate) const LEASE_SCRIPT: &str = r"
local h = KEYS[1]
local me = ARGV[1]
local now_slot = tonumber(ARGV[2])
local slots = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local used = tonumber(ARGV[5])
local want = tonumber(ARGV[6])
local now = tonumber(ARGV[7])
local ttl = tonumber(ARGV[8])
if used > 0 then redis.call('HINCRBYFLOAT', h, 's:' .. now_slot, used) end
local all = redis.call('HGETALL', h)
local spent = 0
local leased = 0
for i = 1, #all, 2 do
  local f = all[i]
  local kind = string.sub(f, 1, 2)
  if kind == 's:' then
    local slot = tonumber(string.sub(f, 3))
    if now_slot - slot >= slots then redis.call('HDEL', h, f) else spent = spent + tonumber(all[i + 1]) end
  elseif kind == 'l:' and string.sub(f, 3) ~= me then
    local amount, at = string.match(all[i + 1], '([^@]+)@(.+)')
    if amount == nil or now - tonumber(at) > ttl then redis.call('HDEL', h, f) else leased = leased + tonumber(amount) end
  end
end
local room = limit - spent - leased
local grant = want
if grant > room then grant = room end
if grant < 0 then grant = 0 end
if grant > 0 then redis.call('HSET', h, 'l:' .. me, tostring(grant) .. '@' .. tostring(now)) else redis.call('HDEL', h, 'l:' .. me) end
redis.call('PEXPIRE', h, tonumber(ARGV[9]))
return {tostring(spent), tostring(grant), tostring(room - grant)}
";

#[cfg(test)]
mod tests {
    use super::*;
    use flagrail_core::document::budget::BudgetAction;
    use std::sync::Arc;

    fn requests(limit: f64) -> Budget {
        Budget {
            id: Arc::from("b"),
            key: Arc::from("f/b"),
            flag: Some(Arc::from("f")),
            per: Some("user_id".into()),
            measure: Measure::Requests,
            limit,
            window: 3_600_000,
            action: BudgetAction::Kill,
        }
    }

    fn windows() -> FxHashMap<Box<str>, Millis> {
        let mut w = FxHashMap::default();
        w.insert(Box::from("f/b"), 3_600_000);
        w
    }

    #[test]
    fn a_new_scope_gets_one_lease_of_credit_then_stops() {
        let b = requests(100.0);
        let mut leases = Leases::new(0.05);
        leases.connected = true;
        let mut admitted = 0;
        for _ in 0..20 {
            if !leases.exhausted(&b, "u", 0) {
                leases.charge(&b, "u", 1.0, 0);
                admitted += 1;
            }
        }
        assert_eq!(admitted, 5, "one lease of credit (5 % of 100)");
    }

    #[test]
    fn a_grant_replaces_the_lease_less_what_was_spent_meanwhile() {
        let b = requests(100.0);
        let mut leases = Leases::new(0.05);
        leases.connected = true;
        leases.charge(&b, "u", 1.0, 0);
        let sent = leases.take_requests(0, &windows());
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].used, 1.0);
        leases.charge(&b, "u", 1.0, 1);
        leases.granted(
            &sent[0],
            LeaseGrant {
                spent: 1.0,
                grant: 5.0,
                room_after: 94.0,
            },
            2,
        );
        let lease = &leases.by_budget["f/b"]["u"];
        assert_eq!(lease.allowance, 4.0);
        assert_eq!(lease.unreported, 1.0);
    }

    #[test]
    fn offline_a_process_spends_its_lease_then_its_share() {
        let b = requests(100.0);
        let mut leases = Leases::new(0.05);
        leases.connected = false;
        leases.fleet_size = 4;
        let mut admitted = 0;
        for _ in 0..100 {
            if !leases.exhausted(&b, "u", 0) {
                leases.charge(&b, "u", 1.0, 0);
                admitted += 1;
            }
        }
        // 5 of credit, then 100 / 4 = 25 as the local share.
        assert_eq!(admitted, 30);
        assert_eq!(leases.pending_spend(), 30.0);
    }

    #[test]
    fn a_request_downgraded_for_want_of_a_lease_is_not_counted_while_the_fleet_has_room() {
        let b = requests(100.0);
        let mut leases = Leases::new(0.05);
        leases.connected = true;
        leases.charge(&b, "u", 1.0, 0);
        let sent = leases.take_requests(0, &windows());
        let room = LeaseGrant {
            spent: 1.0,
            grant: 1.0,
            room_after: 50.0,
        };
        leases.granted(&sent[0], room, 1);
        leases.charge(&b, "u", 1.0, 2);
        assert!(leases.exhausted(&b, "u", 3));
        leases.charge(&b, "u", 1.0, 3);
        assert_eq!(
            leases.pending_spend(),
            1.0,
            "the downgraded request is not reported"
        );
        assert_eq!(leases.denied_for_lease(), 1.0);
        // With the fleet exhausted, a downgraded request counts, as in one process.
        let sent = leases.take_requests(4, &windows());
        let none = LeaseGrant {
            spent: 100.0,
            grant: 0.0,
            room_after: 0.0,
        };
        leases.granted(&sent[0], none, 5);
        leases.charge(&b, "u", 1.0, 6);
        assert_eq!(leases.pending_spend(), 1.0);
    }

    #[test]
    fn a_failed_report_is_kept_for_the_next_one() {
        let b = requests(100.0);
        let mut leases = Leases::new(0.05);
        leases.charge(&b, "u", 3.0, 0);
        let sent = leases.take_requests(0, &windows());
        leases.failed(&sent[0]);
        assert_eq!(leases.pending_spend(), 3.0);
    }
}
