//! Fleet guardrails: every process adds its outcomes to time-bucketed counters in Redis, and
//! trips are decided on the fleet's totals and shared as one state per guardrail, so a
//! candidate that fails a little in every process trips everywhere.
//!
//! Keys (all under the document's hash tag, so one slot):
//! - `guard:<flag>:<variant>:<guardrail>:b:<bucket ms>:<bucket>`: a hash `n`, `bad`, `sum`,
//!   `sq` (HINCRBY / HINCRBYFLOAT), expiring one window after its bucket ends;
//! - `guard:<flag>:<variant>:<guardrail>:state`: a hash `since`, `probe_from` (absent when
//!   closed), `epoch` (evidence before it is ignored: the last trip's probe start or the last
//!   recovery) and `version` (bumped by every change; changes are compare-and-set).
//!
//! The rule is the process's own ([`flagrail_core::document::guardrail::Guardrail::read`]):
//! closed → tripped when the fleet's window (from `epoch`) reads Trip; tripped → half-open at
//! `probe_from` (each process lets the same probe units through: the probe draw hashes the
//! unit); half-open → closed when the probes' evidence reads Healthy, or tripped again.

use flagrail_core::document::guardrail::Guardrail;
use flagrail_core::runtime::guardrail::Verdict;
use flagrail_core::runtime::stats::Tally;
use flagrail_core::time::Millis;
use rustc_hash::FxHashMap;

/// Tallies by guardrail id, by variant.
type ByVariant = FxHashMap<Box<str>, FxHashMap<Box<str>, Tally>>;

/// One flushed tally: flag, variant, guardrail id and the counts.
pub(crate) type FlagTally = (Box<str>, Box<str>, Box<str>, Tally);

/// Tallies not yet flushed, by flag, variant and guardrail id (looked up without allocating).
#[derive(Debug, Default)]
pub(crate) struct PendingTallies {
    by_flag: FxHashMap<Box<str>, ByVariant>,
    /// Trips this process decided on its own, to offer to the fleet.
    pub offers: Vec<Offer>,
}

/// A trip decided by one process.
#[derive(Debug, Clone)]
pub(crate) struct Offer {
    pub flag: Box<str>,
    pub variant: Box<str>,
    pub guardrail: Box<str>,
    pub since: Millis,
    pub probe_from: Millis,
}

impl PendingTallies {
    pub fn add(&mut self, flag: &str, variant: &str, guardrail: &str, observation: &Tally) {
        let variants = match self.by_flag.get_mut(flag) {
            Some(v) => v,
            None => self.by_flag.entry(Box::from(flag)).or_default(),
        };
        let guards = match variants.get_mut(variant) {
            Some(g) => g,
            None => variants.entry(Box::from(variant)).or_default(),
        };
        match guards.get_mut(guardrail) {
            Some(tally) => tally.add(observation),
            None => {
                guards.insert(Box::from(guardrail), *observation);
            }
        }
    }

    /// Every pending tally, emptied: `(flag, variant, guardrail, tally)`.
    pub fn take(&mut self) -> Vec<FlagTally> {
        let mut out = Vec::new();
        for (flag, variants) in self.by_flag.drain() {
            for (variant, guards) in variants {
                for (guardrail, tally) in guards {
                    if tally.n > 0 {
                        out.push((flag.clone(), variant.clone(), guardrail, tally));
                    }
                }
            }
        }
        out
    }

    /// Puts back tallies whose flush failed (they are flushed with the next one).
    pub fn restore(&mut self, tallies: Vec<FlagTally>) {
        for (flag, variant, guardrail, tally) in tallies {
            self.add(&flag, &variant, &guardrail, &tally);
        }
    }
}

/// The length of one counter bucket of `guardrail`: a sixtieth of its window, at least 1 s.
pub fn bucket_ms(guardrail: &Guardrail) -> Millis {
    (guardrail.window / 60).max(1_000)
}

/// The key prefix of one guardrail of one variant (the caller adds the key space's tag).
pub fn guard_key(flag: &str, variant: &str, guardrail: &str) -> String {
    format!("guard:{flag}:{variant}:{guardrail}")
}

/// The fleet's state of one guardrail of one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FleetGuard {
    /// `(since, probe_from)` while tripped or half-open.
    pub trip: Option<(Millis, Millis)>,
    /// Evidence before this instant is not counted.
    pub epoch: Millis,
    pub version: i64,
}

impl FleetGuard {
    /// Where the evidence the next decision reads starts.
    pub fn evidence_from(&self, guardrail: &Guardrail, now: Millis) -> Millis {
        match self.trip {
            Some((_, probe_from)) => probe_from,
            None => self.epoch.max(now - guardrail.window),
        }
    }
}

/// What the fleet's state should become, given its evidence `total` (from
/// [`FleetGuard::evidence_from`] to `now`); `None`: unchanged.
pub fn decide(
    guardrail: &Guardrail,
    state: &FleetGuard,
    total: &Tally,
    now: Millis,
) -> Option<FleetGuard> {
    let verdict = guardrail.read(total).verdict;
    let tripped = |now: Millis| FleetGuard {
        trip: Some((now, now.saturating_add(guardrail.cooldown))),
        epoch: now.saturating_add(guardrail.cooldown),
        version: state.version,
    };
    match state.trip {
        None => (verdict == Verdict::Trip).then(|| tripped(now)),
        Some((_, probe_from)) if now < probe_from => None,
        Some(_) => match verdict {
            Verdict::Trip => Some(tripped(now)),
            Verdict::Healthy => Some(FleetGuard {
                trip: None,
                epoch: now,
                version: state.version,
            }),
            Verdict::Undecided => None,
        },
    }
}

