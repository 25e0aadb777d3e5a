//! `flagrail`: validate, lint, evaluate, explain, bucket, kill and simulate flag documents.
//!
//! Exit codes: 0 success; 1 the document or the operation failed (errors on stderr); 2 the
//! command line is wrong. A closed stdout (`flagrail … | head`) ends a command quietly with 0.

/// `println!` that never panics: a reader that went away ends the command quietly (exit 0), any
/// other write error is a failure. Use it for every line a command prints to stdout.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_line(format_args!($($arg)*))?
    };
}

mod args;
mod autopilot;
mod diff;
mod drill;
mod fleet_metrics;
mod forensics;
mod redis;
mod report;
mod signing;
mod simulate;

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use flagrail_core::admin::{kill_file, KillChange, KillOptions, Target};
use flagrail_core::time::{format_timestamp, now_millis, parse_timestamp, Millis};
use flagrail_core::{decision_json, At, Document, Error, NoOverlay};
use serde_json::{json, Value};

use args::Args;

/// One subcommand. Add a command by adding a row to [`COMMANDS`]: `help`, `COMMAND --help` and
/// the usage text are made from the table.
pub struct Command {
    pub name: &'static str,
    /// The synopsis after `flagrail ` (continuation lines indented).
    pub usage: &'static str,
    /// What `flagrail help COMMAND` adds below the synopsis (options and defaults).
    pub details: &'static str,
    pub run: fn(&mut Args) -> Outcome,
}

const COMMANDS: &[Command] = &[
    Command {
        name: "validate",
        usage: "validate FILE",
        details: "",
        run: validate,
    },
    Command {
        name: "lint",
        usage: "lint FILE [--at TIME] [--strict]",
        details: "",
        run: lint,
    },
    Command {
        name: "eval",
        usage: "eval FILE --flag F [--context JSON] [--at TIME] [--default VARIANT]",
        details: "",
        run: eval_command,
    },
    Command {
        name: "explain",
        usage: "explain FILE --flag F [--context JSON] [--at TIME]",
        details: "",
        run: explain_command,
    },
    Command {
        name: "eval-batch",
        usage: "eval-batch FILE          (JSON lines on stdin: {\"flag\", \"context\", \"at\"})",
        details: "",
        run: eval_batch,
    },
    Command {
        name: "bucket",
        usage: "bucket --salt S --unit U [--total W]",
        details: "",
        run: bucket,
    },
    Command {
        name: "kill",
        usage: "kill FILE (--flag F | --all) --reason TEXT [--actor NAME] [--key KEY] [--force]
  flagrail kill --redis URL [--redis-key K] (--flag F | --all) --reason TEXT [--actor NAME] [--key KEY]",
        details: KILL_DETAILS,
        run: kill_command,
    },
    Command {
        name: "unkill",
        usage: "unkill FILE (--flag F | --all) [--reason TEXT] [--actor NAME] [--key KEY] [--force]
  flagrail unkill --redis URL [--redis-key K] (--flag F | --all) [--reason TEXT] [--actor NAME] [--key KEY]",
        details: KILL_DETAILS,
        run: unkill_command,
    },
    Command {
        name: "push",
        usage: redis::PUSH_USAGE,
        details: redis::PUSH_DETAILS,
        run: redis::push,
    },
    Command {
        name: "status",
        usage: redis::STATUS_USAGE,
        details: redis::STATUS_DETAILS,
        run: redis::status,
    },
    Command {
        name: "metrics",
        usage: fleet_metrics::METRICS_USAGE,
        details: fleet_metrics::METRICS_DETAILS,
        run: fleet_metrics::metrics,
    },
    Command {
        name: "simulate",
        usage:
            "simulate FILE --flag F --users N [--context JSON] [--at TIME | --timeline] [--json]",
        details: "",
        run: simulate::run,
    },
    Command {
        name: "diff",
        usage: diff::USAGE,
        details: diff::DETAILS,
        run: diff::run,
    },
    Command {
        name: "drill",
        usage: drill::USAGE,
        details: drill::DETAILS,
        run: drill::run,
    },
    Command {
        name: "autopilot",
        usage: autopilot::USAGE,
        details: autopilot::DETAILS,
        run: autopilot::run,
    },
    Command {
        name: "forensics",
        usage: forensics::USAGE,
        details: forensics::DETAILS,
        run: forensics::run,
    },
    Command {
        name: "report",
        usage: report::USAGE,
        details: report::DETAILS,
        run: report::run,
    },
    Command {
        name: "keygen",
        usage: "keygen --out DIR         (writes DIR/flagrail.key, private, and DIR/flagrail.pub)",
        details: signing::KEYGEN_DETAILS,
        run: signing::keygen,
    },
    Command {
        name: "sign",
        usage: "sign --key flagrail.key FILE   (writes FILE.sig over FILE's exact bytes)",
        details: signing::SIGN_DETAILS,
        run: signing::sign,
    },
];

