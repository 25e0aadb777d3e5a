//! `flagrail autopilot`: decide every autopilot ramp of a document from events files, print one
//! line per decision, and (unless `--dry-run`) write promote / halt / roll back / revert into
//! the document through the audited rewrite `kill` uses. docs/autopilot.md describes the rule.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flagrail_core::admin::{ramp_file, DocumentSigner, KillOptions, RampChange};
use flagrail_core::autopilot::events::{arm_evidence, Arms, EventLog};
use flagrail_core::autopilot::{
    decide, look, Decision, GovernedState, MetricEvidence, Observation, RampLook, SrmTest, Verdict,
};
use flagrail_core::document::Action;
use flagrail_core::time::{format_timestamp, now_millis, Millis};
use flagrail_core::Document;
use serde_json::{json, Value};

use crate::args::Args;
use crate::{load, parse_at, warn, Failure, Outcome};

pub const USAGE: &str = "autopilot FILE --events EVENTS… [--once] [--dry-run] [--json] [--at TIME]
                   [--interval SECONDS] [--max-looks N] [--actor NAME] [--key KEY] [--force]";

pub const DETAILS: &str =
    "  --events EVENTS…  events JSON-lines files (what `call`, trackers and feedback write)
  --redis URL       read the fleet's metrics from Redis instead (not available yet: exit 1,
                    code AUTOPILOT_REDIS_NOT_YET)
  --once            one look, then exit (default: a look every --interval seconds)
  --dry-run         decide and print, write nothing
  --json            one JSON object per decision: flag, rule_id, state, step, decision and the
                    evidence (samples per arm, each metric's interval and limit, the SRM check)
  --at TIME         decide as of TIME (default now); with looks after the first, each look is
                    --interval later (a replay of recorded events)
  --interval S      seconds between looks (default 60)
  --max-looks N     stop after N looks (default: run until stopped)
  --actor NAME      who writes, for the audit log (default autopilot)
  --key KEY         as for kill: the private key that re-signs a signed document (FILE.sig)
  --force           as for kill: rewrite a read-only document, or a signed one without --key
A decision is written only for a ramp the autopilot governs (paused_at at its live step's start);
promote moves start and paused_at, halt sets paused_at, roll back and revert set rolled_back.
Each write bumps the revision and appends the decision and its evidence to <name>.audit.jsonl.
See docs/autopilot.md and docs/runbook.md, \"Autopilot\".";

/// The stable code of the not-yet-available Redis input.
pub const REDIS_NOT_YET: &str = "AUTOPILOT_REDIS_NOT_YET";

/// Reads every events file into one log.
pub fn read_events(paths: &[String]) -> Result<EventLog, Failure> {
    let mut log = EventLog::default();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .map_err(|err| Failure::failed(format!("{path}: {err} [SOURCE_UNREACHABLE]")))?;
        log.read(&text);
    }
    Ok(log)
}

/// One autopilot ramp at one look: where it stands and, when governed, the verdict.
pub struct RampDecision {
    pub flag: String,
    pub rule_id: String,
    pub candidate: String,
    pub look: RampLook,
    pub verdict: Option<Verdict>,
}

impl RampDecision {
    pub fn to_json(&self, at: Millis) -> Value {
        json!({
            "at": format_timestamp(at),
            "flag": self.flag,
            "rule_id": self.rule_id,
            "candidate": self.candidate,
            "control": self.look.control,
            "state": self.look.state.as_str(),
            "step": self.look.step,
            "percent": self.look.percent,
            "step_began": self.look.step_began,
            "decision": self.verdict.as_ref().map(|v| v.decision),
            "reason": self.verdict.as_ref().map(|v| v.reason),
            "evidence": self.verdict,
        })
    }
}

/// Every autopilot ramp of `doc` decided at `at` from `log`. `srm_rejected` holds the steps
/// (flag, rule, step start) whose sequential SRM test rejected at an earlier look.
pub fn decide_all(
    doc: &Document,
    log: &EventLog,
    at: Millis,
    srm_rejected: &HashSet<(String, String, Millis)>,
) -> Vec<RampDecision> {
    let mut out = Vec::new();
    for flag in doc.flags() {
        for rule in &flag.rules {
            let Action::Ramp(ramp) = &rule.action else {
                continue;
            };
            let Some(spec) = flag.autopilot_of(ramp) else {
                continue;
            };
            let candidate = flag.variants[ramp.variant].id.to_string();
            let seen = look(ramp, spec, at);
            let verdict = match (seen.state, seen.step, seen.step_began_ms) {
                (GovernedState::Governed, Some(step), Some(began)) => {
                    let (control, treated) = arm_evidence(
                        log,
                        &Arms {
                            flag: &flag.key,
                            rule_id: &rule.id,
                            candidate: &candidate,
                            control: &spec.control,
                            from: began,
                            until: at.saturating_add(1),
                        },
                    );
                    let percents: Vec<u32> = ramp.steps.iter().map(|s| s.milli_percent).collect();
                    let key = (flag.key.to_string(), rule.id.to_string(), began);
                    Some(decide(
                        spec,
                        &Observation {
                            step_milli_percents: &percents,
                            step,
                            held: at - began,
                            control: &control,
                            candidate: &treated,
                            srm_rejected_earlier: srm_rejected.contains(&key),
                        },
                    ))
                }
                _ => None,
            };
            out.push(RampDecision {
                flag: flag.key.to_string(),
                rule_id: rule.id.to_string(),
                candidate,
                look: seen,
                verdict,
            });
        }
    }
    out
}

fn number(x: f64) -> String {
    if x == 0.0 || (x.abs() >= 0.01 && x.abs() < 1e6) {
        format!("{:.4}", x)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{x:.3e}")
    }
}

fn metric_text(m: &MetricEvidence) -> String {
    let op = match m.must_stay {
        flagrail_core::autopilot::Side::Above => "≥",
        flagrail_core::autopilot::Side::Below => "≤",
    };
    let scale = match m.scale {
        flagrail_core::autopilot::Scale::Difference => "Δ",
        flagrail_core::autopilot::Scale::Ratio => "×",
    };
    match (m.estimate, m.interval) {
        (Some(e), Some([lo, hi])) => format!(
            "{} {scale}{} [{}, {}] limit {op} {} ({})",
            m.metric,
            number(e),
            number(lo),
            number(hi),
            number(m.limit),
            serde_json::to_value(m.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ),
        _ => format!(
            "{} insufficient data (limit {op} {})",
            m.metric,
            number(m.limit)
        ),
    }
}

fn word(value: Value) -> String {
    Some(value)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The human line of one decision.
pub fn line(d: &RampDecision) -> String {
    let head = format!(
        "{} {} ({} vs {}): step {} at {} %",
        d.flag,
        d.rule_id,
        d.candidate,
        d.look.control,
        d.look.step.map_or("-".to_string(), |s| s.to_string()),
        number(d.look.percent)
    );
    match &d.verdict {
        None => format!("{head}: {}, nothing to decide", d.look.state.as_str()),
        Some(v) => {
            let metrics: Vec<String> = v.metrics.iter().map(metric_text).collect();
            format!(
                "{head}: {} ({}); units control {} / candidate {}; held {} min; {}",
                word(json!(v.decision)),
                word(json!(v.reason)),
                v.samples.control,
                v.samples.candidate,
                v.held_ms / 60_000,
                metrics.join("; ")
            )
        }
    }
}

pub fn run(args: &mut Args) -> Outcome {
    let events = args.values("--events");
    let redis = args.option("--redis");
    let once = args.flag("--once");
    let dry_run = args.flag("--dry-run");
    let as_json = args.flag("--json");
    let force = args.flag("--force");
    let signer = match args.option("--key") {
        Some(key_path) => {
            let text = std::fs::read_to_string(&key_path)
                .map_err(|err| Failure::failed(format!("--key {key_path}: {err}")))?;
            let key = flagrail_sources::PrivateKey::parse(&text)
                .map_err(|err| Failure::usage(format!("--key {key_path}: {err}")))?;
            Some(Arc::new(key) as Arc<dyn DocumentSigner>)
        }
        None => None,
    };
    let fixed_at = args.option("--at");
    let interval = match args.option("--interval") {
        None => 60.0,
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
            .ok_or_else(|| {
                Failure::usage(format!(
                    "--interval: \"{text}\" is not a number of seconds above 0 and at most 86400"
                ))
            })?,
    };
    let max_looks = match args.option("--max-looks") {
        None => None,
        Some(text) => Some(text.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            Failure::usage(format!(
                "--max-looks: \"{text}\" is not a whole number above 0"
            ))
        })?),
    };
    let actor = args
        .option("--actor")
        .unwrap_or_else(|| "autopilot".to_string());
    let file = args.positional("FILE")?;
    args.finish()?;
    if redis.is_some() {
        return Err(Failure::failed(format!(
            "--redis: not available yet: the fleet's metrics in Redis are per-request totals per variant since each process started, not the per-unit values of the live step that the autopilot's test needs; pass --events files [{REDIS_NOT_YET}]"
        )));
    }
    if events.is_empty() {
        return Err(Failure::usage("autopilot needs --events FILE…"));
    }
    let start_at = match fixed_at {
        Some(text) => Some(parse_at(Some(text))?),
        None => None,
    };
    let interval_ms = (interval * 1000.0).round() as Millis;
    let mut srm_rejected: HashSet<(String, String, Millis)> = HashSet::new();
    let mut looks: u64 = 0;
    loop {
        let at = match start_at {
            Some(t) => t.saturating_add(interval_ms.saturating_mul(looks as i64)),
            None => now_millis(),
        };
        one_look(
            &file,
            &events,
            at,
            &mut srm_rejected,
            &LookOptions {
                dry_run,
                as_json,
                force,
                signer: signer.clone(),
                actor: &actor,
            },
        )?;
        looks += 1;
        if once || max_looks.is_some_and(|max| looks >= max) {
            return Ok(());
        }
        // A replay (--at) does not wait: its clock is the events'.
        if start_at.is_none() {
            std::thread::sleep(Duration::from_millis(interval_ms as u64));
        }
    }
}

struct LookOptions<'a> {
    dry_run: bool,
    as_json: bool,
    force: bool,
    signer: Option<Arc<dyn DocumentSigner>>,
    actor: &'a str,
}

