//! Reading a document file without letting the path turn against the reader.
//!
//! A watched path can be replaced by anything between two polls: a 1 GiB file, a symlink to
//! `/dev/zero`, a FIFO that blocks `open()` until a writer appears. So the path is checked
//! before it is opened (a regular file, after following symlinks, no larger than the document
//! bound), opened without blocking, checked again through the open handle (the path may have
//! been swapped in between), and read up to the bound plus one byte: a file that grew past it
//! is rejected without reading the rest.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Problem, ProblemKind, Result};
use crate::load::MAX_DOCUMENT_BYTES;

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

fn check(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    if !meta.is_file() {
        return Err(Error::NotRegularFile {
            source: path.display().to_string(),
            kind: kind_of(meta.file_type()).to_string(),
        });
    }
    if meta.len() > MAX_DOCUMENT_BYTES as u64 {
        return Err(too_large(path, meta.len()));
    }
    Ok(())
}

fn too_large(path: &Path, len: u64) -> Error {
    Error::InvalidDocument {
        problems: vec![Problem {
            path: String::new(),
            kind: ProblemKind::DocumentTooLarge,
            message: format!(
                "{} is {len} bytes or more; the limit is {MAX_DOCUMENT_BYTES} bytes (not read)",
                path.display()
            ),
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
/// [`MAX_DOCUMENT_BYTES`]. Errors: `SOURCE_UNREACHABLE` (missing, unreadable),
/// `NOT_REGULAR_FILE`, `INVALID_DOCUMENT` with `DOCUMENT_TOO_LARGE`.
pub fn read_document(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|err| unreachable(path, &err))?;
    check(path, &meta)?;
    let file = open_nonblocking(path).map_err(|err| unreachable(path, &err))?;
    // The path may have been swapped between the check and the open: check what was opened.
    let opened = file.metadata().map_err(|err| unreachable(path, &err))?;
    check(path, &opened)?;
    let mut bytes = Vec::with_capacity(opened.len() as usize);
    file.take(MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| unreachable(path, &err))?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(too_large(path, bytes.len() as u64));
    }
    Ok(bytes)
}
