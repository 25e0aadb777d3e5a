//! Change review (`flagrail diff OLD NEW`): what a new flag document changes, flag by flag, and
//! which share of a population moves from which variant to which when it goes live.
//!
//! Pure: two JSON documents and a population in, a [`Review`] out; no I/O, no clock (the
//! instant is an argument). The CLI prints it; Python's `flagrail.diff` and Node's `diff`
//! return it (through [`review_documents`], which also checks the options for all three).
//!
//! Three parts:
//!
//! - [`changes()`] — the structural differences per flag (variants, payloads, default, rules,
//!   ramps, kill switch, salt and `bucket_by`, other fields) and per segment, read from the
//!   JSON of both documents;
//! - movement — every unit of the population is evaluated against both documents with the
//!   core's own evaluation ([`Document::evaluate`], no overlay) at the review instant and at
//!   each later step of the new document's ramps; the moves are counted per flag, per
//!   `(from, to)` pair of variants and per segment of the new document the unit matches;
//! - [`Danger`]s — changes that need an explicit approval (`--allow`): a ramp that jumps past
//!   its next step, a kill variant that calls a model, a salt or `bucket_by` change that
//!   re-buckets the units of a split or ramp, a removed variant that units were served.
//!
//! The synthetic population ([`synthetic_population`]) is seeded: the same seed and documents
//! give the same units, so a review is reproducible in CI.

mod changes;
mod population;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::document::{Action, Document, Flag};
use crate::error::{Error, Result};
use crate::evaluate::{At, NoOverlay};
use crate::time::{format_timestamp, Millis};
use crate::trace::NoTrace;

pub use changes::{changes, Change};
pub use population::synthetic_population;

/// Most ramp-step instants after the review instant at which movement is also measured.
const MAX_RAMP_INSTANTS: usize = 12;

/// Most units one review evaluates, synthetic or given (the CLI, Python and Node share it).
pub const MAX_REVIEW_UNITS: usize = 1_000_000;
/// Synthetic units of a review when the caller names no number.
pub const DEFAULT_REVIEW_USERS: usize = 10_000;
/// Seed of the synthetic population when the caller names none.
pub const DEFAULT_REVIEW_SEED: u64 = 1;

/// The units a review evaluates.
#[derive(Debug, Clone)]
pub enum Population {
    /// `users` synthetic units drawn from both documents' attributes with `seed`
    /// ([`synthetic_population`]): the same documents and seed give the same units.
    Synthetic { users: usize, seed: u64 },
    /// These contexts (JSON objects), as given.
    Given(Vec<Value>),
}

/// Largest seed a binding can pass (2^53 − 1: every language holds it exactly).
pub const MAX_REVIEW_SEED: f64 = 9_007_199_254_740_991.0;

impl Population {
    /// The population of a binding's options, with one set of messages for Python and Node:
    /// `given` contexts, or `users` synthetic units (default [`DEFAULT_REVIEW_USERS`]) from
    /// `seed` (default [`DEFAULT_REVIEW_SEED`]). Numbers arrive as the host's numbers; they
    /// must be whole and in range, and a given population excludes `users` and `seed`.
    pub fn of_options(
        users: Option<f64>,
        seed: Option<f64>,
        given: Option<Vec<Value>>,
    ) -> Result<Population> {
        let invalid = |message: String| Err(Error::InvalidArgument { message });
        if let Some(units) = given {
            if users.is_some() || seed.is_some() {
                return invalid(
                    "population excludes users and seed: a given population is not drawn"
                        .to_string(),
                );
            }
            return Ok(Population::Given(units));
        }
        let users = match users {
            None => DEFAULT_REVIEW_USERS,
            Some(n) if n.fract() == 0.0 && (1.0..=MAX_REVIEW_UNITS as f64).contains(&n) => {
                n as usize
            }
            Some(n) => return Err(users_out_of_range(n)),
        };
        let seed = match seed {
            None => DEFAULT_REVIEW_SEED,
            Some(s) if s.fract() == 0.0 && (0.0..=MAX_REVIEW_SEED).contains(&s) => s as u64,
            Some(s) => {
                return invalid(format!(
                    "seed must be a whole number from 0 to 2^53 - 1, got {s}"
                ))
            }
        };
        Ok(Population::Synthetic { users, seed })
    }
}

