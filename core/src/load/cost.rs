//! The complexity budget of a flag: a bound on the work of one evaluation, checked at load so
//! that no document can make a `variant()` call slow (docs/benchmarks.md has the worst case).

use rustc_hash::FxHashSet;

use super::{Loader, MAX_FLAG_COST};
use crate::condition::{Condition, Op, Segment};
use crate::document::Flag;
use crate::error::ProblemKind;

/// What a string search (`contains`, `starts_with`, `ends_with`, `matches`) counts: it may read
/// up to [`crate::condition::MAX_COMPARED_BYTES`] of the value, several times the work of a
/// comparison.
pub const SEARCH_COST: u64 = 8;

impl Loader {
    /// `FLAG_TOO_COMPLEX` when the worst case of one evaluation of `flag` is over budget.
    pub(super) fn check_cost(&mut self, path: &str, flag: &Flag, segments: &[Segment]) {
        let cost = worst_case_cost(flag, segments);
        if cost > MAX_FLAG_COST {
            self.report(
                path,
                ProblemKind::FlagTooComplex,
                format!(
                    "one evaluation may take more than {MAX_FLAG_COST} steps (each rule and condition 1, each string search {SEARCH_COST}, a shared segment once per rule); split the flag or share segments"
                ),
            );
        }
    }
}

/// Steps of the costliest evaluation of `flag`: every rule tried, every condition visited, each
/// segment once per rule (evaluation remembers shared segments). Stops counting past the
/// budget, so a huge flag costs the loader no more than the budget.
pub(super) fn worst_case_cost(flag: &Flag, segments: &[Segment]) -> u64 {
    let mut total = 0u64;
    for rule in &flag.rules {
        total += 1;
        let Some(when) = &rule.when else { continue };
        let mut seen = FxHashSet::default();
        let mut pending: Vec<&Condition> = vec![when];
        while let Some(condition) = pending.pop() {
            match condition {
                Condition::All(items) | Condition::Any(items) => {
                    total += 1;
                    pending.extend(items);
                }
                Condition::Not(inner) => {
                    total += 1;
                    pending.push(inner);
                }
                Condition::Segment(reference) => {
                    total += 1;
                    if seen.insert(reference.index) {
                        if let Some(segment) = segments.get(reference.index) {
                            pending.push(&segment.condition);
                        }
                    }
                }
                Condition::Test(test) => {
                    total += match test.op {
                        Op::Contains(_) | Op::StartsWith(_) | Op::EndsWith(_) | Op::Matches(_) => {
                            SEARCH_COST
                        }
                        _ => 1,
                    }
                }
            }
            if total > MAX_FLAG_COST {
                return total;
            }
        }
    }
    total
}
