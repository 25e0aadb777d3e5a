//! Administrative rewrites of a flag document file: the kill switch and its audit trail.
//!
//! A kill is a flag flip, not a redeploy: the document is rewritten atomically (temp file in the
//! same directory, fsync, rename) with a bumped revision, so every process watching the file or
//! polling its URL picks it up within one interval, and a JSON-lines audit record is appended
//! beside it. The rewritten document is validated before it is written: a kill can never leave
//! an invalid document behind.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::document::Document;
use crate::error::{Error, Result};
use crate::time::{format_date, format_timestamp, Millis};

/// What to kill or unkill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Flag(&'a str),
    /// The document-wide kill switch: every flag serves its kill variant.
    All,
}

/// One kill or unkill.
#[derive(Debug, Clone)]
pub struct KillChange<'a> {
    pub target: Target<'a>,
    pub active: bool,
    pub reason: Option<&'a str>,
    pub actor: &'a str,
    pub at: Millis,
}

/// What a rewrite did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillOutcome {
    pub old_revision: String,
    pub new_revision: String,
    pub audit_log: PathBuf,
}

/// The next revision after `old`, written on `today` (`YYYY-MM-DD`): `<today>.<n>`, where n
/// counts up from the old revision when it was written the same day.
pub fn next_revision(old: &str, today: &str) -> String {
    let counter = old
        .strip_prefix(today)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|n| n.parse::<u64>().ok());
    match counter {
        Some(n) => format!("{today}.{}", n + 1),
        None => format!("{today}.1"),
    }
}

/// Applies a kill change to a document value in memory and returns the old revision.
pub fn apply_kill(document: &mut Value, change: &KillChange<'_>) -> Result<String> {
    // The current document must be valid: its flags and revision are what the change names.
    let current = Document::from_value(document.clone())?;
    let old_revision = current.revision().to_string();
    let invalid = |message: String| Error::InvalidArgument { message };
    let root = document
        .as_object_mut()
        .ok_or_else(|| invalid("the document is not a JSON object".to_string()))?;
    let switch_holder: &mut Map<String, Value> = match change.target {
        Target::All => root,
        Target::Flag(key) => {
            if current.flag(key).is_none() {
                let known: Vec<&str> = current.flags().iter().map(|f| &*f.key).collect();
                return Err(invalid(format!(
                    "no flag \"{key}\" in the document (flags: {})",
                    known.join(", ")
                )));
            }
            root.get_mut("flags")
                .and_then(|f| f.get_mut(key))
                .and_then(Value::as_object_mut)
                .ok_or_else(|| invalid(format!("flag \"{key}\" is not an object")))?
        }
    };
    let switch = switch_holder
        .entry("kill")
        .or_insert_with(|| json!({ "active": false }));
    let switch = switch
        .as_object_mut()
        .ok_or_else(|| invalid("\"kill\" is not an object".to_string()))?;
    switch.insert("active".into(), Value::Bool(change.active));
    match change.reason {
        Some(reason) => {
            switch.insert("reason".into(), Value::String(reason.to_string()));
        }
        None => {
            switch.remove("reason");
        }
    }
    switch.insert("actor".into(), Value::String(change.actor.to_string()));
    switch.insert("at".into(), Value::String(format_timestamp(change.at)));
    let new_revision = next_revision(&old_revision, &format_date(change.at));
    root.insert("revision".into(), Value::String(new_revision));
    // Validate what will be written.
    Document::from_value(document.clone())?;
    Ok(old_revision)
}

/// The audit log that belongs to a document file: `flags.json` → `flags.audit.jsonl`.
pub fn audit_log_path(document: &Path) -> PathBuf {
    let stem = document
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "flags".to_string());
    document.with_file_name(format!("{stem}.audit.jsonl"))
}

fn io_error(path: &Path, err: std::io::Error) -> Error {
    Error::SourceUnreachable {
        source: path.display().to_string(),
        detail: err.to_string(),
    }
}

/// Writes `bytes` to `path` atomically: a temp file beside it, fsync, rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "flags.json".to_string());
    let temp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    };
    write().map_err(|err| {
        let _ = fs::remove_file(&temp);
        io_error(path, err)
    })
}

/// Kills or unkills in a document file, atomically, and appends the audit record.
///
/// Concurrent rewrites of one document are serialized by an exclusive lock on its audit log,
/// so two on-call engineers acting at once never lose each other's change. A symlinked
/// document is rewritten at its target, so the link (and whatever manages it) stays intact.
pub fn kill_file(path: &Path, change: &KillChange<'_>) -> Result<KillOutcome> {
    let audit_log = audit_log_path(path);
    let audit = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&audit_log)
        .map_err(|err| io_error(&audit_log, err))?;
    audit.lock().map_err(|err| io_error(&audit_log, err))?;
    let target = fs::canonicalize(path).map_err(|err| io_error(path, err))?;
    let bytes = fs::read(&target).map_err(|err| io_error(path, err))?;
    let mut document = Document::from_slice(&bytes)?.source().clone();
    let old_revision = apply_kill(&mut document, change)?;
    let new_revision = document
        .get("revision")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut text =
        serde_json::to_string_pretty(&document).map_err(|err| Error::InvalidArgument {
            message: format!("cannot serialize the document: {err}"),
        })?;
    text.push('\n');
    write_atomically(&target, text.as_bytes())?;

    let record = json!({
        "time": format_timestamp(change.at),
        "action": if change.active { "kill" } else { "unkill" },
        "flag": match change.target { Target::Flag(key) => key, Target::All => "*" },
        "actor": change.actor,
        "reason": change.reason,
        "old_revision": old_revision,
        "new_revision": new_revision,
        "document": path.display().to_string(),
    });
    // One write of one line with O_APPEND: concurrent writers never interleave within a line.
    let mut line = record.to_string();
    line.push('\n');
    (&audit)
        .write_all(line.as_bytes())
        .map_err(|err| io_error(&audit_log, err))?;
    // The lock is released when `audit` is closed.
    Ok(KillOutcome {
        old_revision,
        new_revision,
        audit_log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_count_up_within_a_day() {
        assert_eq!(next_revision("2026-11-21.3", "2026-11-21"), "2026-11-21.4");
        assert_eq!(next_revision("2026-11-20.9", "2026-11-21"), "2026-11-21.1");
        assert_eq!(next_revision("v7", "2026-11-21"), "2026-11-21.1");
        assert_eq!(next_revision("2026-11-21", "2026-11-21"), "2026-11-21.1");
    }
}