const KILL_DETAILS: &str = "  --flag F       the flag's own switch
  --all          the document-wide switch: every flag serves its kill variant
  --reason TEXT  why, written to the switch and the audit log (required for kill)
  --actor NAME   who acts, for the audit log (default $USER)
  --key KEY      the private key (flagrail.key) that re-signs a signed document: FILE.sig is
                 replaced right after FILE, under the same lock
  --force        rewrite a read-only document, or one whose owner cannot be kept; kill a
                 signed document without --key (its old .sig stays: processes that verify
                 keep the previous revision), or re-sign one whose .sig the key did not make
A signed document (FILE.sig beside it) is refused without --key: the kill would not reach the
processes that verify signatures. With --key, its signature must be the key's signature of the
current FILE (else refused: another key, or an unsigned edit). An unsigned FILE killed with
--key is signed. The real file (through symlinks) is locked, only the changed values are rewritten, its mode and
owner are kept, and one line is appended to <name>.audit.jsonl beside it. A switch already in
the requested state is left alone (nothing written, exit 0). Exit 1 means nothing was changed
(refused or failed). Warnings go to stderr. See docs/runbook.md, \"Kill the flag\".
With --redis URL instead of FILE (and --redis-key K, default flagrail:document), the document
in Redis is changed by compare-and-set (re-read and retried if another write came first) and
published at once; --key flagrail.key re-signs a signed document (required for one),
--verify-key F checks the stored one first, --audit-log F is the local audit log (default
flagrail.audit.jsonl). The audit record also goes to the stream flagrail:{K}:audit.";

const FOOTER: &str = "\
FILE may be an http(s):// URL wherever a document is only read (not kill/unkill/sign).
--verify-key PUB (flagrail.pub, or its text) wherever a document is only read: FILE is read
only if FILE.sig (or URL.sig) is its signature by that key, else exit 1 [SIGNATURE_INVALID].
TIME is RFC 3339 (2026-11-21T09:00:00Z) or a date (2026-11-21); the default is now.
exit codes: 0 ok, 1 invalid document or failed operation, 2 bad command line,
3 a dangerous change (diff, without --allow)";

fn usage() -> String {
    let mut text = String::from(
        "flagrail — feature flags for model, prompt and parameter changes\n\nusage:\n",
    );
    for command in COMMANDS {
        text.push_str(&format!("  flagrail {}\n", command.usage));
    }
    text.push_str("  flagrail help [COMMAND]     (a command's options; also COMMAND --help)\n\n");
    text.push_str(FOOTER);
    text
}

