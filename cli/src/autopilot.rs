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
    decide, look, ArmEvidence, Decision, GovernedState, MetricEvidence, Observation, RampLook,
    SrmTest, Verdict,
};
use flagrail_core::document::Action;
use flagrail_core::time::{format_timestamp, now_millis, Millis};
use flagrail_core::Document;
use flagrail_fleet::connection::DEFAULT_DOCUMENT_KEY;
use flagrail_fleet::{Publisher, Timeouts};
use flagrail_sources::PrivateKey;
use serde_json::{json, Value};

use crate::args::Args;
use crate::redis::{append_audit, fleet_failure, open_audit_log, DEFAULT_AUDIT_LOG};
use crate::{load, parse_at, warn, Failure, Outcome};

pub const USAGE: &str =
    "autopilot FILE --events EVENTS… | [FILE] --redis URL [--redis-key K] [--audit-log F]
                   [--once] [--dry-run] [--json] [--at TIME] [--interval SECONDS]
                   [--max-looks N] [--actor NAME] [--key KEY] [--force]";

pub const DETAILS: &str =
    "  --events EVENTS…  events JSON-lines files (what `call`, trackers and feedback write)
  --redis URL       decide the document at the Redis key from the per-unit evidence the
                    fleet's processes (Flags.from_redis / redis=) write there, and write the
                    decision into that document (compare-and-set, audit stream, push): every
                    process gets it at once. FILE, if given, is not read (a warning when its
                    revision differs from the one in Redis)
  --redis-key K     the key of the document (default flagrail:document)
  --audit-log F     with --redis: the local audit log (default flagrail.audit.jsonl)
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
promote moves start and paused_at, halt sets paused_at, roll back and revert set rolled_back;
each also sets the ramp's last_decision (what status() and explain show). Each write bumps the
revision and appends the decision and its evidence to <name>.audit.jsonl (with --redis: to the
audit stream and --audit-log).
See docs/autopilot.md and docs/runbook.md, \"Autopilot\".";

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
    let from_events = |arms: &Arms<'_>| -> Result<(ArmEvidence, ArmEvidence), Failure> {
        Ok(arm_evidence(log, arms))
    };
    // Reading events cannot fail.
    decide_with_evidence(doc, at, srm_rejected, from_events).unwrap_or_default()
}

