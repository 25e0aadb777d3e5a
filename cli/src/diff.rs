//! `flagrail diff OLD NEW`: the review of a document change before it goes live (the logic is
//! `flagrail_core::review`; this prints it and sets the exit code).

use std::io::{BufRead, BufReader, Read};

use flagrail_core::review::{
    format_share, population_problem, review_documents, too_many_contexts, FlagMovement, Move,
    Population, Review, ReviewOptions, DEFAULT_REVIEW_SEED, DEFAULT_REVIEW_USERS, MAX_REVIEW_UNITS,
};
use flagrail_core::Document;
use serde_json::Value;

use crate::args::Args;
use crate::{parse_at, read_document_bytes, Failure, Outcome};

pub const USAGE: &str =
    "diff OLD NEW [--users N] [--seed S] [--population FILE] [--at TIME] [--json] [--allow]";

pub const DETAILS: &str = "\
  --users N          synthetic units (default 10000, at most 1000000), seeded: the same
                     documents and seed give the same units
  --seed S           the synthetic population's seed (default 1)
  --population FILE  evaluate these contexts instead: JSON lines, or one JSON array of objects
  --at TIME          evaluate both documents at this instant (default now); movement is also
                     shown at each later step of the new document's ramps
  --json             the whole review as JSON
  --allow            exit 0 even when the change is dangerous (the approval)
Shows what changed per flag (variants, payloads, default, rules, ramps, kill switch, salt,
bucket_by, segments) and which share of units moves from which variant to which, overall, per
segment of NEW and along its ramps; each unit is evaluated against both documents by the core.
Dangerous changes (exit 3 unless --allow): RAMP_JUMP (a ramp past its next step), KILL_CALLS_MODEL
(a kill variant that calls a model), REBUCKET (a salt or bucket_by change under a split or ramp),
REMOVED_VARIANT_SERVED (a variant removed while units are served it).
See docs/ecosystem.md, \"Change review\", for running it on a pull request.";

/// Exit code of a dangerous change without `--allow` (1 and 2 keep their usual meanings).
const DANGEROUS: u8 = 3;

pub fn run(args: &mut Args) -> Outcome {
    let users: usize = match args.option("--users") {
        None => DEFAULT_REVIEW_USERS,
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| (1..=MAX_REVIEW_UNITS).contains(n))
            .ok_or_else(|| {
                Failure::usage(format!(
                    "--users must be a whole number from 1 to {MAX_REVIEW_UNITS}"
                ))
            })?,
    };
    let seed: u64 = match args.option("--seed") {
        None => DEFAULT_REVIEW_SEED,
        Some(text) => text
            .parse()
            .map_err(|_| Failure::usage("--seed must be a whole number"))?,
    };
    let population_file = args.option("--population");
    let at = parse_at(args.option("--at"))?;
    let as_json = args.flag("--json");
    let allow = args.flag("--allow");
    let old_path = args.positional("OLD")?;
    let new_path = args.positional("NEW")?;
    args.finish()?;
    let old = document_json(&old_path)?;
    let new = document_json(&new_path)?;
    let population = match &population_file {
        Some(path) => Population::Given(read_population(path)?),
        None => Population::Synthetic { users, seed },
    };
    let review = review_documents(&old, &new, population, &ReviewOptions { at })?;
    if as_json {
        let value = serde_json::to_value(&review)
            .map_err(|err| Failure::failed(format!("review: {err}")))?;
        crate::print_json(&value)?;
    } else {
        print_review(&review, population_file.as_deref(), seed)?;
    }
    if review.is_dangerous() && !allow {
        return Err(Failure::exit(
            DANGEROUS,
            format!(
                "{} dangerous change(s): approve with --allow",
                review.dangers.len()
            ),
        ));
    }
    Ok(())
}

/// The document at `path` as JSON, validated first so that a bad document fails with the
/// loader's own problems and paths.
fn document_json(path: &str) -> Result<Value, Failure> {
    let bytes = read_document_bytes(path)?;
    Document::from_slice(&bytes).map_err(|err| prefix(path, err.into()))?;
    serde_json::from_slice(&bytes).map_err(|err| Failure::failed(format!("{path}: {err}")))
}

fn prefix(path: &str, failure: Failure) -> Failure {
    Failure::failed(format!("{path}:\n{}", failure.message()))
}

