//! The live handle: hot reload from a file, last-known-good, local kills, status, threads.

use flagrail_core::EvalOptions;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use flagrail_core::live::{FileOptions, ManualClock, ReloadEvent, SystemClock};
use flagrail_core::{Flags, Reason};
use serde_json::json;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flagrail-live-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn document(revision: &str, serve: &str) -> String {
    json!({
        "revision": revision,
        "flags": { "chat": {
            "variants": { "old": {}, "new": {}, "off": {} },
            "default": "old",
            "kill": { "active": false, "serve": "off" },
            "rules": [{ "id": "all", "serve": serve }],
        }}
    })
    .to_string()
}

fn write_atomically(path: &PathBuf, text: &str) {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text).expect("write");
    std::fs::rename(&temp, path).expect("rename");
}

/// Polls until `check` holds or the deadline passes; returns whether it held.
fn eventually(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if check() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    check()
}

#[test]
fn file_changes_go_live_and_bad_documents_never_replace_good_ones() {
    let dir = temp_dir("reload");
    let path = dir.join("flags.json");
    write_atomically(&path, &document("r1", "old"));
    let flags = Flags::from_file_with(
        &path,
        FileOptions {
            poll_interval: Duration::from_millis(50),
            ..FileOptions::default()
        },
    )
    .expect("valid file");
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    flags.on_reload(move |event| {
        let line = match event {
            ReloadEvent::Applied { previous, revision } => {
                format!("applied {previous}->{revision}")
            }
            ReloadEvent::Rejected { error } => format!("rejected {}", error.code()),
        };
        sink.lock().expect("lock").push(line);
    });
    let ctx = json!({ "user_id": "u" });
    assert_eq!(
        flags
            .evaluate("chat", &ctx, EvalOptions::default())
            .variant_id(),
        Some("old")
    );

    write_atomically(&path, &document("r2", "new"));
    assert!(
        eventually(Duration::from_secs(5), || flags
            .evaluate("chat", &ctx, EvalOptions::default())
            .revision()
            == "r2"),
        "r2 never went live"
    );
    assert_eq!(
        flags
            .evaluate("chat", &ctx, EvalOptions::default())
            .variant_id(),
        Some("new")
    );

    // An in-place write of a broken document: r2 stays, the status says why.
    std::fs::write(&path, "{ \"flags\": { \"chat\": { \"variants\": {}, ").expect("write");
    assert!(eventually(Duration::from_secs(5), || flags
        .status()
        .last_error
        .is_some()));
    let status = flags.status();
    assert_eq!(status.revision, "r2");
    let failure = status.last_error.expect("error recorded");
    assert_eq!(failure.error.code(), "INVALID_DOCUMENT");
    assert_eq!(failure.error.problems()[0].code(), "INVALID_JSON");
    assert_eq!(
        flags
            .evaluate("chat", &ctx, EvalOptions::default())
            .variant_id(),
        Some("new")
    );
    assert!(status.rejected >= 1);

    // A valid document again clears the error.
    write_atomically(&path, &document("r3", "old"));
    assert!(eventually(Duration::from_secs(5), || flags
        .status()
        .revision
        == "r3"));
    assert!(flags.status().last_error.is_none());
    let log = events.lock().expect("lock").clone();
    assert!(log.contains(&"applied r1->r2".to_string()), "{log:?}");
    assert!(
        log.iter().any(|l| l == "rejected INVALID_DOCUMENT"),
        "{log:?}"
    );

    // A deleted file is a source error; the live document stays.
    std::fs::remove_file(&path).expect("remove");
    assert!(flags.reload_if_changed().is_err());
    assert_eq!(flags.status().revision, "r3");
    assert_eq!(
        flags.status().last_error.map(|f| f.error.code()),
        Some("SOURCE_UNREACHABLE")
    );
    flags.stop_watching();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_missing_or_invalid_file_fails_construction_with_a_typed_error() {
    let dir = temp_dir("construct");
    let missing = Flags::from_file(dir.join("nope.json")).expect_err("missing file");
    assert_eq!(missing.code(), "SOURCE_UNREACHABLE");
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        "{\"flags\": {\"f\": {\"variants\": {\"a\": {}}, \"default\": \"b\"}}}",
    )
    .expect("write");
    let invalid = Flags::from_file(&bad).expect_err("invalid");
    assert_eq!(invalid.code(), "INVALID_DOCUMENT");
    assert_eq!(invalid.problems()[0].path, "flags.f.default");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn local_kills_override_rules_and_lift_without_touching_the_document() {
    let flags = Flags::from_json(&document("r1", "new")).expect("valid");
    let ctx = json!({});
    flags.kill(Some("chat"), Some("bad answers"));
    let e = flags.evaluate("chat", &ctx, EvalOptions::default());
    assert_eq!((e.variant_id(), e.reason), (Some("off"), Reason::Killed));
    assert_eq!(flags.status().overrides.flags.len(), 1);
    flags.unkill(Some("chat"));
    assert_eq!(
        flags
            .evaluate("chat", &ctx, EvalOptions::default())
            .variant_id(),
        Some("new")
    );
    flags.kill(None, None);
    assert_eq!(
        flags.evaluate("chat", &ctx, EvalOptions::default()).reason,
        Reason::Killed
    );
    flags.unkill(None);
    assert_eq!(
        flags.evaluate("chat", &ctx, EvalOptions::default()).reason,
        Reason::TargetingMatch
    );
    // A kill in the document is not lifted by a local unkill.
    let killed = document("r2", "new").replace("\"active\":false", "\"active\":true");
    flags.replace_json(&killed).expect("valid");
    flags.unkill(None);
    assert_eq!(
        flags.evaluate("chat", &ctx, EvalOptions::default()).reason,
        Reason::Killed
    );
    let explained = flags
        .explain("chat", &ctx, EvalOptions::default())
        .to_value();
    assert_eq!(explained["kill_source"], json!("flag"));
}

#[test]
fn unknown_flags_and_replacements() {
    let flags = Flags::from_json(&document("r1", "new")).expect("valid");
    let e = flags.evaluate("missing", &json!({}), EvalOptions::default());
    assert_eq!(
        (e.reason, e.variant_id(), e.flag_key()),
        (Reason::FlagNotFound, None, "missing")
    );
    assert_eq!(e.to_json(Some("dflt"))["variant"], json!("dflt"));
    let err = flags.replace_json("{").expect_err("invalid");
    assert_eq!(err.code(), "INVALID_DOCUMENT");
    assert_eq!(flags.status().revision, "r1");
}

#[test]
fn ramps_follow_an_injected_clock() {
    let clock = Arc::new(ManualClock::new(0));
    let doc = flagrail_core::Document::from_json(
        &json!({ "flags": { "f": {
            "variants": { "a": {}, "b": {} }, "default": "a",
            "rules": [{ "id": "r", "ramp": { "variant": "b", "start": "1970-01-01T00:00:01Z",
                "steps": [{ "percent": 50, "hold": "1s" }, { "percent": 100 }] } }],
        }}})
        .to_string(),
    )
    .expect("valid");
    let flags = Flags::from_document_with_clock(doc, Arc::new(Arc::clone(&clock)));
    let ctx = json!({ "user_id": "someone" });
    assert_eq!(
        flags
            .evaluate("f", &ctx, EvalOptions::default())
            .variant_id(),
        Some("a")
    );
    clock.set(2_000);
    assert_eq!(
        flags
            .evaluate("f", &ctx, EvalOptions::default())
            .variant_id(),
        Some("b")
    );
    assert_eq!(
        flags.evaluate("f", &ctx, EvalOptions::at(0)).variant_id(),
        Some("a")
    );
}

/// 8 threads evaluate while the file is rewritten many times: every result belongs to one
/// complete revision (its variant is the one that revision serves) and nothing fails.
#[test]
fn threads_see_whole_revisions_during_reloads() {
    let dir = temp_dir("threads");
    let path = dir.join("flags.json");
    write_atomically(&path, &document("r0", "old"));
    let flags = Flags::from_file_with(
        &path,
        FileOptions {
            poll_interval: Duration::from_millis(5),
            clock: Arc::new(SystemClock),
            reload: true,
            verifier: None,
        },
    )
    .expect("valid");
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let flags = flags.clone();
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut seen = std::collections::BTreeSet::new();
                let mut count = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let ctx = json!({ "user_id": format!("u{t}-{count}") });
                    let e = flags.evaluate("chat", &ctx, EvalOptions::default());
                    let revision: u32 = e.revision()[1..].parse().expect("rN");
                    let expected = if revision.is_multiple_of(2) {
                        "old"
                    } else {
                        "new"
                    };
                    assert_eq!(e.variant_id(), Some(expected), "revision {revision}");
                    seen.insert(revision);
                    count += 1;
                }
                (count, seen)
            })
        })
        .collect();
    for r in 1u32..=60 {
        let serve = if r.is_multiple_of(2) { "old" } else { "new" };
        if r.is_multiple_of(3) {
            std::fs::write(&path, document(&format!("r{r}"), serve)).expect("write");
        } else {
            write_atomically(&path, &document(&format!("r{r}"), serve));
        }
        thread::sleep(Duration::from_millis(15));
    }
    assert!(eventually(Duration::from_secs(5), || flags
        .status()
        .revision
        == "r60"));
    stop.store(true, Ordering::Relaxed);
    let mut revisions = std::collections::BTreeSet::new();
    for worker in workers {
        let (count, seen) = worker.join().expect("no panic in evaluating threads");
        assert!(count > 0);
        revisions.extend(seen);
    }
    assert!(revisions.len() > 2, "threads saw only {revisions:?}");
    flags.stop_watching();
    let _ = std::fs::remove_dir_all(dir);
}