/// The review entry point of the bindings and the CLI: checks the population with one set of
/// limits and messages, validates both documents (a problem's path starts with `old.` or
/// `new.`, naming the document), builds the population and reviews the change.
///
/// Errors: `INVALID_ARGUMENT` for a population out of bounds or a context that is not an
/// object; `INVALID_DOCUMENT` for a document the loader rejects.
pub fn review_documents(
    old: &Value,
    new: &Value,
    population: Population,
    options: &ReviewOptions,
) -> Result<Review> {
    match &population {
        Population::Synthetic { users, .. } if !(1..=MAX_REVIEW_UNITS).contains(users) => {
            return Err(users_out_of_range(users));
        }
        Population::Given(units) => check_population(units)?,
        Population::Synthetic { .. } => {}
    }
    let old_doc = parsed("old", old)?;
    let new_doc = parsed("new", new)?;
    let units = match population {
        Population::Synthetic { users, seed } => synthetic_population(old, new, users, seed),
        Population::Given(units) => units,
    };
    review_parsed(old, new, &old_doc, &new_doc, &units, options)
}

/// The one message for a synthetic population size out of range (a host number or a count).
fn users_out_of_range(got: impl std::fmt::Display) -> Error {
    Error::InvalidArgument {
        message: format!("users must be a whole number from 1 to {MAX_REVIEW_UNITS}, got {got}"),
    }
}

/// A given population: 1 to [`MAX_REVIEW_UNITS`] JSON objects. The message names the
/// `population` argument of the bindings; the CLI names its file instead (see
/// [`population_problem`]).
pub fn check_population(units: &[Value]) -> Result<()> {
    match population_problem(units) {
        None => Ok(()),
        Some(problem) => Err(Error::InvalidArgument {
            message: format!("population: {problem}"),
        }),
    }
}

/// What is wrong with a given population, without naming where it came from: `None` for 1 to
/// [`MAX_REVIEW_UNITS`] JSON objects.
pub fn population_problem(units: &[Value]) -> Option<String> {
    if units.is_empty() {
        Some("no contexts".to_string())
    } else if units.len() > MAX_REVIEW_UNITS {
        Some(too_many_contexts())
    } else {
        let i = units.iter().position(|u| !u.is_object())?;
        Some(format!("context {} is not a JSON object", i + 1))
    }
}

/// The one text for a population past [`MAX_REVIEW_UNITS`] (the CLI stops reading a file
/// there, before the whole population exists).
pub fn too_many_contexts() -> String {
    format!("more than {MAX_REVIEW_UNITS} contexts")
}

/// `document` loaded, or its problems with paths under `which` (`old.flags.x.default`).
fn parsed(which: &str, document: &Value) -> Result<Document> {
    match Document::from_value(document.clone()) {
        Ok(loaded) => Ok(loaded),
        Err(Error::InvalidDocument { problems }) => Err(Error::InvalidDocument {
            problems: problems
                .into_iter()
                .map(|mut problem| {
                    problem.path = if problem.path.is_empty() {
                        which.to_string()
                    } else {
                        format!("{which}.{}", problem.path)
                    };
                    problem
                })
                .collect(),
        }),
        Err(other) => Err(other),
    }
}

/// What a review checks besides the documents.
#[derive(Debug, Clone)]
pub struct ReviewOptions {
    /// The instant both documents are evaluated at (ramps are time-dependent).
    pub at: Millis,
}