/// A command failure: message for stderr and the exit code.
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: format!("{}\n\n{}", message.into(), usage()),
        }
    }
    /// A failure with its own exit code (`flagrail diff`: 3 for a dangerous change).
    pub fn exit(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
    /// A failed write to stdout. The reader going away (`| head`) is not an error of the
    /// command: it ends quietly.
    pub fn stdout(err: std::io::Error) -> Failure {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            Failure {
                code: 0,
                message: String::new(),
            }
        } else {
            Failure::failed(format!("stdout: {err}"))
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

pub type Outcome = Result<(), Failure>;

/// Writes one line to stdout (see [`outln!`]).
pub fn write_line(line: std::fmt::Arguments<'_>) -> Outcome {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
        .map_err(Failure::stdout)
}

/// Writes one line to stderr; a stderr that cannot be written is ignored (nowhere to say so).
pub fn warn(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn main() -> ExitCode {
    let result = Args::from_env().and_then(|mut args| run(&mut args));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message.is_empty() {
                warn(&failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}

fn run(args: &mut Args) -> Outcome {
    let Some(name) = args.command() else {
        return Err(Failure::usage("missing command"));
    };
    match name.as_str() {
        "help" | "--help" | "-h" => {
            let topic = args.next_positional();
            args.finish()?;
            return help(topic.as_deref());
        }
        "--version" | "version" => {
            args.finish()?;
            outln!("flagrail {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        _ => {}
    }
    let Some(command) = COMMANDS.iter().find(|c| c.name == name) else {
        return Err(Failure::usage(format!("unknown command \"{name}\"")));
    };
    if args.flag("--help") || args.flag("-h") {
        return help(Some(command.name));
    }
    if !WRITERS.contains(&command.name) {
        if let Some(key) = args.option("--verify-key") {
            let key = read_verify_key(&key)?;
            // Set once, before the command runs: `run` is called once per process.
            let _ = VERIFY_KEY.set(key);
        }
    }
    (command.run)(args)
}

/// Commands that write documents or keys: `--verify-key` means nothing to them (kill and
/// unkill take the private `--key`).
const WRITERS: &[&str] = &["kill", "unkill", "sign", "keygen"];

/// The `--verify-key` of this invocation: every document [`load`] reads must be signed by it.
static VERIFY_KEY: std::sync::OnceLock<flagrail_sources::VerifyKey> = std::sync::OnceLock::new();

/// `--verify-key PUB`: the path of a `flagrail.pub`, or its text (`ed25519:…`).
fn read_verify_key(given: &str) -> Result<flagrail_sources::VerifyKey, Failure> {
    let text = if given.trim_start().starts_with("ed25519:") {
        given.to_string()
    } else {
        std::fs::read_to_string(given)
            .map_err(|err| Failure::usage(format!("--verify-key {given}: {err}")))?
    };
    flagrail_sources::VerifyKey::parse(&text)
        .map_err(|err| Failure::usage(format!("--verify-key {given}: {err}")))
}

fn help(topic: Option<&str>) -> Outcome {
    let Some(topic) = topic else {
        outln!("{}", usage());
        return Ok(());
    };
    let Some(command) = COMMANDS.iter().find(|c| c.name == topic) else {
        return Err(Failure::usage(format!("no command \"{topic}\"")));
    };
    outln!("usage: flagrail {}", command.usage);
    if !command.details.is_empty() {
        outln!("\n{}", command.details);
    }
    outln!("\n{FOOTER}");
    Ok(())
}

/// Reads a document file as a service would: a regular file (through symlinks), at most one
/// byte more than the loader accepts, so `/dev/zero` or a FIFO is an error, not a hang.
///
/// With `--verify-key`, the document's detached signature (`FILE.sig`, `URL.sig`) is checked
/// first, with the rules and codes of a service's source.
pub fn load(path: &str) -> Result<Document, Failure> {
    Ok(Document::from_slice(&read_document_bytes(path)?)?)
}

/// The bytes of the document at `path` (a file or an http(s) URL), bounded like the loader and,
/// with `--verify-key`, checked against their detached signature first.
pub fn read_document_bytes(path: &str) -> Result<Vec<u8>, Failure> {
    let verify_key = VERIFY_KEY.get();
    if flagrail_sources::is_url(path) {
        let options = flagrail_sources::HttpOptions {
            verify_key: verify_key.copied(),
            ..flagrail_sources::HttpOptions::default()
        };
        return Ok(flagrail_sources::fetch_bytes(path, options)?);
    }
    use std::io::Read;
    let unreachable =
        |detail: String| Failure::failed(format!("{path}: {detail} [SOURCE_UNREACHABLE]"));
    let metadata = std::fs::metadata(path).map_err(|err| unreachable(err.to_string()))?;
    if !metadata.is_file() {
        return Err(unreachable("not a regular file".to_string()));
    }
    let file = std::fs::File::open(path).map_err(|err| unreachable(err.to_string()))?;
    let mut bytes = Vec::new();
    file.take(flagrail_core::load::MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| unreachable(err.to_string()))?;
    if let Some(key) = verify_key {
        let signature = flagrail_core::live::read_signature(Path::new(path))?;
        key.verify(path, &bytes, signature.as_deref())?;
    }
    Ok(bytes)
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

fn print_json(value: &Value) -> Outcome {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
    Ok(())
}

fn validate(args: &mut Args) -> Outcome {
    let file = args.positional("FILE")?;
    args.finish()?;
    let doc = load(&file)?;
    outln!(
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
        outln!("{warning}");
    }
    outln!(
        "{file}: {} warning{}",
        warnings.len(),
        if warnings.len() == 1 { "" } else { "s" }
    );
    if strict && !warnings.is_empty() {
        return Err(Failure::failed("lint --strict: warnings found"));
    }
    Ok(())
}

fn eval_command(args: &mut Args) -> Outcome {
    eval(args, false)
}

fn explain_command(args: &mut Args) -> Outcome {
    eval(args, true)
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
    print_json(&output)
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
        writeln!(out, "{result}").map_err(Failure::stdout)?;
    }
    out.flush().map_err(Failure::stdout)
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
    outln!("{bucket}");
    Ok(())
}

fn kill_command(args: &mut Args) -> Outcome {
    kill(args, true)
}

fn unkill_command(args: &mut Args) -> Outcome {
    kill(args, false)
}

fn kill(args: &mut Args, active: bool) -> Outcome {
    if let Some(url) = args.option("--redis") {
        return redis::kill(args, url, active);
    }
    let flag = args.option("--flag");
    let all = args.flag("--all");
    let reason = args.option("--reason");
    let force = args.flag("--force");
    let signer = match args.option("--key") {
        Some(key_path) => {
            let text = std::fs::read_to_string(&key_path)
                .map_err(|err| Failure::failed(format!("--key {key_path}: {err}")))?;
            let key = flagrail_sources::PrivateKey::parse(&text)
                .map_err(|err| Failure::usage(format!("--key {key_path}: {err}")))?;
            Some(std::sync::Arc::new(key)
                as std::sync::Arc<dyn flagrail_core::admin::DocumentSigner>)
        }
        None => None,
    };
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
        &KillOptions {
            force,
            signer,
            ..KillOptions::default()
        },
    )?;
    for warning in &outcome.warnings {
        warn(&format!("warning: {warning}"));
    }
    let what = match target {
        Target::Flag(f) => format!("flag {f}"),
        Target::All => "every flag".to_string(),
    };
    if !outcome.changed {
        let before = &outcome.before;
        let mut since = String::new();
        if let Some(at) = &before.at {
            since.push_str(&format!(" since {at}"));
        }
        if let Some(actor) = &before.actor {
            since.push_str(&format!(" by {actor}"));
        }
        if let Some(reason) = &before.reason {
            since.push_str(&format!(": {reason}"));
        }
        let (what, state) = match (target, active) {
            (Target::Flag(_), true) => (what, format!("is already killed{since}")),
            (Target::Flag(_), false) => (what, "is not killed (its own switch is off)".to_string()),
            (Target::All, true) => (
                "the document-wide kill".to_string(),
                format!("is already on{since}"),
            ),
            (Target::All, false) => (
                "the document-wide kill".to_string(),
                "is already off".to_string(),
            ),
        };
        outln!(
            "{what} in {file} {state}; nothing written, revision {} unchanged",
            outcome.old_revision
        );
        return Ok(());
    }
    outln!(
        "{} {what} in {file}: revision {} -> {} at {} by {actor}; audit: {}",
        if active { "killed" } else { "unkilled" },
        outcome.old_revision,
        outcome.new_revision,
        format_timestamp(at),
        outcome.audit_log.display()
    );
    if let Some(signature) = &outcome.signature {
        outln!("signed: {}", signature.display());
    }
    Ok(())
}
