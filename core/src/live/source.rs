//! Where the live document comes from: a fixed document, or a file that a background thread
//! polls and reloads when it changes; how a document file is read safely ([`read_document`]);
//! and how a signed file is checked before it may go live ([`DocumentVerifier`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::fs::File;
use std::io::Read;

use crate::document::Document;
use crate::error::{Error, Problem, ProblemKind, Result};
use serde_json::Value;

use crate::live::clock::{Clock, SystemClock};
use crate::time::Millis;

/// How often a watched file is checked for changes. A change is live within one interval plus
/// the time to compile it.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Where the live document comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SourceKind {
    Static,
    File(PathBuf),
    /// A source implemented outside the core ([`crate::live::ExternalSource`]), by its
    /// description (`url:https://…`).
    External(String),
}

impl SourceKind {
    pub(super) fn describe(&self) -> String {
        match self {
            SourceKind::Static => "static".to_string(),
            SourceKind::File(path) => format!("file:{}", path.display()),
            SourceKind::External(description) => description.clone(),
        }
    }
}

/// A source of documents that lives outside the core (the HTTP source of `flagrail-sources`),
/// so that no network code links into the evaluation path. The core owns its poller thread
/// (see [`crate::live::external`]): [`Flags::start_watching`](crate::live::Flags) spawns one
/// that calls [`ExternalSource::run`].
pub trait ExternalSource: Send + Sync + 'static {
    /// What `status()["source"]` says, such as `url:https://cdn.example/flags.json`.
    fn describe(&self) -> String;
    /// Source-specific state, reported as `status()["remote"]`.
    fn status_json(&self, now: Millis) -> Value;
    /// Polls until `poll` says to stop. Runs on a thread of its own; called again on a new
    /// thread after a restart (a forked child), so it must not reuse locks or connections a
    /// previous run may have held at the fork.
    fn run(&self, poll: &dyn Poll);
}

/// What the poller thread of an [`ExternalSource`] can do with the handle it feeds. The
/// thread holds the handle weakly: it never keeps it alive.
pub trait Poll {
    /// Sleeps `duration` unless stopped first (the handle was closed, dropped or restarted);
    /// returns `false` when the poller should stop.
    fn sleep(&self, duration: Duration) -> bool;
    /// Offers a fetched document, or the error that kept the source from getting one: a valid
    /// document goes live; an error is recorded in the status and sent to the reload listeners,
    /// and the live document stays. `None` when the poller should stop.
    fn offer(&self, loaded: Result<Document>) -> Option<Result<String>>;
}

/// Checks the detached signature of a document before it may go live.
///
/// Implemented outside the core (`flagrail_sources::VerifyKey`, ed25519), so that no
/// cryptography links into the evaluation crate; the core decides *when* a signature is checked
/// and what a failure does (the document is rejected like an invalid one, the last good one
/// stays). A file source given a verifier reads `<path>.sig` ([`signature_path`]) with every
/// version of the document.
pub trait DocumentVerifier: Send + Sync + 'static {
    /// `Ok` when `signature` (the bytes of the `.sig` file, `None` when there is none) is a
    /// valid signature of exactly `document`; otherwise `SIGNATURE_INVALID` naming `source` and
    /// saying what is wrong.
    fn verify(&self, source: &str, document: &[u8], signature: Option<&[u8]>) -> Result<()>;
}

/// The suffix of a detached signature next to its document (`flags.json.sig`).
pub const SIGNATURE_SUFFIX: &str = ".sig";

/// The largest signature file read: one line of text, generously.
pub const MAX_SIGNATURE_BYTES: u64 = 1024;

/// The detached signature of a document: `flags.json` → `flags.json.sig`, beside the path as
/// given (the path the services are configured with).
pub fn signature_path(document: &Path) -> PathBuf {
    let mut name = document.as_os_str().to_owned();
    name.push(SIGNATURE_SUFFIX);
    PathBuf::from(name)
}

/// The lock file that serializes rewrites of a document file (`flagrail kill`, the autopilot):
/// `flags.json` → `.flags.json.lock`, beside it. Pass the resolved path
/// ([`std::fs::canonicalize`]) so that every way to the file shares one lock.
pub fn lock_path(document: &Path) -> PathBuf {
    let name = document
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "flags.json".to_string());
    document.with_file_name(format!(".{name}.lock"))
}

/// Identity of one file (mtime, length, inode), to skip unchanged files cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    modified_nanos: i128,
    len: u64,
    inode: u64,
}

/// Identity of what a file source reads: the document and, for a signed source, its `.sig`
/// (`None` while there is none). A change to either means the pair is read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint {
    document: FileIdentity,
    signature: Option<FileIdentity>,
}

fn identity(path: &Path) -> Option<FileIdentity> {
    let meta = std::fs::metadata(path).ok()?;
    let modified_nanos = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileIdentity {
        modified_nanos,
        len: meta.len(),
        inode,
    })
}

/// The fingerprint of a document file (and of its `.sig` when `signed`); `None` when the
/// document cannot be looked at.
pub(super) fn fingerprint(path: &Path, signed: bool) -> Option<Fingerprint> {
    Some(Fingerprint {
        document: identity(path)?,
        signature: if signed {
            identity(&signature_path(path))
        } else {
            None
        },
    })
}