/// The whole review of one change.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub old_revision: String,
    pub new_revision: String,
    pub at: String,
    /// Units evaluated.
    pub units: usize,
    pub changes: Vec<Change>,
    /// Per flag present in either document, in key order: the flags where no unit moves
    /// and nothing changed are left out.
    pub flags: Vec<FlagMovement>,
    pub dangers: Vec<Danger>,
    /// Whether `dangers` is not empty: the change needs an explicit approval.
    pub dangerous: bool,
}

impl Review {
    /// Whether the change needs an explicit approval.
    pub fn is_dangerous(&self) -> bool {
        !self.dangers.is_empty()
    }
}

/// How the units of one flag move.
#[derive(Debug, Clone, Serialize)]
pub struct FlagMovement {
    pub flag: String,
    /// Units served a different variant at the review instant.
    pub moved: usize,
    /// `moved` over all units.
    pub moved_share: f64,
    /// `(from, to)` pairs with their unit counts and shares, largest first (`"-"` for a flag
    /// or a unit that gets no variant).
    pub moves: Vec<Move>,
    /// The same per segment of the new document (units matching it), segments with moves only.
    pub segments: Vec<SegmentMovement>,
    /// Moves at each later step of the new document's ramps of this flag.
    pub ramp_steps: Vec<RampStepMovement>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Move {
    pub from: String,
    pub to: String,
    pub units: usize,
    pub share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SegmentMovement {
    pub segment: String,
    /// Units of the population in the segment.
    pub units: usize,
    pub moved: usize,
    pub moves: Vec<Move>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RampStepMovement {
    pub at: String,
    /// The new ramp's percentage from that instant (the rule id and the percentage).
    pub rule: String,
    pub percent: f64,
    pub moved: usize,
    pub moves: Vec<Move>,
}

/// A change that needs an explicit approval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Danger {
    /// Stable code: `RAMP_JUMP`, `KILL_CALLS_MODEL`, `REBUCKET`, `REMOVED_VARIANT_SERVED`.
    pub code: &'static str,
    pub flag: String,
    pub message: String,
}

/// Reviews the change from `old` to `new` (both JSON documents) over `population` (contexts).
///
/// Fails only when a document is invalid (the error names its problems).
pub fn review(
    old: &Value,
    new: &Value,
    population: &[Value],
    options: &ReviewOptions,
) -> Result<Review> {
    let old_doc = Document::from_value(old.clone())?;
    let new_doc = Document::from_value(new.clone())?;
    review_parsed(old, new, &old_doc, &new_doc, population, options)
}

/// [`review`] of documents already loaded from `old` and `new`.
fn review_parsed(
    old: &Value,
    new: &Value,
    old_doc: &Document,
    new_doc: &Document,
    population: &[Value],
    options: &ReviewOptions,
) -> Result<Review> {
    let changes = changes::changes(old, new);
    let mut keys: Vec<&str> = old_doc
        .flags()
        .iter()
        .chain(new_doc.flags())
        .map(|f| &*f.key)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut flags = Vec::new();
    let mut dangers = Vec::new();
    for key in keys {
        let movement = movement(old_doc, new_doc, key, population, options.at);
        dangers.extend(flag_dangers(
            old_doc, new_doc, key, &changes, &movement, options.at,
        ));
        let changed = changes.iter().any(|c| c.flag.as_deref() == Some(key));
        let moves_later = movement.ramp_steps.iter().any(|s| s.moved > 0);
        if changed || movement.moved > 0 || moves_later {
            flags.push(movement);
        }
    }
    Ok(Review {
        old_revision: old_doc.revision().to_string(),
        new_revision: new_doc.revision().to_string(),
        at: format_timestamp(options.at),
        units: population.len(),
        changes,
        flags,
        dangerous: !dangers.is_empty(),
        dangers,
    })
}

/// Counts of `(from, to)` pairs.
#[derive(Default)]
struct Tally(BTreeMap<(String, String), usize>);

impl Tally {
    fn add(&mut self, from: &str, to: &str) {
        *self
            .0
            .entry((from.to_string(), to.to_string()))
            .or_default() += 1;
    }

    fn moved(&self) -> usize {
        self.0
            .iter()
            .filter(|((from, to), _)| from != to)
            .map(|(_, n)| n)
            .sum()
    }

    /// The moves (pairs that differ), largest first, shares over `total`.
    fn moves(&self, total: usize) -> Vec<Move> {
        let mut moves: Vec<Move> = self
            .0
            .iter()
            .filter(|((from, to), _)| from != to)
            .map(|((from, to), &units)| Move {
                from: from.clone(),
                to: to.clone(),
                units,
                share: share(units, total),
            })
            .collect();
        moves.sort_by(|a, b| b.units.cmp(&a.units).then_with(|| a.from.cmp(&b.from)));
        moves
    }
}

fn share(part: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 / total as f64
    }
}

fn served(doc: &Document, key: &str, ctx: &Value, at: Millis) -> String {
    doc.evaluate(key, ctx, &At(at), &NoOverlay)
        .variant_id()
        .unwrap_or("-")
        .to_string()
}

fn movement(
    old: &Document,
    new: &Document,
    key: &str,
    population: &[Value],
    at: Millis,
) -> FlagMovement {
    let mut all = Tally::default();
    let mut by_segment: Vec<(usize, Tally)> = new
        .segments()
        .iter()
        .map(|_| (0, Tally::default()))
        .collect();
    for ctx in population {
        let (from, to) = (served(old, key, ctx, at), served(new, key, ctx, at));
        all.add(&from, &to);
        for (segment, (units, tally)) in new.segments().iter().zip(&mut by_segment) {
            if segment.condition.matches(ctx, new.segments(), &mut NoTrace) {
                *units += 1;
                tally.add(&from, &to);
            }
        }
    }
    let segments = new
        .segments()
        .iter()
        .zip(by_segment)
        .filter(|(_, (_, tally))| tally.moved() > 0)
        .map(|(segment, (units, tally))| SegmentMovement {
            segment: segment.name.to_string(),
            units,
            moved: tally.moved(),
            moves: tally.moves(units),
        })
        .collect();
    let ramp_steps = ramp_instants(new.flag(key), at)
        .into_iter()
        .map(|(instant, rule, milli_percent)| {
            let mut tally = Tally::default();
            for ctx in population {
                tally.add(
                    &served(old, key, ctx, instant),
                    &served(new, key, ctx, instant),
                );
            }
            RampStepMovement {
                at: format_timestamp(instant),
                rule,
                percent: f64::from(milli_percent) / 1000.0,
                moved: tally.moved(),
                moves: tally.moves(population.len()),
            }
        })
        .collect();
    FlagMovement {
        flag: key.to_string(),
        moved: all.moved(),
        moved_share: share(all.moved(), population.len()),
        moves: all.moves(population.len()),
        segments,
        ramp_steps,
    }
}

/// The instants after `at` when a ramp of `flag` steps up: `(instant, rule id, percentage)`.
fn ramp_instants(flag: Option<&Flag>, at: Millis) -> Vec<(Millis, String, u32)> {
    let Some(flag) = flag else {
        return Vec::new();
    };
    let mut instants = Vec::new();
    for rule in &flag.rules {
        if let Action::Ramp(ramp) = &rule.action {
            if ramp.rolled_back || ramp.paused_at.is_some() {
                continue;
            }
            for step in &ramp.steps {
                if step.begins > at {
                    instants.push((step.begins, rule.id.to_string(), step.milli_percent));
                }
            }
        }
    }
    instants.sort_by_key(|(instant, _, _)| *instant);
    instants.truncate(MAX_RAMP_INSTANTS);
    instants
}

fn flag_dangers(
    old: &Document,
    new: &Document,
    key: &str,
    changes: &[Change],
    movement: &FlagMovement,
    at: Millis,
) -> Vec<Danger> {
    let mut dangers = Vec::new();
    let danger = |code, message: String| Danger {
        code,
        flag: key.to_string(),
        message,
    };
    let (old_flag, Some(new_flag)) = (old.flag(key), new.flag(key)) else {
        return dangers;
    };
    // A kill variant that calls a model: killing the flag would not stop the model calls.
    let kill = &new_flag.variants[new_flag.kill.serve.unwrap_or(new_flag.default)];
    let old_kill = old_flag.map(|f| &*f.variants[f.kill.serve.unwrap_or(f.default)].id);
    let old_kill_ai = old_flag
        .and_then(|f| old_kill.and_then(|id| f.variant(id)))
        .is_some_and(|v| v.ai);
    if kill.ai && (old_kill != Some(&*kill.id) || !old_kill_ai) {
        dangers.push(danger(
            "KILL_CALLS_MODEL",
            format!(
                "the kill variant \"{}\" calls a model (give it \"ai\": false, or serve a \
                 non-AI variant from \"kill\")",
                kill.id
            ),
        ));
    }
    let Some(old_flag) = old_flag else {
        return dangers;
    };
    // Ramps: a live percentage above the next step of the old schedule.
    for rule in &new_flag.rules {
        let Action::Ramp(new_ramp) = &rule.action else {
            continue;
        };
        let new_now = new_ramp.milli_percent_at(at);
        let old_ramp = old_flag.rules.iter().find_map(|r| match &r.action {
            Action::Ramp(ramp) if r.id == rule.id => Some(ramp),
            _ => None,
        });
        let Some(old_ramp) = old_ramp else {
            // A new ramp: its first live step is the most it may serve at once.
            let first = new_ramp.steps.first().map_or(0, |s| s.milli_percent);
            if new_now > first {
                dangers.push(danger(
                    "RAMP_JUMP",
                    format!(
                        "new ramp \"{}\" starts at {} % now, past its first step ({} %)",
                        rule.id,
                        percent(new_now),
                        percent(first)
                    ),
                ));
            }
            continue;
        };
        let old_now = old_ramp.milli_percent_at(at);
        let next = old_ramp
            .steps
            .iter()
            .map(|s| s.milli_percent)
            .find(|&p| p > old_now)
            .unwrap_or(old_now);
        if new_now > next {
            dangers.push(danger(
                "RAMP_JUMP",
                format!(
                    "ramp \"{}\" jumps from {} % to {} % now, past the next step ({} %)",
                    rule.id,
                    percent(old_now),
                    percent(new_now),
                    percent(next)
                ),
            ));
        }
    }
    // Re-bucketing: a different salt or unit for a split or ramp that exists in both.
    let rebucketed = changes.iter().any(|c| {
        c.flag.as_deref() == Some(key) && matches!(c.kind, "salt_changed" | "bucket_by_changed")
    });
    let splits = |f: &Flag| {
        f.rules
            .iter()
            .any(|r| matches!(r.action, Action::Split(_) | Action::Ramp(_)))
    };
    if rebucketed && splits(old_flag) && splits(new_flag) {
        dangers.push(danger(
            "REBUCKET",
            format!(
                "the salt or bucketing unit changed: every unit of its splits and ramps is \
                 bucketed again ({} of units move now)",
                format_share(movement.moved_share)
            ),
        ));
    }
    // A removed variant that units were served: they all move at once, without a ramp.
    let mut removed: BTreeMap<&str, f64> = BTreeMap::new();
    for moved in &movement.moves {
        if old_flag.variant(&moved.from).is_some() && new_flag.variant(&moved.from).is_none() {
            *removed.entry(&moved.from).or_default() += moved.share;
        }
    }
    for (variant, served) in removed {
        dangers.push(danger(
            "REMOVED_VARIANT_SERVED",
            format!(
                "variant \"{variant}\" is removed while {} of units are served it",
                format_share(served)
            ),
        ));
    }
    dangers
}

fn percent(milli_percent: u32) -> f64 {
    f64::from(milli_percent) / 1000.0
}

/// A share as a percentage with two decimals (`12.34 %`).
pub fn format_share(share: f64) -> String {
    format!("{:.2} %", share * 100.0)
}

#[cfg(test)]
mod tests;
