//! `flagrail forensics`: the runs a variant served, from events files, as JSON lines ready to
//! filter a training set or quarantine outputs after a rollback; `--summary` counts them per
//! segment.

use std::collections::{BTreeMap, BTreeSet};

use flagrail_core::autopilot::events::Run;
use serde_json::json;

use crate::args::Args;
use crate::autopilot::read_events;
use crate::{parse_at, warn, Failure, Outcome};

pub const USAGE: &str = "forensics --events EVENTS… --flag F [--variant V]
                   [--revision R | --since TIME --until TIME] [--summary]";

pub const DETAILS: &str = "  --events EVENTS…  events JSON-lines files
  --flag F          the flag
  --variant V       only runs whose output V produced (the variant that served, after any
                    fallback; `assigned` is the variant the flag decided)
  --revision R      only runs decided by document revision R
  --since, --until  only runs from TIME (inclusive) to TIME (exclusive)
  --summary         counts per variant and segment instead of the runs
One JSON object per run: run_id, unit (as recorded: hashed when the process hashes units), time,
variant, assigned, revision, rule_id, reason, segment, outcome, error_kind, quality, score.";

/// The variant whose output the run returned.
fn served(run: &Run) -> Option<&str> {
    run.served_by.as_deref().or(run.variant.as_deref())
}

pub fn run(args: &mut Args) -> Outcome {
    let events = args.values("--events");
    let flag = args.required("--flag")?;
    let variant = args.option("--variant");
    let revision = args.option("--revision");
    let since = args.option("--since");
    let until = args.option("--until");
    let summary = args.flag("--summary");
    args.finish()?;
    if events.is_empty() {
        return Err(Failure::usage("forensics needs --events FILE…"));
    }
    if revision.is_some() && (since.is_some() || until.is_some()) {
        return Err(Failure::usage(
            "give --revision R or a time window (--since/--until), not both",
        ));
    }
    let since = since.map(|t| parse_at(Some(t))).transpose()?;
    let until = until.map(|t| parse_at(Some(t))).transpose()?;
    let log = read_events(&events)?;
    if log.skipped_lines > 0 {
        warn(&format!(
            "warning: {} line(s) of the events files are not events this reader uses; skipped",
            log.skipped_lines
        ));
    }
    let selected = log.runs.iter().filter(|run| {
        run.flag == flag
            && variant.as_deref().is_none_or(|v| served(run) == Some(v))
            && revision.as_deref().is_none_or(|r| run.revision == r)
            && since.is_none_or(|t| run.time_ms >= t)
            && until.is_none_or(|t| run.time_ms < t)
    });
    if !summary {
        for run in selected {
            outln!(
                "{}",
                json!({
                    "run_id": run.run_id,
                    "unit": run.unit,
                    "time": run.time,
                    "variant": served(run),
                    "assigned": run.variant,
                    "revision": run.revision,
                    "rule_id": run.rule_id,
                    "reason": run.reason,
                    "segment": run.segment,
                    "outcome": run.outcome,
                    "error_kind": run.error_kind,
                    "quality": run.quality,
                    "score": run.score,
                })
            );
        }
        return Ok(());
    }
    #[derive(Default)]
    struct Count<'a> {
        runs: u64,
        success: u64,
        error: u64,
        no_outcome: u64,
        units: BTreeSet<&'a str>,
        revisions: BTreeSet<&'a str>,
    }
    let mut counts: BTreeMap<(Option<&str>, Option<&str>), Count<'_>> = BTreeMap::new();
    for run in selected {
        let count = counts
            .entry((served(run), run.segment.as_deref()))
            .or_default();
        count.runs += 1;
        match run.outcome.as_deref() {
            Some("success") => count.success += 1,
            Some(_) => count.error += 1,
            None => count.no_outcome += 1,
        }
        if let Some(unit) = run.unit.as_deref() {
            count.units.insert(unit);
        }
        count.revisions.insert(&run.revision);
    }
    for ((variant, segment), count) in counts {
        outln!(
            "{}",
            json!({
                "flag": flag,
                "variant": variant,
                "segment": segment,
                "runs": count.runs,
                "units": count.units.len(),
                "success": count.success,
                "error": count.error,
                "no_outcome": count.no_outcome,
                "revisions": count.revisions,
            })
        );
    }
    Ok(())
}
