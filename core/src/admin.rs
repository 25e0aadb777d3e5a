//! Administrative rewrites of a flag document file: the kill switch and its audit trail.
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
//! 6. One audit line is appended with a single `O_APPEND` write (the log is opened before the
//!    document is replaced, so a log that cannot be written stops the kill before it happens).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::document::Document;
use crate::error::{Error, Result};
use crate::load::MAX_DOCUMENT_BYTES;
use crate::time::{format_date, format_timestamp, Millis};

/// How long a kill waits (by default) for another kill or unkill of the same document to finish.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

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

/// How far a rewrite may go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KillOptions {
    /// Rewrite a document that is read-only to the caller, or whose owner the caller cannot
    /// keep. Its mode is kept either way.
    pub force: bool,
    /// How long to wait for the document's lock; `None` is [`LOCK_WAIT`].
    pub lock_wait: Option<Duration>,
}

/// A kill switch as the document had it before the change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchState {
    pub active: bool,
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
    pub document: PathBuf,
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
pub fn apply_kill(document: &mut Value, change: &KillChange<'_>) -> Result<String> {
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

/// The lock file of a document file: `flags.json` → `.flags.json.lock`, beside it.
pub fn lock_path(document: &Path) -> PathBuf {
    let name = document
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "flags.json".to_string());
    document.with_file_name(format!(".{name}.lock"))
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
    let edit = edit_kill(&text, change)?;
    let audit_log = audit_log_path(&real);
    let mut outcome = KillOutcome {
        changed: edit.changed,
        old_revision: edit.old_revision,
        new_revision: edit.new_revision,
        before: edit.before,
        document: real.clone(),
        audit_log: audit_log.clone(),
        warnings: edit.warnings,
    };
    if !edit.changed {
        return Ok(outcome);
    }
    if !options.force {
        files::refuse_read_only(&real, &metadata)?;
    }
    let audit = files::open_beside(&audit_log, files::Access::Append, &metadata)?;
    files::replace(
        &real,
        edit.text.as_bytes(),
        &metadata,
        options.force,
        &mut outcome.warnings,
    )?;

    let record = json!({
        "time": format_timestamp(change.at),
        "action": if change.active { "kill" } else { "unkill" },
        "flag": match change.target { Target::Flag(key) => key, Target::All => "*" },
        "actor": change.actor,
        "reason": change.reason,
        "old_revision": outcome.old_revision,
        "new_revision": outcome.new_revision,
        "document": path.display().to_string(),
        "file": real.display().to_string(),
    });
    // One write of one line with O_APPEND: concurrent writers never interleave within a line.
    let mut line = record.to_string();
    line.push('\n');
    (&audit).write_all(line.as_bytes()).map_err(|err| {
        io_error(
            &audit_log,
            format!(
                "{err}; the document WAS rewritten (revision {} -> {}) but this record is missing: {line}",
                outcome.old_revision, outcome.new_revision
            ),
        )
    })?;
    // The lock is released when `lock` is closed, after the audit record is written, so the
    // log lists the changes in the order they were made.
    drop(lock);
    Ok(outcome)
}

/// The file operations of a rewrite: exclusive creation, no symlink following, mode and owner.
mod files {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Access {
        /// Opened to be locked (reading is enough for a lock).
        Lock,
        Append,
    }