/// Compare-and-set of a guardrail's fleet state.
///
/// `KEYS[1]`: the state hash. ARGV: expected version, since ('' closes), probe_from, epoch, TTL
/// (ms). Returns 1 when written, 0 when another process changed it first.
pub(crate) const GUARD_CAS_SCRIPT: &str = r"
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], 'since', 'probe_from')
else
  redis.call('HSET', KEYS[1], 'since', ARGV[2], 'probe_from', ARGV[3])
end
redis.call('HSET', KEYS[1], 'epoch', ARGV[4], 'version', v + 1)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return 1
";

/// Adds tallies to their buckets (one script: a Cluster connection has no pipelines, and
/// every bucket key is in the fleet's slot).
///
/// `KEYS[i]`: a bucket hash. ARGV, five per key: n, bad, sum, sum of squares, TTL (ms).
pub(crate) const TALLY_SCRIPT: &str = r"
for i = 1, #KEYS do
  local b = (i - 1) * 5
  redis.call('HINCRBY', KEYS[i], 'n', ARGV[b + 1])
  redis.call('HINCRBY', KEYS[i], 'bad', ARGV[b + 2])
  redis.call('HINCRBYFLOAT', KEYS[i], 'sum', ARGV[b + 3])
  redis.call('HINCRBYFLOAT', KEYS[i], 'sq', ARGV[b + 4])
  redis.call('PEXPIRE', KEYS[i], ARGV[b + 5])
end
return 1
";

/// Sums the buckets given as KEYS: returns `{n, bad, sum, sq}` as strings.
pub(crate) const SUM_SCRIPT: &str = r"
local n, bad, sum, sq = 0, 0, 0, 0
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'n', 'bad', 'sum', 'sq')
  n = n + (tonumber(v[1]) or 0)
  bad = bad + (tonumber(v[2]) or 0)
  sum = sum + (tonumber(v[3]) or 0)
  sq = sq + (tonumber(v[4]) or 0)
end
return {tostring(n), tostring(bad), tostring(sum), tostring(sq)}
";

/// Parses the fields of a state hash (`HGETALL`).
pub fn parse_state(fields: &FxHashMap<String, String>) -> FleetGuard {
    let get = |name: &str| fields.get(name).and_then(|v| v.parse::<i64>().ok());
    FleetGuard {
        trip: match (get("since"), get("probe_from")) {
            (Some(since), Some(probe_from)) => Some((since, probe_from)),
            _ => None,
        },
        epoch: get("epoch").unwrap_or(0),
        version: get("version").unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagrail_core::document::guardrail::{GuardAction, Metric};

    fn error_rate() -> Guardrail {
        Guardrail {
            id: "errors".into(),
            metric: Metric::ErrorRate,
            threshold: 0.05,
            window: 60_000,
            min_samples: 20,
            action: GuardAction::Kill,
            cooldown: 10_000,
            probe_share: 10_000,
            variants: vec![0],
        }
    }

    fn tally(n: u64, bad: u64) -> Tally {
        Tally {
            n,
            bad,
            ..Tally::default()
        }
    }

    #[test]
    fn the_fleet_trips_on_totals_no_process_could_trip_alone() {
        let g = error_rate();
        // Four processes, 8 calls each, all failed: each alone is below min_samples (20).
        for _ in 0..4 {
            assert_eq!(decide(&g, &FleetGuard::default(), &tally(8, 8), 0), None);
        }
        let fleet = decide(&g, &FleetGuard::default(), &tally(32, 32), 5).unwrap();
        assert_eq!(fleet.trip, Some((5, 10_005)));
        assert_eq!(fleet.evidence_from(&g, 6), 10_005);
    }

    #[test]
    fn half_open_closes_on_healthy_probes_and_retrips_on_bad_ones() {
        let g = error_rate();
        let tripped = FleetGuard {
            trip: Some((0, 10_000)),
            epoch: 10_000,
            version: 1,
        };
        assert_eq!(
            decide(&g, &tripped, &tally(40, 40), 9_999),
            None,
            "cooling down"
        );
        let closed = decide(&g, &tripped, &tally(40, 0), 12_000).unwrap();
        assert_eq!(closed.trip, None);
        assert_eq!(closed.epoch, 12_000);
        let again = decide(&g, &tripped, &tally(40, 40), 12_000).unwrap();
        assert_eq!(again.trip, Some((12_000, 22_000)));
    }

    #[test]
    fn pending_tallies_add_up_and_survive_a_failed_flush() {
        let mut p = PendingTallies::default();
        p.add("f", "v", "g", &tally(1, 1));
        p.add("f", "v", "g", &tally(1, 0));
        let taken = p.take();
        assert_eq!(taken.len(), 1);
        assert_eq!((taken[0].3.n, taken[0].3.bad), (2, 1));
        p.restore(taken);
        assert_eq!(p.take()[0].3.n, 2);
    }
}
