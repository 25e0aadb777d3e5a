//! `flagrail`: validate, lint, evaluate, explain, bucket, kill and simulate flag documents.
//!
//! Exit codes: 0 success; 1 the document or the operation failed (errors on stderr); 2 the
//! command line is wrong.

mod args;
mod drill;
mod simulate;

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use flagrail_core::admin::{kill_file, KillChange, Target};
use flagrail_core::time::{format_timestamp, now_millis, parse_timestamp, Millis};
use flagrail_core::{decision_json, At, Document, Error, NoOverlay};
use serde_json::{json, Value};

use args::Args;

const USAGE: &str = "\
flagrail — feature flags for model, prompt and parameter changes

usage:
  flagrail validate FILE
  flagrail lint FILE [--at TIME] [--strict]
  flagrail eval FILE --flag F [--context JSON] [--at TIME] [--default VARIANT]
  flagrail explain FILE --flag F [--context JSON] [--at TIME]
  flagrail eval-batch FILE          (JSON lines on stdin: {\"flag\", \"context\", \"at\"})
  flagrail bucket --salt S --unit U [--total W]
  flagrail kill FILE (--flag F | --all) --reason TEXT [--actor NAME]
  flagrail unkill FILE (--flag F | --all) [--reason TEXT] [--actor NAME]
  flagrail simulate FILE --flag F --users N [--context JSON] [--at TIME | --timeline] [--json]
  flagrail drill FILE --flag F --variant V [--error-rate P] [--latency-ms L] [--requests N]
                 [--every DURATION] [--seed S] [--context JSON] [--at TIME] [--expect-trip] [--json]

TIME is RFC 3339 (2026-11-21T09:00:00Z) or a date (2026-11-21); the default is now.
exit codes: 0 ok, 1 invalid document or failed operation, 2 bad command line";

/// A command failure: message for stderr and the exit code.
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: format!("{}\n\n{USAGE}", message.into()),
        }
    }
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Failure {
        let message = match &err {
            Error::InvalidDocument { problems } => problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            other => format!("{other} [{}]", other.code()),
        };
        Failure::failed(message)
    }
}

type Outcome = Result<(), Failure>;

fn main() -> ExitCode {
    let mut args = Args::from_env();
    let result = match args.command().as_deref() {
        Some("validate") => validate(&mut args),
        Some("lint") => lint(&mut args),
        Some("eval") => eval(&mut args, false),
        Some("explain") => eval(&mut args, true),
        Some("eval-batch") => eval_batch(&mut args),
        Some("bucket") => bucket(&mut args),
        Some("kill") => kill(&mut args, true),
        Some("unkill") => kill(&mut args, false),
        Some("simulate") => simulate::run(&mut args),
        Some("drill") => drill::run(&mut args),
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        Some("--version" | "version") => {
            println!("flagrail {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some(other) => Err(Failure::usage(format!("unknown command \"{other}\""))),
        None => Err(Failure::usage("missing command")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

pub fn load(path: &str) -> Result<Document, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|err| Failure::failed(format!("{path}: {err} [SOURCE_UNREACHABLE]")))?;
    Ok(Document::from_slice(&bytes)?)
}

pub fn parse_at(text: Option<String>) -> Result<Millis, Failure> {
    match text {
        None => Ok(now_millis()),
        Some(t) => parse_timestamp(&t).ok_or_else(|| {
            Failure::usage(format!("--at: \"{t}\" is not an RFC 3339 time or a date"))
        }),
    }
}

pub fn parse_context(text: Option<String>) -> Result<Value, Failure> {
    match text {
        None => Ok(json!({})),
        Some(t) => match serde_json::from_str::<Value>(&t) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err(Failure::usage("--context must be a JSON object")),
            Err(err) => Err(Failure::usage(format!("--context is not JSON: {err}"))),
        },
    }
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

fn validate(args: &mut Args) -> Outcome {
    let file = args.positional("FILE")?;
    args.finish()?;
    let doc = load(&file)?;
    println!(
        "{file}: valid (revision {}, {} flag{}, {} segment{})",
        doc.revision(),
        doc.flags().len(),
        if doc.flags().len() == 1 { "" } else { "s" },
        doc.segments().len(),
        if doc.segments().len() == 1 { "" } else { "s" },
    );
    Ok(())
}