    #[cfg(unix)]
    fn permission_bits(metadata: &fs::Metadata) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        metadata.permissions().mode() & 0o7777
    }

    /// Refuses to follow a symlink at the last component, and gives a created file `mode`.
    #[cfg(unix)]
    fn no_follow(options: &mut OpenOptions, mode: u32) {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW).mode(mode);
    }

    #[cfg(not(unix))]
    fn no_follow(_options: &mut OpenOptions, _mode: u32) {}

    fn open_error(path: &Path, err: std::io::Error) -> Error {
        let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        if is_link {
            io_error(
                path,
                "is a symbolic link; it is not followed (a planted link could point anywhere): remove it",
            )
        } else {
            io_error(path, err)
        }
    }

    /// Opens the lock file or the audit log beside a document, creating it when missing with the
    /// document's permissions (no more readable than the document) and, when allowed, owner.
    pub(super) fn open_beside(
        path: &Path,
        access: Access,
        document: &fs::Metadata,
    ) -> Result<File> {
        // Readable by whoever may read the document, and writable by its owner.
        #[cfg(unix)]
        let mode = permission_bits(document) & 0o666 | 0o600;
        #[cfg(not(unix))]
        let mode = 0;
        let mut create = OpenOptions::new();
        create.create_new(true);
        match access {
            Access::Lock => create.write(true),
            Access::Append => create.append(true),
        };
        no_follow(&mut create, mode);
        match create.open(path) {
            Ok(file) => {
                // Best effort: the document's owner can then use the file after a root kill.
                #[cfg(unix)]
                {
                    use std::os::unix::fs::MetadataExt;
                    let _ = std::os::unix::fs::fchown(
                        &file,
                        Some(document.uid()),
                        Some(document.gid()),
                    );
                }
                Ok(file)
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                let mut open = OpenOptions::new();
                match access {
                    Access::Lock => open.read(true),
                    Access::Append => open.append(true),
                };
                no_follow(&mut open, 0);
                open.open(path).map_err(|err| open_error(path, err))
            }
            Err(err) => Err(open_error(path, err)),
        }
    }

    /// Takes the exclusive lock, waiting at most `wait`.
    pub(super) fn lock(file: &File, path: &Path, wait: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(()),
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < wait => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(io_error(
                        path,
                        format!(
                            "another kill or unkill of this document has held this lock for {:.1} s; nothing was changed",
                            wait.as_secs_f64()
                        ),
                    ))
                }
                Err(std::fs::TryLockError::Error(err)) => return Err(io_error(path, err)),
            }
        }
    }

    /// Reads the document, at most one byte more than the loader accepts (so an oversized file
    /// is reported by the loader instead of read whole).
    pub(super) fn read_document(path: &Path) -> Result<String> {
        let file = File::open(path).map_err(|err| io_error(path, err))?;
        let mut bytes = Vec::new();
        file.take(MAX_DOCUMENT_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|err| io_error(path, err))?;
        match String::from_utf8(bytes) {
            Ok(text) => Ok(text),
            Err(err) => {
                // The loader names what is wrong with the bytes.
                Document::from_slice(err.as_bytes())?;
                Err(invalid(format!("{}: not UTF-8 text", path.display())))
            }
        }
    }

    /// A document that the caller may not write (no write permission bit, or opening it for
    /// writing is denied) is refused: its owner made it read-only for a reason, and the rename
    /// would replace it anyway.
    pub(super) fn refuse_read_only(path: &Path, metadata: &fs::Metadata) -> Result<()> {
        let why = if metadata.permissions().readonly() {
            #[cfg(unix)]
            let why = format!("mode {:04o}", permission_bits(metadata));
            #[cfg(not(unix))]
            let why = "read-only attribute".to_string();
            why
        } else {
            match OpenOptions::new().write(true).open(path) {
                Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                    "not writable by you".to_string()
                }
                _ => return Ok(()),
            }
        };
        Err(invalid(format!(
            "{}: the document is read-only ({why}); nothing was changed. Make it writable, or pass --force to rewrite it (its mode and owner are kept)",
            path.display()
        )))
    }

    /// A name nobody can guess ahead of time. Exclusive creation is what makes the temp file
    /// safe; the randomness only keeps a planted name from blocking the kill.
    fn random_suffix() -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            hasher.write_u128(now.as_nanos());
        }
        hasher.finish()
    }

    fn create_temp(dir: &Path, name: &str) -> Result<(PathBuf, File)> {
        let mut last_error = None;
        for _ in 0..16 {
            let temp = dir.join(format!(".{name}.{:016x}.tmp", random_suffix()));
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            no_follow(&mut options, 0o600);
            match options.open(&temp) {
                Ok(file) => return Ok((temp, file)),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    last_error = Some(err);
                }
                Err(err) => return Err(io_error(&temp, err)),
            }
        }
        Err(io_error(
            dir,
            format!(
                "cannot create a temp file: {}",
                last_error.map(|e| e.to_string()).unwrap_or_default()
            ),
        ))
    }

    /// Gives the temp file the document's owner; when that is not allowed (another user's file),
    /// refuses unless forced, because the services may no longer be able to read it.
    #[cfg(unix)]
    fn keep_owner(
        file: &File,
        real: &Path,
        original: &fs::Metadata,
        force: bool,
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let (uid, gid) = (original.uid(), original.gid());
        if std::os::unix::fs::fchown(file, Some(uid), Some(gid)).is_ok() {
            return Ok(());
        }
        let temp = file.metadata().map_err(|err| io_error(real, err))?;
        if (temp.uid(), temp.gid()) == (uid, gid) {
            return Ok(());
        }
        let message = format!(
            "{}: cannot keep its owner (uid {uid}, gid {gid}); the rewritten file would belong to uid {}, gid {}",
            real.display(),
            temp.uid(),
            temp.gid()
        );
        if force {
            warnings.push(format!("{message}: written anyway (--force)"));
            Ok(())
        } else {
            Err(invalid(format!(
                "{message}; nothing was changed. Run the kill as the owner or as root, or pass --force"
            )))
        }
    }

    /// Replaces the real file with `bytes`: a temp file beside it, owner and mode of the
    /// original, fsync, rename, fsync of the directory.
    pub(super) fn replace(
        real: &Path,
        bytes: &[u8],
        original: &fs::Metadata,
        force: bool,
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        let dir = real
            .parent()
            .ok_or_else(|| invalid(format!("{}: no parent directory", real.display())))?;
        let name = real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "flags.json".to_string());
        let (temp, mut file) = create_temp(dir, &name)?;
        let mut write = || -> Result<()> {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                keep_owner(&file, real, original, force, warnings)?;
                // After the owner: changing the owner clears set-id bits.
                file.set_permissions(fs::Permissions::from_mode(permission_bits(original)))
                    .map_err(|err| io_error(&temp, err))?;
            }
            #[cfg(not(unix))]
            let _ = (original, force, &warnings);
            file.write_all(bytes).map_err(|err| io_error(&temp, err))?;
            file.sync_all().map_err(|err| io_error(&temp, err))?;
            fs::rename(&temp, real).map_err(|err| io_error(real, err))
        };
        if let Err(err) = write() {
            let _ = fs::remove_file(&temp);
            return Err(err);
        }
        // The rename is durable once the directory is; the kill is live either way.
        #[cfg(unix)]
        if let Ok(directory) = File::open(dir) {
            let _ = directory.sync_all();
        }
        Ok(())
    }
}