/// [`decide_all`] with the arms' evidence from `evidence` (events files, or the fleet's
/// per-unit evidence in Redis), asked once per governed ramp with its step's window.
pub fn decide_with_evidence(
    doc: &Document,
    at: Millis,
    srm_rejected: &HashSet<(String, String, Millis)>,
    mut evidence: impl FnMut(&Arms<'_>) -> Result<(ArmEvidence, ArmEvidence), Failure>,
) -> Result<Vec<RampDecision>, Failure> {
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
                    let (control, treated) = evidence(&Arms {
                        flag: &flag.key,
                        rule_id: &rule.id,
                        candidate: &candidate,
                        control: &spec.control,
                        from: began,
                        until: at.saturating_add(1),
                    })?;
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
    Ok(out)
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
    let private_key = match args.option("--key") {
        Some(key_path) => {
            let text = std::fs::read_to_string(&key_path)
                .map_err(|err| Failure::failed(format!("--key {key_path}: {err}")))?;
            let key = PrivateKey::parse(&text)
                .map_err(|err| Failure::usage(format!("--key {key_path}: {err}")))?;
            Some(Arc::new(key))
        }
        None => None,
    };
    let signer = private_key
        .clone()
        .map(|key| key as Arc<dyn DocumentSigner>);
    let redis_key = args
        .option("--redis-key")
        .unwrap_or_else(|| DEFAULT_DOCUMENT_KEY.to_string());
    let audit_log = args.option("--audit-log");
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
    let file = if redis.is_some() {
        args.next_positional()
    } else {
        Some(args.positional("FILE")?)
    };
    args.finish()?;
    let mut input = match (redis, events.is_empty()) {
        (Some(_), false) => {
            return Err(Failure::usage(
                "give either --events FILE… or --redis URL, not both",
            ))
        }
        (None, true) => {
            return Err(Failure::usage(
                "autopilot needs --events FILE… or --redis URL",
            ))
        }
        (None, false) => Input::Events {
            file: file.unwrap_or_default(),
            events,
        },
        (Some(url), true) => {
            let audit_path = std::path::PathBuf::from(
                audit_log.unwrap_or_else(|| DEFAULT_AUDIT_LOG.to_string()),
            );
            let publisher =
                Publisher::open(&url, &redis_key, Timeouts::default()).map_err(fleet_failure)?;
            Input::Redis(Box::new(RedisInput {
                publisher,
                audit_path,
                private_key,
                local_file: file,
            }))
        }
    };
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
            &mut input,
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

/// Writes a decision into the document file (locked, atomic, audited beside the file).
fn write_file(
    file: &str,
    change: &RampChange<'_>,
    options: &LookOptions<'_>,
) -> Result<Value, Failure> {
    let outcome = ramp_file(
        Path::new(file),
        change,
        &KillOptions {
            force: options.force,
            signer: options.signer.clone(),
            ..KillOptions::default()
        },
    )?;
    for warning in &outcome.warnings {
        warn(&format!("warning: {warning}"));
    }
    Ok(if outcome.changed {
        json!({
            "old_revision": outcome.old_revision,
            "new_revision": outcome.new_revision,
            "audit_log": outcome.audit_log.display().to_string(),
        })
    } else {
        Value::Null
    })
}

/// Writes a decision into the document in Redis (compare-and-set, audit stream, push) and
/// appends the same record to the local audit log, opened before the write.
fn write_redis(redis: &mut RedisInput, change: &RampChange<'_>) -> Result<Value, Failure> {
    let mut log = open_audit_log(&redis.audit_path)?;
    let outcome = redis
        .publisher
        .ramp(
            change,
            redis.private_key.as_deref(),
            crate::VERIFY_KEY.get(),
        )
        .map_err(fleet_failure)?;
    for warning in &outcome.warnings {
        warn(&format!("warning: {warning}"));
    }
    let Some(mut record) = outcome.record else {
        return Ok(Value::Null);
    };
    record["redis_revision"] = Value::from(outcome.redis_revision);
    append_audit(&mut log, &redis.audit_path, &record)?;
    Ok(json!({
        "old_revision": outcome.old_revision,
        "new_revision": outcome.new_revision,
        "redis_revision": outcome.redis_revision,
        "audit_stream": redis.publisher.keys().audit(),
        "audit_log": redis.audit_path.display().to_string(),
    }))
}

struct LookOptions<'a> {
    dry_run: bool,
    as_json: bool,
    force: bool,
    signer: Option<Arc<dyn DocumentSigner>>,
    actor: &'a str,
}

/// Where the document and the outcomes come from.
enum Input {
    /// A document file and events files; decisions are written into the file.
    Events { file: String, events: Vec<String> },
    /// The document at a Redis key and the fleet's per-unit evidence beside it; decisions
    /// are written into that document.
    Redis(Box<RedisInput>),
}

pub struct RedisInput {
    pub publisher: Publisher,
    audit_path: std::path::PathBuf,
    private_key: Option<Arc<PrivateKey>>,
    local_file: Option<String>,
}

impl RedisInput {
    /// The document at the key (verified with `--verify-key` when given).
    pub fn document(&mut self) -> Result<Document, Failure> {
        let stored = self.publisher.read().map_err(fleet_failure)?;
        let Some(bytes) = stored.document else {
            return Err(Failure::failed(format!(
                "{}: no document at this key: push one first (flagrail push FILE --redis URL) [SOURCE_UNREACHABLE]",
                self.publisher.shown()
            )));
        };
        if let Some(key) = crate::VERIFY_KEY.get() {
            key.verify(&self.publisher.shown(), &bytes, stored.signature.as_deref())?;
        }
        let doc = Document::from_slice(&bytes)?;
        if let Some(local) = &self.local_file {
            if let Ok(local_doc) = load(local) {
                if local_doc.revision() != doc.revision() {
                    warn(&format!(
                        "warning: {local} is revision {}, the document at {} is revision {}: the one in Redis is decided and written",
                        local_doc.revision(),
                        self.publisher.shown(),
                        doc.revision()
                    ));
                }
            }
        }
        Ok(doc)
    }

    /// Every autopilot ramp of `doc` decided at `at` from the fleet's evidence in Redis.
    pub fn decide(
        &mut self,
        doc: &Document,
        at: Millis,
        srm_rejected: &HashSet<(String, String, Millis)>,
    ) -> Result<Vec<RampDecision>, Failure> {
        let publisher = &mut self.publisher;
        decide_with_evidence(doc, at, srm_rejected, |arms| {
            let stored = publisher
                .read_evidence(arms.flag, arms.rule_id, arms.from)
                .map_err(fleet_failure)?;
            if stored.dropped_units > 0 || stored.unreadable > 0 {
                warn(&format!(
                    "warning: flag {} ramp {}: {} unit(s) did not fit in the step's evidence in Redis and {} field(s) could not be read; they are not counted",
                    arms.flag, arms.rule_id, stored.dropped_units, stored.unreadable
                ));
            }
            Ok(stored.arms())
        })
    }
}

/// Opens `--redis URL` for `report`: the document and the fleet's evidence.
pub fn open_redis(url: &str, key: &str) -> Result<RedisInput, Failure> {
    Ok(RedisInput {
        publisher: Publisher::open(url, key, Timeouts::default()).map_err(fleet_failure)?,
        audit_path: std::path::PathBuf::from(DEFAULT_AUDIT_LOG),
        private_key: None,
        local_file: None,
    })
}

fn one_look(
    input: &mut Input,
    at: Millis,
    srm_rejected: &mut HashSet<(String, String, Millis)>,
    options: &LookOptions<'_>,
) -> Outcome {
    let decisions = match input {
        Input::Events { file, events } => {
            let doc = load(file)?;
            let log = read_events(events)?;
            if log.skipped_lines > 0 {
                warn(&format!(
                    "warning: {} line(s) of the events files are not events this reader uses; skipped",
                    log.skipped_lines
                ));
            }
            decide_all(&doc, &log, at, srm_rejected)
        }
        Input::Redis(redis) => {
            let doc = redis.document()?;
            redis.decide(&doc, at, srm_rejected)?
        }
    };
    for decision in decisions {
        let mut written = Value::Null;
        if let (Some(verdict), Some(began)) = (&decision.verdict, decision.look.step_began_ms) {
            if verdict
                .srm
                .is_some_and(|s| s.mismatch && s.test == SrmTest::Sequential)
            {
                srm_rejected.insert((decision.flag.clone(), decision.rule_id.clone(), began));
            }
            if !options.dry_run && verdict.decision != Decision::Hold {
                let change = RampChange {
                    flag: &decision.flag,
                    rule_id: &decision.rule_id,
                    verdict,
                    actor: options.actor,
                    at,
                };
                written = match input {
                    Input::Events { file, .. } => write_file(file, &change, options)?,
                    Input::Redis(redis) => write_redis(redis, &change)?,
                };
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