fn lint(args: &mut Args) -> Outcome {
    let at = parse_at(args.option("--at"))?;
    let strict = args.flag("--strict");
    let file = args.positional("FILE")?;
    args.finish()?;
    let doc = load(&file)?;
    let warnings = flagrail_core::lint::lint(&doc, at);
    for warning in &warnings {
        println!("{warning}");
    }
    println!(
        "{file}: {} warning{}",
        warnings.len(),
        if warnings.len() == 1 { "" } else { "s" }
    );
    if strict && !warnings.is_empty() {
        return Err(Failure::failed("lint --strict: warnings found"));
    }
    Ok(())
}

fn eval(args: &mut Args, explain: bool) -> Outcome {
    let flag = args.required("--flag")?;
    let context = parse_context(args.option("--context"))?;
    let at = parse_at(args.option("--at"))?;
    let default = if explain {
        None
    } else {
        args.option("--default")
    };
    let file = args.positional("FILE")?;
    args.finish()?;
    let doc = load(&file)?;
    let output = if explain {
        doc.explain(&flag, &context, &At(at), &NoOverlay).to_value()
    } else {
        let decision = doc.evaluate(&flag, &context, &At(at), &NoOverlay);
        decision_json(&doc, &flag, &decision, default.as_deref())
    };
    print_json(&output);
    Ok(())
}

/// The Rust side of the cross-language test: one JSON line in, one JSON line out.
fn eval_batch(args: &mut Args) -> Outcome {
    let file = args.positional("FILE")?;
    args.finish()?;
    let doc = load(&file)?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (number, line) in stdin.lock().lines().enumerate() {
        let line = line.map_err(|err| Failure::failed(format!("stdin: {err}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let request: Value = serde_json::from_str(&line)
            .map_err(|err| Failure::failed(format!("stdin line {}: {err}", number + 1)))?;
        let flag = request
            .get("flag")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let context = request.get("context").cloned().unwrap_or(Value::Null);
        let at = match request.get("at").and_then(Value::as_str) {
            Some(t) => parse_timestamp(t).ok_or_else(|| {
                Failure::failed(format!("stdin line {}: bad \"at\" {t}", number + 1))
            })?,
            None => now_millis(),
        };
        let decision = doc.evaluate(flag, &context, &At(at), &NoOverlay);
        let result = json!({
            "flag": flag,
            "variant": decision.variant_id(),
            "reason": decision.reason.as_str(),
            "rule_id": decision.rule_id(),
            "bucket": decision.bucket,
            "revision": doc.revision(),
        });
        writeln!(out, "{result}").map_err(|err| Failure::failed(format!("stdout: {err}")))?;
    }
    out.flush()
        .map_err(|err| Failure::failed(format!("stdout: {err}")))
}

fn bucket(args: &mut Args) -> Outcome {
    let salt = args.required("--salt")?;
    let unit = args.required("--unit")?;
    let total = match args.option("--total") {
        None => flagrail_core::PERCENT_TOTAL,
        Some(t) => t.parse::<u32>().ok().filter(|t| *t > 0).ok_or_else(|| {
            Failure::usage(format!(
                "--total: \"{t}\" is not a whole number from 1 to 4294967295"
            ))
        })?,
    };
    args.finish()?;
    // Integer units are hashed as their decimal text, so the text of the argument is the unit.
    let bucket = flagrail_core::bucket(&salt, &unit, total)
        .ok_or_else(|| Failure::usage("--total must be at least 1"))?;
    println!("{bucket}");
    Ok(())
}

fn kill(args: &mut Args, active: bool) -> Outcome {
    let flag = args.option("--flag");
    let all = args.flag("--all");
    let reason = args.option("--reason");
    let actor = args
        .option("--actor")
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_string());
    let file = args.positional("FILE")?;
    args.finish()?;
    let target = match (&flag, all) {
        (Some(f), false) => Target::Flag(f),
        (None, true) => Target::All,
        _ => return Err(Failure::usage("give exactly one of --flag F or --all")),
    };
    if actor.trim().is_empty() {
        return Err(Failure::usage(
            "--actor must name someone: the audit log records who acted",
        ));
    }
    if active && reason.is_none() {
        return Err(Failure::usage(
            "kill needs --reason: the audit log and the on-call after you will want it",
        ));
    }
    let at = now_millis();
    let outcome = kill_file(
        Path::new(&file),
        &KillChange {
            target,
            active,
            reason: reason.as_deref(),
            actor: &actor,
            at,
        },
    )?;
    let what = match target {
        Target::Flag(f) => format!("flag {f}"),
        Target::All => "every flag".to_string(),
    };
    println!(
        "{} {what} in {file}: revision {} -> {} at {} by {actor}; audit: {}",
        if active { "killed" } else { "unkilled" },
        outcome.old_revision,
        outcome.new_revision,
        format_timestamp(at),
        outcome.audit_log.display()
    );
    Ok(())
}
