//! The on-disk copy of the last good document, for cold starts while the server is down.
//!
//! Written atomically: a temporary file with an unpredictable name, created exclusively in the
//! same directory (so a planted symlink is never followed), flushed to disk, then renamed over
//! the cache. A reader sees the old copy or the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use flagrail_core::Error;

/// `flags.json` → `flags.json.sig` (the core's rule, shared by file sources and caches).
pub use flagrail_core::live::signature_path;

/// Reads a cached document with the same guards as a watched file.
pub fn read(path: &Path) -> Result<Vec<u8>, Error> {
    flagrail_core::live::read_document(path)
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        // Still unique enough with create_new: a clash fails the write, it never overwrites.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Replaces `path` with `bytes` atomically; the error says why it could not.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "flags".to_string());
    let temp = dir.join(format!(".{name}.{}.tmp", random_suffix()));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(err) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(format!("cannot write {}: {err}", path.display()));
    }
    Ok(())
}
