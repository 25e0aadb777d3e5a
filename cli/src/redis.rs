//! The document in Redis: `flagrail push`, and `kill` / `unkill` / `status` with `--redis`.
//!
//! Every write is one atomic script in Redis (document, signature, push counter, audit stream
//! entry, pub/sub announcement: see `flagrail_fleet::push`); the same audit record is also
//! appended to a local JSON-lines log, opened before the write so that a log that cannot be
//! written stops the change before it happens.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use flagrail_core::admin::{KillChange, Target};
use flagrail_core::time::{format_timestamp, now_millis};
use flagrail_fleet::connection::DEFAULT_DOCUMENT_KEY;
use flagrail_fleet::{FleetError, Publisher, Timeouts};
use flagrail_sources::cache::signature_path;
use flagrail_sources::{PrivateKey, VerifyKey};
use serde_json::Value;

use crate::args::Args;
use crate::{warn, Failure, Outcome};

pub const PUSH_USAGE: &str =
    "push FILE --redis URL [--redis-key K] [--verify-key PUB] [--actor NAME] [--audit-log F]";

pub const PUSH_DETAILS: &str =
    "  --redis URL      redis://host:port[/db] or redis+cluster://host:port,host:port,...
  --redis-key K    the key of the document (default flagrail:document)
  --verify-key PUB flagrail.pub (or its text): FILE.sig must be a valid signature of FILE by it
  --actor NAME     who pushes, for the audit records (default $USER)
  --audit-log F    the local audit log (default flagrail.audit.jsonl in the current directory)
FILE is validated (and its signature verified with --verify-key) before anything is written.
FILE.sig, when present, is stored beside the document (a stale signature is deleted). One
atomic script sets the document, bumps the push counter, appends the audit record to the
stream flagrail:{K}:audit and publishes on flagrail:{K}:changed: every Flags.from_redis /
fromRedis process reloads at once. See docs/fleet.md.";

pub const STATUS_USAGE: &str = "status --redis URL [--redis-key K]";

pub const STATUS_DETAILS: &str =
    "Prints, as JSON, the document at the key (revision, size, validity, document-wide kill), the
push counter, whether it is signed, the subscribers on the first reachable node, and the five
newest audit records.";

/// The local audit log unless `--audit-log` says otherwise.
pub const DEFAULT_AUDIT_LOG: &str = "flagrail.audit.jsonl";

pub fn fleet_failure(error: FleetError) -> Failure {
    match error {
        FleetError::Core(error) => error.into(),
        other => Failure::failed(other.to_string()),
    }
}

fn read_text(path: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|err| Failure::failed(format!("{path}: {err}")))
}

/// `--verify-key PUB` of a command that writes (kill, unkill: not consumed by `run`).
fn verify_key(given: Option<String>) -> Result<Option<VerifyKey>, Failure> {
    given
        .map(|given| crate::read_verify_key(&given))
        .transpose()
}

fn actor(args: &mut Args) -> Result<String, Failure> {
    let actor = args
        .option("--actor")
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_string());
    if actor.trim().is_empty() {
        return Err(Failure::usage(
            "--actor must name someone: the audit log records who acted",
        ));
    }
    Ok(actor)
}

/// Opens the local audit log for appending (before anything is written to Redis).
pub fn open_audit_log(path: &Path) -> Result<std::fs::File, Failure> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|err| {
            Failure::failed(format!(
                "{}: {err}; nothing was written to Redis",
                path.display()
            ))
        })
}

/// Appends one record as one line (one `O_APPEND` write).
pub fn append_audit(log: &mut std::fs::File, path: &Path, record: &Value) -> Outcome {
    let mut line = record.to_string();
    line.push('\n');
    log.write_all(line.as_bytes()).map_err(|err| {
        Failure::failed(format!(
            "{}: {err}; the change WAS written to Redis (and its audit stream) but this local record is missing: {line}",
            path.display()
        ))
    })
}