fn one_look(
    file: &str,
    events: &[String],
    at: Millis,
    srm_rejected: &mut HashSet<(String, String, Millis)>,
    options: &LookOptions<'_>,
) -> Outcome {
    let doc = load(file)?;
    let log = read_events(events)?;
    if log.skipped_lines > 0 {
        warn(&format!(
            "warning: {} line(s) of the events files are not events this reader uses; skipped",
            log.skipped_lines
        ));
    }
    for decision in decide_all(&doc, &log, at, srm_rejected) {
        let mut written = Value::Null;
        if let (Some(verdict), Some(began)) = (&decision.verdict, decision.look.step_began_ms) {
            if verdict
                .srm
                .is_some_and(|s| s.mismatch && s.test == SrmTest::Sequential)
            {
                srm_rejected.insert((decision.flag.clone(), decision.rule_id.clone(), began));
            }
            if !options.dry_run && verdict.decision != Decision::Hold {
                let outcome = ramp_file(
                    Path::new(file),
                    &RampChange {
                        flag: &decision.flag,
                        rule_id: &decision.rule_id,
                        verdict,
                        actor: options.actor,
                        at,
                    },
                    &KillOptions {
                        force: options.force,
                        signer: options.signer.clone(),
                        ..KillOptions::default()
                    },
                )?;
                for warning in &outcome.warnings {
                    warn(&format!("warning: {warning}"));
                }
                if outcome.changed {
                    written = json!({
                        "old_revision": outcome.old_revision,
                        "new_revision": outcome.new_revision,
                        "audit_log": outcome.audit_log.display().to_string(),
                    });
                }
            }
        }
        if options.as_json {
            let mut value = decision.to_json(at);
            if let Some(object) = value.as_object_mut() {
                object.insert("written".into(), written);
            }
            outln!("{value}");
        } else {
            let mut text = line(&decision);
            if let Some(rev) = written.get("new_revision").and_then(Value::as_str) {
                text.push_str(&format!(" -> written, revision {rev}"));
            } else if options.dry_run
                && decision
                    .verdict
                    .as_ref()
                    .is_some_and(|v| v.decision != Decision::Hold)
            {
                text.push_str(" (dry run: not written)");
            }
            outln!("{text}");
        }
    }
    Ok(())
}
