//! A watched file cannot be turned against the watcher (issue 14): whatever the path becomes —
//! a FIFO, a symlink to `/dev/zero`, a 1 GiB file — it is checked before it is read, read up to
//! the document bound at most, and reported in `status()` with a code, while the watcher goes
//! on and applies the next good document.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use flagrail_core::{FileOptions, Flags};
use serde_json::Value;

fn document(revision: &str) -> String {
    format!(
        r#"{{"revision": "{revision}", "flags": {{"f": {{"variants": {{"a": {{}}}}, "default": "a"}}}}}}"#
    )
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "flagrail-file-source-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn replace(path: &Path, with: impl FnOnce(&Path)) {
    let tmp = path.with_extension("next");
    let _ = std::fs::remove_file(&tmp);
    with(&tmp);
    std::fs::rename(&tmp, path).unwrap();
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Runs `f` on a thread and fails (instead of hanging the suite) when it blocks.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what} blocked for 10 s"))
}

fn wait_for(flags: &Flags, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = flags.status().to_json();
        if condition(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {status:#}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn loading_a_fifo_fails_at_once_with_not_regular_file() {
    let dir = tempdir("fifo-load");
    let fifo = dir.join("flags.json");
    mkfifo(&fifo);
    let err = bounded("from_file(FIFO)", move || {
        Flags::from_file(&fifo).unwrap_err()
    });
    assert_eq!(err.code(), "NOT_REGULAR_FILE", "{err}");
    assert!(err.to_string().contains("FIFO"), "{err}");
}

#[test]
fn a_symlink_to_dev_zero_is_not_read() {
    let dir = tempdir("zero");
    let link = dir.join("flags.json");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let err = bounded("from_file(-> /dev/zero)", move || {
        Flags::from_file(&link).unwrap_err()
    });
    assert_eq!(err.code(), "NOT_REGULAR_FILE", "{err}");
}

#[test]
fn a_symlink_to_a_regular_file_is_followed() {
    let dir = tempdir("link");
    let real = dir.join("real.json");
    std::fs::write(&real, document("r1")).unwrap();
    let link = dir.join("flags.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert_eq!(Flags::from_file(&link).unwrap().document().revision(), "r1");
}

#[test]
fn a_huge_file_is_rejected_without_being_read() {
    let dir = tempdir("huge");
    let path = dir.join("flags.json");
    // Sparse: 1 GiB long, no disk used.
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(1 << 30).unwrap();
    drop(file);
    let before = peak_rss_kib();
    let err = bounded("from_file(1 GiB)", move || {
        Flags::from_file(&path).unwrap_err()
    });
    assert_eq!(err.problems()[0].code(), "DOCUMENT_TOO_LARGE", "{err}");
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 100 * 1024,
        "peak RSS grew by {grown} KiB reading a 1 GiB file"
    );
}

#[test]
fn the_watcher_reports_a_fifo_and_goes_on() {
    let dir = tempdir("fifo-watch");
    let path = dir.join("flags.json");
    std::fs::write(&path, document("r1")).unwrap();
    let flags = Flags::from_file_with(
        &path,
        FileOptions {
            poll_interval: Duration::from_millis(20),
            ..FileOptions::default()
        },
    )
    .unwrap();
    replace(&path, mkfifo);
    let status = wait_for(&flags, "the FIFO to be reported", |s| {
        s["last_error"]["code"] == "NOT_REGULAR_FILE"
    });
    assert_eq!(status["revision"], "r1");
    // Then /dev/zero through a symlink, then a good document: the watcher never stopped.
    replace(&path, |tmp| {
        std::os::unix::fs::symlink("/dev/zero", tmp).unwrap()
    });
    wait_for(&flags, "the symlink to be reported", |s| {
        s["last_error"]["code"] == "NOT_REGULAR_FILE"
            && s["last_error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("device"))
    });
    replace(&path, |tmp| std::fs::write(tmp, document("r2")).unwrap());
    wait_for(&flags, "the next good document", |s| s["revision"] == "r2");
}
