//! The file operations of a kill: exclusive creation, no symlink following, mode and owner
//! kept, bounded lock waits.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{invalid, io_error};
use crate::document::Document;
use crate::error::{Error, Result};
use crate::load::MAX_DOCUMENT_BYTES;

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
pub(super) fn open_beside(path: &Path, access: Access, document: &fs::Metadata) -> Result<File> {
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
                let _ =
                    std::os::unix::fs::fchown(&file, Some(document.uid()), Some(document.gid()));
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
