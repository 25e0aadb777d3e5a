//! Administrative rewrites of a flag document file: the kill switch, the autopilot's ramp
//! decisions, and their audit trail.
//!
//! A kill is a flag flip, not a redeploy: the document is rewritten atomically with a bumped
//! revision, so every process watching the file picks it up within one poll interval, and a
//! JSON-lines audit record is appended beside it. The protocol, in order:
//!
//! 1. The path is resolved to the real file (through symlinks). Everything below is named after
//!    the real file, so a kill through a link and a kill through the real path are one document:
//!    one lock, one audit log.
//! 2. An exclusive lock on `.<name>.lock` beside the real file serializes concurrent rewrites.
//!    The lock file is never replaced (the document is, by rename), so every writer locks the
//!    same inode. Waiting is bounded by [`LOCK_WAIT`].
//! 3. Under the lock the document is read again and the change is applied to its *text*: only
//!    the values of the switch and the revision change, so the author's formatting survives and
//!    a kill is a one-line diff (plus the revision) in review. The edited text is checked to mean
//!    exactly what the change means and to be a valid document before anything is written.
//! 4. A switch already in the requested state is left alone: nothing is written, the revision
//!    does not move, no audit record is appended.
//! 5. The new text goes to a temp file created exclusively (`O_EXCL`, random name, same
//!    directory, never through a symlink), given the document's owner and mode, flushed and
//!    renamed over the real file. A read-only document, or one whose owner cannot be kept, is
//!    refused unless the caller forces it.
//! 6. A signed document (a `.sig` beside it) is re-signed with the caller's key
//!    ([`KillOptions::signer`]) and its signature replaced right after it, the same way; without
//!    a key, or with a signature the key did not make, the kill is refused unless forced (the
//!    rules are in [`signed`]).
//! 7. One audit line is appended with a single `O_APPEND` write (the log is opened before the
//!    document is replaced, so a log that cannot be written stops the kill before it happens).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::document::Document;
use crate::error::{Error, Result};
use crate::time::{format_date, format_timestamp, Millis};

mod files;
mod ramp;
pub mod signed;
mod text_edit;

pub use crate::live::source::lock_path;
pub use ramp::{edit_ramp, ramp_file, RampChange, RampOutcome};
pub use signed::DocumentSigner;

/// How long a kill waits (by default) for another kill or unkill of the same document to finish.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(10);

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

/// How far a rewrite may go. Build it with `..KillOptions::default()` so that new options
/// keep their defaults.
#[derive(Clone, Default)]
pub struct KillOptions {
    /// Rewrite a document that is read-only to the caller, or whose owner the caller cannot
    /// keep (its mode is kept either way); rewrite a signed document without a key, or re-sign
    /// one whose signature the key did not make (see [`signed`]).
    pub force: bool,
    /// How long to wait for the document's lock; `None` is [`LOCK_WAIT`].
    pub lock_wait: Option<Duration>,
    /// The key that re-signs a signed document (`<path>.sig`), or signs an unsigned one.
    pub signer: Option<Arc<dyn DocumentSigner>>,
}

impl std::fmt::Debug for KillOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KillOptions")
            .field("force", &self.force)
            .field("lock_wait", &self.lock_wait)
            .field("signer", &self.signer.as_ref().map(|_| "<key>"))
            .finish()
    }
}

/// A kill switch as the document had it before the change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchState {
    pub(crate) active: bool,
    pub reason: Option<String>,
    pub actor: Option<String>,
    /// RFC 3339.
    pub at: Option<String>,
}

/// What a rewrite did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillOutcome {
    /// `false` when the switch was already in the requested state: nothing was written.
    pub changed: bool,
    pub old_revision: String,
    /// Equal to `old_revision` when nothing changed.
    pub new_revision: String,
    /// The switch before the change.
    pub before: SwitchState,
    /// The real file that was (or would have been) rewritten.
    pub(crate) document: PathBuf,
    /// The signature written beside the document (`None`: the document is not signed, or
    /// nothing changed, or a forced kill left a stale one).
    pub signature: Option<PathBuf>,
    pub audit_log: PathBuf,
    /// Things the caller should tell a person: a kill variant that still calls a model, a
    /// document-wide kill that keeps a flag killed, formatting that could not be kept.
    pub warnings: Vec<String>,
}

