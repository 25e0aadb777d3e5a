//! Every file-backed handle of a process shares one watcher thread (issue 13): threads stay
//! bounded however many handles are created and dropped, and every handle still reloads.
//! Alone in its test binary so that no other test's threads are counted.
#![cfg(target_os = "linux")]

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use flagrail_core::{FileOptions, Flags};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn document(revision: &str) -> String {
    format!(
        r#"{{"revision": "{revision}", "flags": {{"f": {{"variants": {{"a": {{}}}}, "default": "a"}}}}}}"#
    )
}

fn write_atomic(path: &PathBuf, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn many_handles_share_one_watcher_thread() {
    let dir = std::env::temp_dir().join(format!("flagrail-watchers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let options = FileOptions {
        poll_interval: Duration::from_millis(20),
        ..FileOptions::default()
    };
    let before = threads();
    let paths: Vec<PathBuf> = (0..100).map(|i| dir.join(format!("f{i}.json"))).collect();
    for path in &paths {
        write_atomic(path, &document("r1"));
    }
    // Created and dropped, 3 × 100: no thread per handle, none left behind.
    for _ in 0..3 {
        let handles: Vec<Flags> = paths
            .iter()
            .map(|p| Flags::from_file_with(p, options.clone()).unwrap())
            .collect();
        assert!(handles.iter().all(Flags::is_watching));
        assert!(
            threads() <= before + 1,
            "{} threads for {} watched handles (started with {before})",
            threads(),
            handles.len()
        );
    }
    // Each of many live handles still reloads.
    let handles: Vec<Flags> = paths
        .iter()
        .map(|p| Flags::from_file_with(p, options.clone()).unwrap())
        .collect();
    for path in &paths {
        write_atomic(path, &document("r2-longer"));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !handles
        .iter()
        .all(|h| h.document().revision() == "r2-longer")
    {
        assert!(Instant::now() < deadline, "not every handle reloaded");
        thread::sleep(Duration::from_millis(10));
    }
    assert!(threads() <= before + 1);
    // A stopped handle is no longer checked; the others go on.
    handles[0].stop_watching();
    assert!(!handles[0].is_watching());
    write_atomic(&paths[0], &document("r3-stopped"));
    write_atomic(&paths[1], &document("r3-live"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while handles[1].document().revision() != "r3-live" {
        assert!(Instant::now() < deadline, "the live handle did not reload");
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(100));
    assert_eq!(handles[0].document().revision(), "r2-longer");
}