/// `flagrail push FILE --redis URL …`.
pub fn push(args: &mut Args) -> Outcome {
    let url = args.required("--redis")?;
    let key = args
        .option("--redis-key")
        .unwrap_or_else(|| DEFAULT_DOCUMENT_KEY.to_string());
    // `run` consumed `--verify-key` (push only reads FILE, like validate).
    let verify_key = crate::VERIFY_KEY.get().copied();
    let audit_path = PathBuf::from(
        args.option("--audit-log")
            .unwrap_or_else(|| DEFAULT_AUDIT_LOG.to_string()),
    );
    let actor = actor(args)?;
    let file = args.positional("FILE")?;
    args.finish()?;
    let bytes = flagrail_core::live::read_document(Path::new(&file))?;
    let signature_file = signature_path(Path::new(&file));
    let signature = match std::fs::read(&signature_file) {
        Ok(signature) => Some(signature),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            return Err(Failure::failed(format!(
                "{}: {err}",
                signature_file.display()
            )))
        }
    };
    if verify_key.is_none() && signature.is_some() {
        warn(&format!(
            "warning: {} is stored beside the document but not checked (no --verify-key)",
            signature_file.display()
        ));
    }
    // Checked before Redis is touched, so a bad document costs no connection.
    if let Some(key) = &verify_key {
        key.verify(&file, &bytes, signature.as_deref())?;
    }
    flagrail_core::Document::from_slice(&bytes)?;
    let mut log = open_audit_log(&audit_path)?;
    let mut publisher = Publisher::open(&url, &key, Timeouts::default()).map_err(fleet_failure)?;
    let at = now_millis();
    let (pushed, mut record) = publisher
        .push(
            &bytes,
            signature.as_deref(),
            verify_key.as_ref(),
            &actor,
            at,
        )
        .map_err(fleet_failure)?;
    record["file"] = Value::String(file.clone());
    record["redis_revision"] = Value::from(pushed.revision);
    append_audit(&mut log, &audit_path, &record)?;
    outln!(
        "pushed {file} (revision {}) to {}: push counter {} at {} by {actor}{}; audit: {} and {}",
        pushed.document_revision,
        publisher.shown(),
        pushed.revision,
        format_timestamp(at),
        if signature.is_some() { ", signed" } else { "" },
        publisher.keys().audit(),
        audit_path.display()
    );
    Ok(())
}

/// `flagrail kill|unkill --redis URL …` (the file form stays in main.rs).
pub fn kill(args: &mut Args, url: String, active: bool) -> Outcome {
    let flag = args.option("--flag");
    let all = args.flag("--all");
    let reason = args.option("--reason");
    let key = args
        .option("--redis-key")
        .unwrap_or_else(|| DEFAULT_DOCUMENT_KEY.to_string());
    let verify_key = verify_key(args.option("--verify-key"))?;
    let signer = args
        .option("--key")
        .map(|path| Ok::<_, Failure>(PrivateKey::parse(&read_text(&path)?)?))
        .transpose()?;
    let audit_path = PathBuf::from(
        args.option("--audit-log")
            .unwrap_or_else(|| DEFAULT_AUDIT_LOG.to_string()),
    );
    let actor = actor(args)?;
    args.finish()?;
    let target = match (&flag, all) {
        (Some(f), false) => Target::Flag(f),
        (None, true) => Target::All,
        _ => return Err(Failure::usage("give exactly one of --flag F or --all")),
    };
    if active && reason.is_none() {
        return Err(Failure::usage(
            "kill needs --reason: the audit log and the on-call after you will want it",
        ));
    }
    let mut log = open_audit_log(&audit_path)?;
    let mut publisher = Publisher::open(&url, &key, Timeouts::default()).map_err(fleet_failure)?;
    let at = now_millis();
    let outcome = publisher
        .kill(
            &KillChange {
                target,
                active,
                reason: reason.as_deref(),
                actor: &actor,
                at,
            },
            signer.as_ref(),
            verify_key.as_ref(),
        )
        .map_err(fleet_failure)?;
    for warning in &outcome.warnings {
        warn(&format!("warning: {warning}"));
    }
    let what = match target {
        Target::Flag(f) => format!("flag {f}"),
        Target::All => "every flag".to_string(),
    };
    let Some(mut record) = outcome.record else {
        outln!(
            "{what} at {} is already {}; nothing written, revision {} unchanged",
            publisher.shown(),
            if active { "killed" } else { "unkilled" },
            outcome.old_revision
        );
        return Ok(());
    };
    record["redis_revision"] = Value::from(outcome.redis_revision);
    append_audit(&mut log, &audit_path, &record)?;
    outln!(
        "{} {what} at {}: revision {} -> {} (push counter {}) at {} by {actor}; audit: {} and {}",
        if active { "killed" } else { "unkilled" },
        publisher.shown(),
        outcome.old_revision,
        outcome.new_revision,
        outcome.redis_revision,
        format_timestamp(at),
        publisher.keys().audit(),
        audit_path.display()
    );
    Ok(())
}

/// `flagrail status --redis URL [--redis-key K]`.
pub fn status(args: &mut Args) -> Outcome {
    let url = args.required("--redis")?;
    let key = args
        .option("--redis-key")
        .unwrap_or_else(|| DEFAULT_DOCUMENT_KEY.to_string());
    args.finish()?;
    let mut publisher = Publisher::open(&url, &key, Timeouts::default()).map_err(fleet_failure)?;
    let mut status = publisher
        .status(Timeouts::default())
        .map_err(fleet_failure)?;
    // With `--verify-key` (consumed by `run`): whether the stored signature holds.
    if let Some(key) = crate::VERIFY_KEY.get() {
        let stored = publisher.read().map_err(fleet_failure)?;
        status["signature_valid"] = Value::Bool(stored.document.as_deref().is_some_and(|bytes| {
            key.verify(&publisher.shown(), bytes, stored.signature.as_deref())
                .is_ok()
        }));
    }
    let text = serde_json::to_string_pretty(&status)
        .map_err(|err| Failure::failed(format!("cannot print the status: {err}")))?;
    outln!("{text}");
    Ok(())
}