/// Formatting-preserving edits of JSON text: spans of the objects and members a kill touches.
mod text_edit {
    use super::*;

    /// One `"key": value` of an object, as byte offsets into the text.
    #[derive(Debug)]
    struct Member {
        key: String,
        key_start: usize,
        key_end: usize,
        value_start: usize,
        value_end: usize,
    }

    /// An object: the offsets of its braces and its members in order.
    #[derive(Debug)]
    struct Object {
        open: usize,
        close: usize,
        members: Vec<Member>,
    }

    impl Object {
        /// The member a JSON parser keeps (the last of duplicates).
        fn member(&self, key: &str) -> Option<usize> {
            self.members.iter().rposition(|m| m.key == key)
        }
    }

    fn skip_ws(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        i
    }

    /// End (exclusive) of the string starting at `i`.
    fn string_end(b: &[u8], i: usize) -> Option<usize> {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let mut j = i + 1;
        while j < b.len() {
            match b[j] {
                b'\\' => j += 2,
                b'"' => return Some(j + 1),
                _ => j += 1,
            }
        }
        None
    }

    /// End (exclusive) of the value starting at `i`, without recursion.
    fn value_end(b: &[u8], i: usize) -> Option<usize> {
        match b.get(i)? {
            b'"' => string_end(b, i),
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut j = i;
                while j < b.len() {
                    match b[j] {
                        b'"' => {
                            j = string_end(b, j)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.checked_sub(1)?;
                            if depth == 0 {
                                return Some(j + 1);
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                None
            }
            _ => {
                let mut j = i;
                while j < b.len()
                    && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                {
                    j += 1;
                }
                (j > i).then_some(j)
            }
        }
    }

    fn object_at(text: &str, open: usize) -> Option<Object> {
        let b = text.as_bytes();
        if b.get(open) != Some(&b'{') {
            return None;
        }
        let mut members = Vec::new();
        let mut j = skip_ws(b, open + 1);
        if b.get(j) == Some(&b'}') {
            return Some(Object {
                open,
                close: j,
                members,
            });
        }
        loop {
            let key_start = j;
            let key_end = string_end(b, j)?;
            let key: String = serde_json::from_str(text.get(key_start..key_end)?).ok()?;
            j = skip_ws(b, key_end);
            if b.get(j) != Some(&b':') {
                return None;
            }
            let value_start = skip_ws(b, j + 1);
            let value_end = value_end(b, value_start)?;
            members.push(Member {
                key,
                key_start,
                key_end,
                value_start,
                value_end,
            });
            j = skip_ws(b, value_end);
            match b.get(j)? {
                b',' => j = skip_ws(b, j + 1),
                b'}' => {
                    return Some(Object {
                        open,
                        close: j,
                        members,
                    })
                }
                _ => return None,
            }
        }
    }

    /// Replacements of byte ranges, applied at once.
    struct Edits<'t> {
        text: &'t str,
        newline: &'static str,
        list: Vec<(usize, usize, String)>,
    }

    impl<'t> Edits<'t> {
        fn replace(&mut self, start: usize, end: usize, with: String) {
            self.list.push((start, end, with));
        }

        /// `"key": value`, with the object's own spacing around the colon.
        fn member_text(&self, object: &Object, key: &str, value: &str) -> String {
            let colon = object
                .members
                .first()
                .and_then(|m| self.text.get(m.key_end..m.value_start))
                .filter(|s| !s.contains('\n'))
                .unwrap_or(": ");
            format!("{}{colon}{value}", json_string(key))
        }

        /// The whitespace that starts the line holding offset `at`.
        fn indent_of(&self, at: usize) -> &'t str {
            let line_start = self.text[..at].rfind('\n').map_or(0, |i| i + 1);
            let line = &self.text[line_start..at];
            let width = line.len() - line.trim_start_matches([' ', '\t']).len();
            &line[..width]
        }

        /// Adds members to an object where they disturb the fewest lines: at the end of a
        /// one-line object; in a multi-line one, each on a line of its own after the `active`
        /// member (or the first member followed by a comma), so no existing line changes.
        fn insert(&mut self, object: &Object, new: &[(&str, String)]) -> Option<()> {
            if new.is_empty() {
                return Some(());
            }
            let rendered: Vec<String> = new
                .iter()
                .map(|(key, value)| self.member_text(object, key, value))
                .collect();
            let Some(last) = object.members.last() else {
                self.replace(
                    object.open,
                    object.close + 1,
                    format!("{{ {} }}", rendered.join(", ")),
                );
                return Some(());
            };
            let multiline = self.text[object.open..object.close].contains('\n');
            if !multiline {
                let separator = match object.members.get(1) {
                    Some(second) => &self.text[object.members[0].value_end..second.key_start],
                    None if self.text[object.open..object.close].contains(' ') => ", ",
                    None => ",",
                };
                let mut added = String::new();
                for member in &rendered {
                    added.push_str(separator);
                    added.push_str(member);
                }
                self.replace(last.value_end, last.value_end, added);
                return Some(());
            }
            let not_last = object.members.len() - 1;
            let anchor = object.members[..not_last]
                .iter()
                .position(|m| m.key == "active")
                .or((not_last > 0).then_some(0));
            let (at, indent) = match anchor {
                Some(i) => {
                    let comma = skip_ws(self.text.as_bytes(), object.members[i].value_end);
                    if self.text.as_bytes().get(comma) != Some(&b',') {
                        return None;
                    }
                    (comma + 1, self.indent_of(object.members[i + 1].key_start))
                }
                None => (object.open + 1, self.indent_of(last.key_start)),
            };
            let mut added = String::new();
            for member in &rendered {
                added.push_str(self.newline);
                added.push_str(indent);
                added.push_str(member);
                added.push(',');
            }
            self.replace(at, at, added);
            Some(())
        }

        /// Removes member `index`, with the comma that separated it.
        fn remove(&mut self, object: &Object, index: usize) {
            let members = &object.members;
            let member = &members[index];
            if let Some(next) = members.get(index + 1) {
                self.replace(member.key_start, next.key_start, String::new());
            } else if let Some(previous) = index.checked_sub(1).map(|i| &members[i]) {
                self.replace(previous.value_end, member.value_end, String::new());
            } else {
                self.replace(member.key_start, member.value_end, String::new());
            }
        }

        fn apply(mut self) -> Option<String> {
            self.list.sort_by_key(|&(start, end, _)| (start, end));
            let mut out = String::with_capacity(self.text.len() + 256);
            let mut copied = 0;
            for (start, end, with) in &self.list {
                if *start < copied {
                    return None; // overlapping edits: let the caller fall back
                }
                out.push_str(self.text.get(copied..*start)?);
                out.push_str(with);
                copied = *end;
            }
            out.push_str(self.text.get(copied..)?);
            Some(out)
        }
    }

    fn json_string(text: &str) -> String {
        Value::String(text.to_string()).to_string()
    }

    /// The kill applied to the text, or `None` when the text has a shape this editor does not
    /// handle (the caller then re-serializes).
    pub(super) fn kill_in_place(
        text: &str,
        change: &KillChange<'_>,
        new_revision: &str,
    ) -> Option<String> {
        let start = text.strip_prefix('\u{feff}').map_or(0, |_| 3);
        let root = object_at(text, skip_ws(text.as_bytes(), start))?;
        let mut edits = Edits {
            text,
            newline: if text.contains("\r\n") { "\r\n" } else { "\n" },
            list: Vec::new(),
        };
        let holder = match change.target {
            Target::All => None,
            Target::Flag(key) => {
                let flags = &root.members[root.member("flags")?];
                let flags = object_at(text, flags.value_start)?;
                let flag = &flags.members[flags.member(key)?];
                Some(object_at(text, flag.value_start)?)
            }
        };
        let holder_object = holder.as_ref().unwrap_or(&root);
        let fields: [(&str, Option<String>); 4] = [
            ("active", Some(change.active.to_string())),
            ("reason", change.reason.map(json_string)),
            ("actor", Some(json_string(change.actor))),
            ("at", Some(json_string(&format_timestamp(change.at)))),
        ];
        let mut root_inserts: Vec<(&str, String)> = Vec::new();
        match holder_object.member("kill") {
            Some(index) => {
                let switch = object_at(text, holder_object.members[index].value_start)?;
                let mut inserts: Vec<(&str, String)> = Vec::new();
                let mut removal = None;
                for (key, value) in fields {
                    match (switch.member(key), value) {
                        (Some(i), Some(value)) => {
                            let m = &switch.members[i];
                            edits.replace(m.value_start, m.value_end, value);
                        }
                        (None, Some(value)) => inserts.push((key, value)),
                        (Some(i), None) => removal = Some(i),
                        (None, None) => {}
                    }
                }
                if let Some(i) = removal {
                    if inserts.is_empty() {
                        edits.remove(&switch, i);
                    } else {
                        // Reuse the removed member's place: no comma moves.
                        let (key, value) = inserts.remove(0);
                        let m = &switch.members[i];
                        let member = edits.member_text(&switch, key, &value);
                        edits.replace(m.key_start, m.value_end, member);
                    }
                }
                edits.insert(&switch, &inserts)?;
            }
            None => {
                let colon = holder_object
                    .members
                    .first()
                    .and_then(|m| text.get(m.key_end..m.value_start))
                    .filter(|s| !s.contains('\n'))
                    .unwrap_or(": ");
                let inner: Vec<String> = fields
                    .iter()
                    .filter_map(|(key, value)| {
                        value
                            .as_ref()
                            .map(|v| format!("{}{colon}{v}", json_string(key)))
                    })
                    .collect();
                let switch = format!("{{ {} }}", inner.join(", "));
                match &holder {
                    Some(flag) => edits.insert(flag, &[("kill", switch)])?,
                    None => root_inserts.push(("kill", switch)),
                }
            }
        }
        match root.member("revision") {
            Some(i) => {
                let m = &root.members[i];
                edits.replace(m.value_start, m.value_end, json_string(new_revision));
            }
            None => root_inserts.push(("revision", json_string(new_revision))),
        }
        edits.insert(&root, &root_inserts)?;
        edits.apply()
    }
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
}