/// Contexts from a file: one JSON array of objects, or JSON lines (blank lines skipped).
fn read_population(path: &str) -> Result<Vec<Value>, Failure> {
    let file = std::fs::File::open(path)
        .map_err(|err| Failure::failed(format!("--population {path}: {err}")))?;
    let mut reader = BufReader::new(file);
    let mut first = String::new();
    let mut units = Vec::new();
    let mut line_number = 0;
    loop {
        first.clear();
        let read = reader
            .read_line(&mut first)
            .map_err(|err| Failure::failed(format!("--population {path}: {err}")))?;
        if read == 0 {
            break;
        }
        line_number += 1;
        let line = first.trim();
        if line.is_empty() {
            continue;
        }
        if units.is_empty() && line.starts_with('[') {
            let mut text = line.to_string();
            reader
                .read_to_string(&mut text)
                .map_err(|err| Failure::failed(format!("--population {path}: {err}")))?;
            let all: Vec<Value> = serde_json::from_str(&text)
                .map_err(|err| Failure::failed(format!("--population {path}: {err}")))?;
            return check_objects(path, all);
        }
        let unit: Value = serde_json::from_str(line).map_err(|err| {
            Failure::failed(format!("--population {path}: line {line_number}: {err}"))
        })?;
        units.push(unit);
        if units.len() > MAX_REVIEW_UNITS {
            return Err(Failure::failed(format!(
                "--population {path}: {}",
                too_many_contexts()
            )));
        }
    }
    check_objects(path, units)
}

fn check_objects(path: &str, units: Vec<Value>) -> Result<Vec<Value>, Failure> {
    // The core's check of a given population (the bindings share it), named by the file.
    match population_problem(&units) {
        Some(problem) => Err(Failure::failed(format!("--population {path}: {problem}"))),
        None => Ok(units),
    }
}

fn print_review(review: &Review, population: Option<&str>, seed: u64) -> Outcome {
    outln!(
        "revision {} -> {}, evaluated at {} over {} {}",
        review.old_revision,
        review.new_revision,
        review.at,
        review.units,
        match population {
            Some(path) => format!("contexts from {path}"),
            None => format!("synthetic units (seed {seed})"),
        }
    );
    let document_changes: Vec<_> = review.changes.iter().filter(|c| c.flag.is_none()).collect();
    if !document_changes.is_empty() {
        outln!("");
        outln!("document");
        for change in document_changes {
            outln!("  {}", describe(change));
        }
    }
    for flag in &review.flags {
        outln!("");
        outln!("flag {}", flag.flag);
        for change in review
            .changes
            .iter()
            .filter(|c| c.flag.as_deref() == Some(&flag.flag))
        {
            outln!("  {}", describe(change));
        }
        print_movement(flag)?;
    }
    if review.changes.is_empty() && review.flags.is_empty() {
        outln!("");
        outln!("no change");
    }
    if !review.dangers.is_empty() {
        outln!("");
        outln!("dangerous changes (need --allow):");
        for danger in &review.dangers {
            outln!("  {} {}: {}", danger.code, danger.flag, danger.message);
        }
    }
    Ok(())
}

fn print_movement(flag: &FlagMovement) -> Outcome {
    if flag.moved == 0 {
        outln!("  moves now: none");
    } else {
        outln!(
            "  moves now: {} of units ({})",
            format_share(flag.moved_share),
            flag.moved
        );
        print_moves("    ", &flag.moves)?;
    }
    for segment in &flag.segments {
        outln!(
            "  segment {}: {} of its {} units move",
            segment.segment,
            format_share(segment.moved as f64 / segment.units.max(1) as f64),
            segment.units
        );
        print_moves("    ", &segment.moves)?;
    }
    for step in &flag.ramp_steps {
        outln!(
            "  at {} (ramp {} at {} %): {} units differ from the old document",
            step.at,
            step.rule,
            step.percent,
            step.moved
        );
        print_moves("    ", &step.moves)?;
    }
    Ok(())
}

fn print_moves(indent: &str, moves: &[Move]) -> Outcome {
    for m in moves {
        outln!(
            "{indent}{} -> {}: {} ({})",
            m.from,
            m.to,
            format_share(m.share),
            m.units
        );
    }
    Ok(())
}

fn describe(change: &flagrail_core::review::Change) -> String {
    let mut text = change.kind.replace('_', " ");
    if let Some(item) = &change.item {
        text.push_str(&format!(" \"{item}\""));
    }
    if let Some(detail) = &change.detail {
        text.push_str(&format!(": {detail}"));
    }
    text
}
