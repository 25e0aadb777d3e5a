//! Where the live document comes from: a fixed document, or a file that a background thread
//! polls and reloads when it changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::live::clock::{Clock, SystemClock};

/// How often a watched file is checked for changes. A change is live within one interval plus
/// the time to compile it.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Where the live document comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    Static,
    File(PathBuf),
}

impl SourceKind {
    pub(super) fn describe(&self) -> String {
        match self {
            SourceKind::Static => "static".to_string(),
            SourceKind::File(path) => format!("file:{}", path.display()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint {
    modified_nanos: i128,
    len: u64,
    inode: u64,
}

pub(super) fn fingerprint(path: &Path) -> Option<Fingerprint> {
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
    Some(Fingerprint {
        modified_nanos,
        len: meta.len(),
        inode,
    })
}

/// Options for [`crate::Flags::from_file_with`].
#[derive(Clone)]
pub struct FileOptions {
    /// Watch the file and reload on change.
    pub reload: bool,
    pub poll_interval: Duration,
    pub clock: Arc<dyn Clock>,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            reload: true,
            poll_interval: DEFAULT_POLL_INTERVAL,
            clock: Arc::new(SystemClock),
        }
    }
}

pub(super) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|err| Error::SourceUnreachable {
        source: path.display().to_string(),
        detail: err.to_string(),
    })
}