/// Whether a rewrite of the document holds its lock right now (a `flagrail kill` between
/// writing the document and writing its signature). Never blocks, never creates the lock file.
pub(super) fn rewrite_in_progress(path: &Path) -> bool {
    let Ok(real) = std::fs::canonicalize(path) else {
        return false;
    };
    let Ok(lock) = File::open(lock_path(&real)) else {
        return false;
    };
    matches!(
        lock.try_lock_shared(),
        Err(std::fs::TryLockError::WouldBlock)
    )
}

/// Options for [`crate::Flags::from_file_with`].
#[derive(Clone)]
pub struct FileOptions {
    /// Watch the file and reload on change.
    pub reload: bool,
    pub poll_interval: Duration,
    pub clock: Arc<dyn Clock>,
    /// Serve only documents whose `<path>.sig` this verifier accepts (see
    /// [`DocumentVerifier`]): an unsigned or wrongly signed document is rejected at load
    /// (`SIGNATURE_INVALID`) and on every reload, and the last good one stays live.
    pub verifier: Option<Arc<dyn DocumentVerifier>>,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            reload: true,
            poll_interval: DEFAULT_POLL_INTERVAL,
            clock: Arc::new(SystemClock),
            verifier: None,
        }
    }
}

/// The largest document file read: the loader's bound (`load::MAX_DOCUMENT_BYTES`, which this
/// layer may not import; a test keeps the two equal).
pub(crate) const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a document file and, with a verifier, its `<path>.sig`, and checks the signature
/// before anything is parsed: the loaded document, or why it cannot go live.
pub(super) fn load_file(path: &Path, verifier: Option<&dyn DocumentVerifier>) -> Result<Document> {
    let bytes = read_document(path)?;
    if let Some(verifier) = verifier {
        let signature = read_signature(path)?;
        verifier.verify(&path.display().to_string(), &bytes, signature.as_deref())?;
    }
    Document::from_slice(&bytes)
}

/// The bytes of `<path>.sig`, `None` when there is none. Read with the guards of a document
/// (regular files only, bounded), so a planted FIFO or device cannot block the reader.
pub fn read_signature(document: &Path) -> Result<Option<Vec<u8>>> {
    read_signature_file(&signature_path(document))
}

/// The bytes of a signature file (bounded, regular files only), `None` when there is none.
pub(crate) fn read_signature_file(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::metadata(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        _ => read_bounded(path, MAX_SIGNATURE_BYTES).map(Some),
    }
}

// Reading a document file without letting the path turn against the reader (issue 14).
//
// A watched path can be replaced by anything between two polls: a 1 GiB file, a symlink to
// `/dev/zero`, a FIFO that blocks `open()` until a writer appears. So the path is checked
// before it is opened (a regular file, after following symlinks, no larger than the bound),
// opened without blocking, checked again through the open handle (the path may have been
// swapped in between), and read up to the bound plus one byte: a file that grew past it is
// rejected without reading the rest.

fn unreachable(path: &Path, err: &std::io::Error) -> Error {
    Error::SourceUnreachable {
        source: path.display().to_string(),
        detail: err.to_string(),
    }
}

/// What a non-regular file is, for the error message.
fn kind_of(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

fn check(path: &Path, meta: &std::fs::Metadata, limit: u64) -> Result<()> {
    if !meta.is_file() {
        return Err(Error::NotRegularFile {
            source: path.display().to_string(),
            kind: kind_of(meta.file_type()).to_string(),
        });
    }
    if meta.len() > limit {
        return Err(too_large(path, meta.len(), limit));
    }
    Ok(())
}

fn too_large(path: &Path, len: u64, limit: u64) -> Error {
    let message = format!(
        "{} is {len} bytes or more; the limit is {limit} bytes (not read)",
        path.display()
    );
    if limit == MAX_SIGNATURE_BYTES {
        return Error::SignatureInvalid {
            source: path.display().to_string(),
            detail: message,
        };
    }
    Error::InvalidDocument {
        problems: vec![Problem {
            path: String::new(),
            kind: ProblemKind::DocumentTooLarge,
            message,
        }],
    }
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: if the path became a FIFO after the check, open() returns at once instead
    // of waiting for a writer (regular files ignore the flag).
    const O_NONBLOCK: i32 = 0o4000;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

/// Reads a document file: regular files only (symlinks followed), at most
/// [`MAX_FILE_BYTES`]. Errors: `SOURCE_UNREACHABLE` (missing, unreadable),
/// `NOT_REGULAR_FILE`, `INVALID_DOCUMENT` with `DOCUMENT_TOO_LARGE`.
pub fn read_document(path: &Path) -> Result<Vec<u8>> {
    read_bounded(path, MAX_FILE_BYTES)
}

fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|err| unreachable(path, &err))?;
    check(path, &meta, limit)?;
    let file = open_nonblocking(path).map_err(|err| unreachable(path, &err))?;
    // The path may have been swapped between the check and the open: check what was opened.
    let opened = file.metadata().map_err(|err| unreachable(path, &err))?;
    check(path, &opened, limit)?;
    let mut bytes = Vec::with_capacity(opened.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| unreachable(path, &err))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(path, bytes.len() as u64, limit));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_file_bound_is_the_loader_bound() {
        assert_eq!(
            super::MAX_FILE_BYTES,
            crate::load::MAX_DOCUMENT_BYTES as u64
        );
    }
}