/// A kill applied to the text of a document (no I/O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillEdit {
    /// `false` when the switch was already in the requested state; `text` is then the input.
    pub changed: bool,
    pub text: String,
    pub old_revision: String,
    pub new_revision: String,
    pub before: SwitchState,
    pub warnings: Vec<String>,
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

fn invalid(message: String) -> Error {
    Error::InvalidArgument { message }
}

/// Applies a kill change to a document value in memory and returns the old revision.
pub(crate) fn apply_kill(document: &mut Value, change: &KillChange<'_>) -> Result<String> {
    // The current document must be valid: its flags and revision are what the change names.
    let current = Document::from_value(document.clone())?;
    let old_revision = current.revision().to_string();
    let root = document
        .as_object_mut()
        .ok_or_else(|| invalid("the document is not a JSON object".to_string()))?;
    let switch_holder: &mut Map<String, Value> = match change.target {
        Target::All => root,
        Target::Flag(key) => {
            if current.flag(key).is_none() {
                return Err(no_such_flag(&current, key));
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

fn no_such_flag(document: &Document, key: &str) -> Error {
    let known: Vec<&str> = document.flags().iter().map(|f| &*f.key).collect();
    invalid(format!(
        "no flag \"{key}\" in the document (flags: {})",
        known.join(", ")
    ))
}

/// Flags among `target` whose kill variant still calls a model: killing them does not stop
/// model calls, which is usually what the on-call wanted.
fn kill_variants_calling_a_model(document: &Document, target: Target<'_>) -> Vec<String> {
    let flags: Vec<&crate::document::Flag> = match target {
        Target::All => document.flags().iter().collect(),
        Target::Flag(key) => document.flag(key).into_iter().collect(),
    };
    flags
        .into_iter()
        .filter_map(|flag| {
            let variant = flag.variants.get(flag.kill_variant())?;
            variant.ai.then(|| {
                format!(
                    "flag \"{}\": its kill variant \"{}\" still calls a model (it is not \"ai\": false); give the flag a kill.serve that does not",
                    flag.key, variant.id
                )
            })
        })
        .collect()
}

/// Applies a kill change to the text of a document, keeping its formatting: only the values of
/// the switch and of the revision are replaced, missing fields are added on a line of their own
/// (or at the end of a one-line switch), and nothing else moves.
///
/// The edited text is parsed back and compared with [`apply_kill`] on the parsed document; in
/// the unexpected case that they differ, the document is re-serialized as indented JSON instead
/// and a warning says so. Either way the result is a valid document.
pub fn edit_kill(text: &str, change: &KillChange<'_>) -> Result<KillEdit> {
    let current = Document::from_json(text)?;
    let old_revision = current.revision().to_string();
    let switch = match change.target {
        Target::All => current.kill(),
        Target::Flag(key) => {
            &current
                .flag(key)
                .ok_or_else(|| no_such_flag(&current, key))?
                .kill
        }
    };
    let before = SwitchState {
        active: switch.active,
        reason: switch.reason.clone(),
        actor: switch.actor.clone(),
        at: switch.at.map(format_timestamp),
    };
    let mut warnings = Vec::new();
    if change.active {
        warnings.extend(kill_variants_calling_a_model(&current, change.target));
    } else if let Target::Flag(key) = change.target {
        if current.kill().active {
            warnings.push(format!(
                "the document-wide kill is on: \"{key}\" keeps serving its kill variant until `unkill --all`"
            ));
        }
    }
    if before.active == change.active {
        return Ok(KillEdit {
            changed: false,
            text: text.to_string(),
            new_revision: old_revision.clone(),
            old_revision,
            before,
            warnings,
        });
    }

    let mut expected = current.source().clone();
    apply_kill(&mut expected, change)?;
    let new_revision = expected
        .get("revision")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let in_place = text_edit::kill_in_place(text, change, &new_revision)
        .filter(|edited| serde_json::from_str::<Value>(edited).ok().as_ref() == Some(&expected));
    let new_text = match in_place {
        Some(edited) => edited,
        None => {
            warnings.push(
                "the document's formatting could not be kept: it was rewritten as indented JSON"
                    .to_string(),
            );
            let mut pretty = serde_json::to_string_pretty(&expected)
                .map_err(|err| invalid(format!("cannot serialize the document: {err}")))?;
            pretty.push('\n');
            pretty
        }
    };
    // What is written is what every loader will read: it must load.
    Document::from_json(&new_text)?;
    Ok(KillEdit {
        changed: true,
        text: new_text,
        old_revision,
        new_revision,
        before,
        warnings,
    })
}

/// The audit log of a document file: `flags.json` → `flags.audit.jsonl`, beside it. Pass the
/// resolved path ([`fs::canonicalize`]) so that every way to the file shares one log.
pub fn audit_log_path(document: &Path) -> PathBuf {
    let stem = document
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "flags".to_string());
    document.with_file_name(format!("{stem}.audit.jsonl"))
}

fn not_a_file(path: &Path) -> Error {
    invalid(format!(
        "{}: not a regular file; a kill rewrites a regular file only",
        path.display()
    ))
}

fn io_error(path: &Path, detail: impl std::fmt::Display) -> Error {
    Error::SourceUnreachable {
        source: path.display().to_string(),
        detail: detail.to_string(),
    }
}

/// Kills or unkills in a document file and appends the audit record (see the module
/// documentation for the protocol).
pub fn kill_file(
    path: &Path,
    change: &KillChange<'_>,
    options: &KillOptions,
) -> Result<KillOutcome> {
    let mut before = SwitchState::default();
    let rewritten = rewrite_file(
        path,
        options,
        |text| {
            let edit = edit_kill(text, change)?;
            before = edit.before;
            Ok(Rewrite {
                changed: edit.changed,
                text: edit.text,
                old_revision: edit.old_revision,
                new_revision: edit.new_revision,
                warnings: edit.warnings,
            })
        },
        |written| {
            json!({
                "time": format_timestamp(change.at),
                "action": if change.active { "kill" } else { "unkill" },
                "flag": match change.target { Target::Flag(key) => key, Target::All => "*" },
                "actor": change.actor,
                "reason": change.reason,
                "old_revision": written.rewrite.old_revision,
                "new_revision": written.rewrite.new_revision,
                "document": path.display().to_string(),
                "file": written.document.display().to_string(),
                "signed": written.signature.is_some(),
            })
        },
    )?;
    Ok(KillOutcome {
        changed: rewritten.rewrite.changed,
        old_revision: rewritten.rewrite.old_revision,
        new_revision: rewritten.rewrite.new_revision,
        before,
        document: rewritten.document,
        signature: rewritten.signature,
        audit_log: rewritten.audit_log,
        warnings: rewritten.rewrite.warnings,
    })
}

/// A change to a document's text, made under the document's lock for [`rewrite_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// `false`: nothing to write (no audit record either); `text` is then the input.
    pub changed: bool,
    pub text: String,
    pub old_revision: String,
    pub new_revision: String,
    pub warnings: Vec<String>,
}

/// What [`rewrite_file`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rewritten {
    pub(crate) rewrite: Rewrite,
    /// The real file that was (or would have been) rewritten.
    pub(crate) document: PathBuf,
    /// The signature written beside the document, when it is signed (see [`signed`]).
    pub(crate) signature: Option<PathBuf>,
    pub(crate) audit_log: PathBuf,
}

/// The one audited, atomic, re-signed rewrite of a document file that every administrative
/// change uses (kill, unkill, the autopilot's decisions): steps 1–7 of the module
/// documentation. `edit` gets the document's text as it is under the lock and returns the new
/// text; `record` makes the audit line once the document (and its signature) are written.
pub(crate) fn rewrite_file(
    path: &Path,
    options: &KillOptions,
    edit: impl FnOnce(&str) -> Result<Rewrite>,
    record: impl FnOnce(&Rewritten) -> Value,
) -> Result<Rewritten> {
    let real = fs::canonicalize(path).map_err(|err| io_error(path, err))?;
    let first_look = fs::metadata(&real).map_err(|err| io_error(&real, err))?;
    // Before anything is created beside it: no lock file next to a device or a FIFO.
    if !first_look.is_file() {
        return Err(not_a_file(&real));
    }
    let lock_file_path = lock_path(&real);
    let lock = files::open_beside(&lock_file_path, files::Access::Lock, &first_look)?;
    files::lock(
        &lock,
        &lock_file_path,
        options.lock_wait.unwrap_or(LOCK_WAIT),
    )?;

    // Under the lock, the document as it is now.
    let metadata = fs::metadata(&real).map_err(|err| io_error(&real, err))?;
    if !metadata.is_file() {
        return Err(not_a_file(&real));
    }
    let text = files::read_document(&real)?;
    let rewrite = edit(&text)?;
    let audit_log = audit_log_path(&real);
    let mut outcome = Rewritten {
        rewrite,
        document: real.clone(),
        signature: None,
        audit_log: audit_log.clone(),
    };
    if !outcome.rewrite.changed {
        return Ok(outcome);
    }
    // What is written is what every loader will read: it must load.
    Document::from_json(&outcome.rewrite.text)?;
    if !options.force {
        files::refuse_read_only(&real, &metadata)?;
    }
    let signature_file = signed::signature_file(path, &real);
    let signature = signed::plan(
        &real,
        &signature_file,
        &text,
        &outcome.rewrite.text,
        options.signer.as_deref(),
        options.force,
        &mut outcome.rewrite.warnings,
    )?;
    let audit = files::open_beside(&audit_log, files::Access::Append, &metadata)?;
    files::replace(
        &real,
        outcome.rewrite.text.as_bytes(),
        &metadata,
        options.force,
        &mut outcome.rewrite.warnings,
    )?;
    if let signed::SignaturePlan::Write(signature_text) = &signature {
        // Right after the document, still under the lock: a verifying watcher that saw the new
        // document with the old signature waits for the lock and reads the pair again.
        let kept = fs::metadata(&signature_file).unwrap_or_else(|_| metadata.clone());
        files::replace(
            &signature_file,
            signature_text.as_bytes(),
            &kept,
            options.force,
            &mut outcome.rewrite.warnings,
        )
        .map_err(|err| {
            io_error(
                &signature_file,
                format!(
                    "{err}; the document WAS rewritten (revision {} -> {}) but not re-signed: processes that verify signatures keep the previous revision until `flagrail sign` is run on it",
                    outcome.rewrite.old_revision, outcome.rewrite.new_revision
                ),
            )
        })?;
        outcome.signature = Some(signature_file.clone());
    }

    // One write of one line with O_APPEND: concurrent writers never interleave within a line.
    let mut line = record(&outcome).to_string();
    line.push('\n');
    (&audit).write_all(line.as_bytes()).map_err(|err| {
        io_error(
            &audit_log,
            format!(
                "{err}; the document WAS rewritten (revision {} -> {}) but this record is missing: {line}",
                outcome.rewrite.old_revision, outcome.rewrite.new_revision
            ),
        )
    })?;
    // The lock is released when `lock` is closed, after the audit record is written, so the
    // log lists the changes in the order they were made.
    drop(lock);
    Ok(outcome)
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

    const AT: Millis = 1_795_000_000_000; // 2026-11-18T…Z

    fn change(
        target: Target<'static>,
        active: bool,
        reason: Option<&'static str>,
    ) -> KillChange<'static> {
        KillChange {
            target,
            active,
            reason,
            actor: "ana",
            at: AT,
        }
    }

    /// Lines of `after` not in `before` and the reverse, compared line by line (the edits here
    /// never add or remove lines unless a test says so).
    fn diff(before: &str, after: &str) -> Vec<(String, String)> {
        before
            .lines()
            .zip(after.lines())
            .filter(|(a, b)| a != b)
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    const MULTILINE: &str = "{\n\t\"revision\" : \"r1\",\n\t\"flags\" : {\n\t\t\"f\" : {\n\t\t\t\"variants\" : { \"a\" : {}, \"off\" : { \"ai\" : false } },\n\t\t\t\"default\" : \"a\",\n\t\t\t\"kill\" : {\n\t\t\t\t\"active\" : false,\n\t\t\t\t\"serve\" : \"off\",\n\t\t\t\t\"reason\" : \"old\"\n\t\t\t}\n\t\t}\n\t}\n}\n";

    #[test]
    fn a_multi_line_switch_keeps_its_tabs_and_spacing() {
        let edit =
            edit_kill(MULTILINE, &change(Target::Flag("f"), true, Some("new"))).expect("edit");
        assert!(edit.changed);
        assert!(edit.warnings.is_empty(), "{:?}", edit.warnings);
        let when = format_timestamp(AT);
        let expected = MULTILINE
            .replace("\"r1\"", &format!("\"{}.1\"", format_date(AT)))
            .replace(
                "\"active\" : false,",
                &format!("\"active\" : true,\n\t\t\t\t\"actor\" : \"ana\",\n\t\t\t\t\"at\" : \"{when}\","),
            )
            .replace("\"old\"", "\"new\"");
        assert_eq!(edit.text, expected);

        // The unkill without a reason drops the reason, and only its line and the comma before.
        let unkill = edit_kill(&edit.text, &change(Target::Flag("f"), false, None)).expect("edit");
        assert!(
            unkill.text.contains("\t\t\t\t\"serve\" : \"off\"\n\t\t\t}"),
            "{}",
            unkill.text
        );
        assert!(!unkill.text.contains("reason"));
        assert_eq!(unkill.text.lines().count(), edit.text.lines().count() - 1);
    }

    #[test]
    fn a_document_without_switches_or_revision_gets_lines_added_not_rewritten() {
        let before = "{\r\n  \"flags\": {\r\n    \"f\": {\r\n      \"variants\": { \"a\": {} },\r\n      \"default\": \"a\"\r\n    }\r\n  }\r\n}\r\n";
        let edit = edit_kill(before, &change(Target::All, true, Some("outage"))).expect("edit");
        let lines: Vec<&str> = edit.text.split("\r\n").collect();
        assert_eq!(
            lines.len(),
            before.split("\r\n").count() + 2,
            "{}",
            edit.text
        );
        assert_eq!(lines[0], "{");
        assert!(
            lines[1].starts_with("  \"kill\": { \"active\": true, \"reason\": \"outage\""),
            "{}",
            edit.text
        );
        assert!(lines[2].starts_with("  \"revision\": \""), "{}", edit.text);
        assert_eq!(lines[3], "  \"flags\": {");
        // The flag's kill variant calls a model.
        assert_eq!(edit.warnings.len(), 1, "{:?}", edit.warnings);
        assert!(edit.warnings[0].contains("\"a\" still calls a model"));
        // Compact one-line documents stay one line.
        let compact = r#"{"revision":"r","flags":{"f":{"variants":{"a":{}},"default":"a","kill":{"active":false}}}}"#;
        let edit = edit_kill(compact, &change(Target::Flag("f"), true, Some("x"))).expect("edit");
        assert_eq!(edit.text.lines().count(), 1);
        assert!(
            edit.text
                .contains(r#""kill":{"active":true,"reason":"x","actor":"ana","at":""#),
            "{}",
            edit.text
        );
    }

    #[test]
    fn a_no_op_changes_nothing_and_says_what_was_there() {
        let killed =
            edit_kill(MULTILINE, &change(Target::Flag("f"), true, Some("x"))).expect("edit");
        let again =
            edit_kill(&killed.text, &change(Target::Flag("f"), true, Some("y"))).expect("edit");
        assert!(!again.changed);
        assert_eq!(again.text, killed.text);
        assert_eq!(again.old_revision, again.new_revision);
        assert_eq!(again.before.actor.as_deref(), Some("ana"));
        assert_eq!(again.before.reason.as_deref(), Some("x"));
        let live = edit_kill(MULTILINE, &change(Target::All, false, None)).expect("edit");
        assert!(!live.changed);
        assert_eq!(diff(MULTILINE, &live.text), []);
    }

    #[test]
    fn strings_with_braces_and_escapes_do_not_confuse_the_editor() {
        let before = r#"{ "revision": "r", "description": "a } { \" ] [ tricky", "flags": { "f\u0021": { "variants": { "a": { "p": "}{" } }, "default": "a" } } }"#;
        let edit =
            edit_kill(before, &change(Target::Flag("f!"), true, Some("}\"{"))).expect("edit");
        assert!(
            edit.warnings.iter().all(|w| !w.contains("formatting")),
            "{:?}",
            edit.warnings
        );
        let value: Value = serde_json::from_str(&edit.text).expect("json");
        assert_eq!(value["flags"]["f!"]["kill"]["reason"], "}\"{");
        assert_eq!(value["description"], "a } { \" ] [ tricky");
    }

    /// The example document in several formattings: every kill and unkill of every switch is
    /// edited in place (never the re-serializing fallback) and means what `apply_kill` means.
    #[test]
    fn every_switch_of_the_example_is_edited_in_place_in_every_formatting() {
        let example = include_str!("../../../examples/flags.json");
        let value: Value = serde_json::from_str(example).expect("example");
        let mut tabs = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut serializer = serde_json::Serializer::with_formatter(&mut tabs, formatter);
        serde::Serialize::serialize(&value, &mut serializer).expect("tabs");
        let formattings = [
            example.to_string(),
            example.replace('\n', "\r\n"),
            value.to_string(),
            serde_json::to_string_pretty(&value).expect("pretty"),
            String::from_utf8(tabs).expect("utf-8"),
        ];
        let document = Document::from_json(example).expect("valid");
        let mut targets = vec![Target::All];
        targets.extend(document.flags().iter().map(|f| Target::Flag(&f.key)));
        for text in &formattings {
            for target in &targets {
                let kill = KillChange {
                    target: *target,
                    active: true,
                    reason: Some("r \"quoted\" ü"),
                    actor: "ana",
                    at: AT,
                };
                let killed = edit_kill(text, &kill).expect("kill");
                let unkill = KillChange {
                    active: false,
                    reason: None,
                    ..kill.clone()
                };
                let unkilled = edit_kill(&killed.text, &unkill).expect("unkill");
                for (edit, change, before) in
                    [(&killed, &kill, text), (&unkilled, &unkill, &killed.text)]
                {
                    assert!(edit.changed);
                    assert!(
                        edit.warnings.iter().all(|w| !w.contains("formatting")),
                        "{target:?}: {:?}",
                        edit.warnings
                    );
                    let mut expected: Value = serde_json::from_str(before).expect("json");
                    apply_kill(&mut expected, change).expect("apply");
                    let got: Value = serde_json::from_str(&edit.text).expect("json");
                    assert_eq!(got, expected, "{target:?}");
                    // Nothing but the switch and the revision moved: at most 5 lines differ (the
                    // revision, `active`, and a new line each for reason, actor and at).
                    let differing = edit
                        .text
                        .lines()
                        .filter(|l| !before.lines().any(|b| b == *l))
                        .count();
                    assert!(
                        differing <= 5,
                        "{target:?}: {differing} lines\n{}",
                        edit.text
                    );
                }
            }
        }
    }
}