/// The document id lets a binding keep the live document between calls: it names exactly one
/// document of one handle and changes with every applied replacement (not with a rejected
/// one), and a snapshot over the kept document decides like a loaded one, local kills included.
#[test]
fn document_ids_name_one_live_document_and_snapshots_over_a_kept_document_decide_alike() {
    let flags = Flags::from_json(&document("r1", "new")).expect("valid");
    let other = Flags::from_json(&document("r1", "new")).expect("valid");
    let (id, kept) = flags.document_and_id();
    assert_eq!(id, flags.document_id());
    assert_eq!(kept.revision(), "r1");
    assert_ne!(id, other.document_id(), "ids are unique across handles");
    assert_ne!(id, 0, "0 is never an id (bindings use it for 'unknown')");

    fn decide<D: std::ops::Deref<Target = Arc<flagrail_core::Document>>>(
        snapshot: flagrail_core::live::Snapshot<'_, D>,
    ) -> (Option<String>, Reason) {
        let ctx: [(&str, flagrail_core::Attr<'_>); 0] = [];
        let d = snapshot.evaluate("chat", &ctx, EvalOptions::default());
        (d.variant_id().map(str::to_string), d.reason)
    }
    assert_eq!(decide(flags.snapshot_of(&kept)), decide(flags.snapshot()));
    flags.kill(Some("chat"), None);
    assert_eq!(
        decide(flags.snapshot_of(&kept)),
        (Some("off".to_string()), Reason::Killed),
        "a kept document still sees the handle's local kills"
    );
    assert_eq!(decide(flags.snapshot_of(&kept)), decide(flags.snapshot()));
    flags.unkill(Some("chat"));

    assert!(flags.replace_json("{ not json").is_err());
    assert_eq!(
        flags.document_id(),
        id,
        "a rejected document changes nothing"
    );
    flags.replace_json(&document("r2", "old")).expect("valid");
    let (new_id, new_doc) = flags.document_and_id();
    assert_ne!(new_id, id, "a replacement changes the id");
    assert_eq!(flags.document_id(), new_id);
    assert_eq!(new_doc.revision(), "r2");
    assert_eq!(decide(flags.snapshot()).0.as_deref(), Some("old"));
}

#[test]
fn snapshots_from_a_thread_s_recent_documents_always_see_the_live_one() {
    // `Flags::snapshot` takes its document from the thread's recent entries by document id
    // (core/src/live/recent.rs): three handles in turn on one thread (more than the entries
    // kept), replacements in between, and a snapshot held across a replacement.
    let handles: Vec<Flags> = (0..3)
        .map(|i| Flags::from_json(&document(&format!("h{i}-r1"), "new")).expect("valid"))
        .collect();
    for round in 2..6 {
        for (i, flags) in handles.iter().enumerate() {
            let held = flags.snapshot();
            assert_eq!(held.document().revision(), format!("h{i}-r{}", round - 1));
            flags
                .replace_json(&document(&format!("h{i}-r{round}"), "old"))
                .expect("valid");
            assert_eq!(
                held.document().revision(),
                format!("h{i}-r{}", round - 1),
                "a snapshot keeps its document"
            );
            assert_eq!(
                flags.snapshot().document().revision(),
                format!("h{i}-r{round}"),
                "the next snapshot sees the replacement"
            );
        }
    }
    // Another thread has its own entries and sees the same live documents.
    thread::scope(|scope| {
        scope.spawn(|| {
            for (i, flags) in handles.iter().enumerate() {
                assert_eq!(flags.snapshot().document().revision(), format!("h{i}-r5"));
            }
        });
    });
}
