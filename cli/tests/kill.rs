//! `flagrail kill` / `unkill` under concurrency and attack: lost updates, planted symlinks,
//! file modes and ownership, no-op kills and the shape of the diff a kill leaves in review.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

fn flagrail(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flagrail"))
        .args(args)
        .output()
        .expect("run flagrail")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/flags.json")
}

/// A fresh directory for one test (removed first if a previous run left it).
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flagrail-kill-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn temp_copy(name: &str) -> PathBuf {
    let path = temp_dir(name).join("flags.json");
    std::fs::copy(example(), &path).expect("copy example");
    path
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn audit_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

fn load(path: &Path) -> flagrail_core::Document {
    flagrail_core::Document::from_slice(&std::fs::read(path).expect("read")).expect("valid")
}

/// Processes acting at once through a symlink and through the real path are one document: every
/// change lands, each gets its own revision, and one audit log beside the real file holds a
/// record of each, chained old → new revision.
#[test]
fn concurrent_kills_and_unkills_through_a_symlink_and_the_real_path_all_land() {
    const FLAGS: usize = 16;
    let dir = temp_dir("race");
    let real = dir.join("flags.json");
    let mut flags = serde_json::Map::new();
    for i in 0..FLAGS {
        flags.insert(
            format!("f{i:02}"),
            json!({
                "variants": { "on": {}, "off": { "ai": false } },
                "default": "on",
                "kill": { "active": i % 2 == 1, "serve": "off" },
            }),
        );
    }
    let document = json!({ "revision": "r0", "flags": flags });
    std::fs::write(
        &real,
        serde_json::to_string_pretty(&document).expect("json"),
    )
    .expect("write");
    let link = dir.join("live.json");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");

    // Even flags are live and get killed, odd ones are killed and get unkilled; every other
    // command goes through the link.
    let workers: Vec<_> = (0..FLAGS)
        .map(|i| {
            let path = if i % 4 < 2 {
                link.clone()
            } else {
                real.clone()
            };
            std::thread::spawn(move || {
                let flag = format!("f{i:02}");
                let action = if i % 2 == 0 { "kill" } else { "unkill" };
                flagrail(&[
                    action,
                    text(&path),
                    "--flag",
                    &flag,
                    "--reason",
                    "race",
                    "--actor",
                    "ci",
                ])
            })
        })
        .collect();
    for worker in workers {
        let out = worker.join().expect("thread");
        assert!(out.status.success(), "{}", stderr(&out));
    }

    assert!(
        std::fs::symlink_metadata(&link)
            .expect("link")
            .file_type()
            .is_symlink(),
        "the link was replaced"
    );
    let doc = load(&real);
    for (i, flag) in doc.flags().iter().enumerate() {
        assert_eq!(
            flag.kill.active,
            i % 2 == 0,
            "the change of {} was lost",
            flag.key
        );
    }
    assert!(
        !dir.join("live.audit.jsonl").exists(),
        "the audit log split in two"
    );
    let records = audit_records(&dir.join("flags.audit.jsonl"));
    assert_eq!(records.len(), FLAGS, "one record per command");
    let mut expected_old = "r0".to_string();
    for record in &records {
        assert_eq!(record["old_revision"], expected_old.as_str(), "{records:?}");
        expected_old = record["new_revision"].as_str().expect("rev").to_string();
    }
    assert_eq!(doc.revision(), expected_old, "each command bumped once");
}

/// The temp file is created exclusively: a symlink planted at the name the rewrite uses (the
/// old predictable `.flags.json.<pid>.tmp`) is never followed, so its target survives.
#[test]
fn a_planted_symlink_never_gets_its_target_overwritten() {
    let path = temp_copy("planted");
    let victim = path.with_file_name("victim.txt");
    std::fs::write(&victim, "precious\n").expect("victim");
    let planted = path.with_file_name(format!(".flags.json.{}.tmp", std::process::id()));
    std::os::unix::fs::symlink(&victim, &planted).expect("plant");

    let outcome = flagrail_core::admin::kill_file(
        &path,
        &flagrail_core::admin::KillChange {
            target: flagrail_core::admin::Target::Flag("support-bot"),
            active: true,
            reason: Some("planted"),
            actor: "ci",
            at: flagrail_core::time::now_millis(),
        },
        &flagrail_core::admin::KillOptions::default(),
    )
    .expect("kill");
    assert!(outcome.changed);
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious\n"
    );
    let meta = std::fs::symlink_metadata(&path).expect("document");
    assert!(meta.file_type().is_file(), "the document is a regular file");
    assert!(load(&path).flag("support-bot").expect("flag").kill.active);
    // A planted audit log symlink is refused, not appended through.
    let other = temp_copy("planted-audit");
    let audit_victim = other.with_file_name("audit-victim.txt");
    std::fs::write(&audit_victim, "precious\n").expect("victim");
    std::os::unix::fs::symlink(&audit_victim, other.with_file_name("flags.audit.jsonl"))
        .expect("plant");
    let refused = flagrail(&[
        "kill",
        text(&other),
        "--flag",
        "support-bot",
        "--reason",
        "x",
    ]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert_eq!(
        std::fs::read_to_string(&audit_victim).expect("victim"),
        "precious\n"
    );
    assert!(
        !load(&other).flag("support-bot").expect("flag").kill.active,
        "nothing is written when the audit log cannot be"
    );
}

#[test]
fn the_mode_and_owner_of_the_document_are_kept() {
    for mode in [0o600, 0o640, 0o660] {
        let path = temp_copy(&format!("mode-{mode:o}"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        // As root (CI containers), hand the file to another owner so that keeping it is tested.
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if root {
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).expect("chown");
        }
        let before = std::fs::metadata(&path).expect("meta");
        let out = flagrail(&["kill", text(&path), "--all", "--reason", "mode"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let after = std::fs::metadata(&path).expect("meta");
        assert_ne!(before.ino(), after.ino(), "rewritten by rename");
        assert_eq!(after.mode() & 0o7777, mode, "mode of a {mode:o} file");
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
        // The audit log is no more readable than the document.
        let audit = std::fs::metadata(path.with_file_name("flags.audit.jsonl")).expect("audit");
        assert_eq!(audit.mode() & 0o777 & !mode, 0, "audit {:o}", audit.mode());
    }
}

#[test]
fn a_read_only_document_is_refused_unless_forced() {
    let path = temp_copy("read-only");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).expect("chmod");
    let before = std::fs::read(&path).expect("read");
    let refused = flagrail(&[
        "kill",
        text(&path),
        "--flag",
        "support-bot",
        "--reason",
        "x",
    ]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let err = stderr(&refused);
    assert!(
        err.contains("read-only") && err.contains("--force"),
        "{err}"
    );
    assert!(err.contains(text(&path)), "names the file: {err}");
    assert_eq!(std::fs::read(&path).expect("read"), before, "untouched");
    assert!(audit_records(&path.with_file_name("flags.audit.jsonl")).is_empty());

    let forced = flagrail(&[
        "kill",
        text(&path),
        "--flag",
        "support-bot",
        "--reason",
        "x",
        "--force",
    ]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(load(&path).flag("support-bot").expect("flag").kill.active);
    let mode = std::fs::metadata(&path).expect("meta").mode() & 0o7777;
    assert_eq!(mode, 0o444, "still read-only after a forced kill");
}

#[test]
fn a_kill_of_a_killed_flag_says_so_and_changes_nothing() {
    let path = temp_copy("noop");
    let audit = path.with_file_name("flags.audit.jsonl");
    let kill = || {
        flagrail(&[
            "kill",
            text(&path),
            "--flag",
            "support-bot",
            "--reason",
            "first",
            "--actor",
            "ana",
        ])
    };
    let first = kill();
    assert!(first.status.success(), "{}", stderr(&first));
    let after_first = std::fs::read(&path).expect("read");
    let second = kill();
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stdout(&second).contains("already killed"),
        "{}",
        stdout(&second)
    );
    assert!(stdout(&second).contains("by ana"), "{}", stdout(&second));
    assert_eq!(std::fs::read(&path).expect("read"), after_first);
    assert_eq!(audit_records(&audit).len(), 1);

    let live = flagrail(&["unkill", text(&path), "--flag", "support-prompt"]);
    assert!(live.status.success(), "{}", stderr(&live));
    assert!(stdout(&live).contains("not killed"), "{}", stdout(&live));
    assert_eq!(std::fs::read(&path).expect("read"), after_first);
    assert_eq!(audit_records(&audit).len(), 1);
}

#[test]
fn a_kill_variant_that_calls_a_model_gets_a_warning() {
    let path = temp_copy("ai-kill");
    // support-prompt has no kill.serve: its default v2.1 is a prompt, so a model is called.
    let out = flagrail(&[
        "kill",
        text(&path),
        "--flag",
        "support-prompt",
        "--reason",
        "x",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning") && err.contains("v2.1") && err.contains("calls a model"),
        "{err}"
    );
    // support-bot's kill variant is `"ai": false`: no warning.
    let quiet = flagrail(&[
        "kill",
        text(&path),
        "--flag",
        "support-bot",
        "--reason",
        "x",
    ]);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    assert!(!stderr(&quiet).contains("warning"), "{}", stderr(&quiet));
}

/// The lines of `after` that differ from `before`, and those added (same-length documents are
/// compared line by line; otherwise by a longest common subsequence).
fn changed_lines(before: &str, after: &str) -> (Vec<String>, Vec<String>) {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            added.push(b[j].to_string());
            j += 1;
        } else {
            removed.push(a[i].to_string());
            i += 1;
        }
    }
    (removed, added)
}

/// A hand-formatted document keeps its formatting: a kill rewrites the line of the switch and
/// the revision line, nothing else.
#[test]
fn a_kill_is_a_one_line_diff_plus_the_revision() {
    let path = temp_copy("diff");
    let before = std::fs::read_to_string(&path).expect("read");
    let out = flagrail(&[
        "kill",
        text(&path),
        "--flag",
        "support-bot",
        "--reason",
        "diff",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = std::fs::read_to_string(&path).expect("read");
    let (removed, added) = changed_lines(&before, &after);
    assert_eq!(
        removed,
        [
            r#"  "revision": "2026-11-21.1","#,
            r#"      "kill": { "active": false, "serve": "human" },"#
        ],
        "{after}"
    );
    assert_eq!(added.len(), 2, "{added:?}");
    assert!(added[0].starts_with(r#"  "revision": ""#), "{added:?}");
    assert!(
        added[1].starts_with(
            r#"      "kill": { "active": true, "serve": "human", "reason": "diff", "actor": "#
        ),
        "{added:?}"
    );

    // A flag without a switch gets one added line; the unkill is again one changed line.
    let before = after;
    let out = flagrail(&[
        "kill",
        text(&path),
        "--flag",
        "support-temperature",
        "--reason",
        "t",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = std::fs::read_to_string(&path).expect("read");
    let (removed, added) = changed_lines(&before, &after);
    assert_eq!(removed.len(), 1, "only the revision: {removed:?}");
    assert_eq!(added.len(), 2, "{added:?}");
    assert!(added[1].starts_with(r#"      "kill": {"#), "{added:?}");
    let before = after;
    let out = flagrail(&["unkill", text(&path), "--flag", "support-bot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = std::fs::read_to_string(&path).expect("read");
    let (removed, added) = changed_lines(&before, &after);
    assert_eq!(
        (removed.len(), added.len()),
        (2, 2),
        "{removed:?} {added:?}"
    );
    assert!(
        added[1].contains(r#""active": false"#) && !added[1].contains("reason"),
        "an unkill without --reason drops the kill's reason: {added:?}"
    );
}

/// A kill that cannot get the lock (another kill is stuck) gives up with a clear error and
/// changes nothing.
#[test]
fn a_kill_that_cannot_get_the_lock_changes_nothing() {
    let path = temp_copy("stuck");
    let before = std::fs::read(&path).expect("read");
    // The lock of the first kill: create it as the kill would, then hold it.
    let lock_path = flagrail_core::admin::lock_path(&path);
    let stuck = std::fs::File::create(&lock_path).expect("lock file");
    stuck.lock().expect("hold the lock");
    let err = flagrail_core::admin::kill_file(
        &path,
        &flagrail_core::admin::KillChange {
            target: flagrail_core::admin::Target::All,
            active: true,
            reason: Some("stuck"),
            actor: "ci",
            at: flagrail_core::time::now_millis(),
        },
        &flagrail_core::admin::KillOptions {
            lock_wait: Some(std::time::Duration::from_millis(50)),
            ..flagrail_core::admin::KillOptions::default()
        },
    )
    .expect_err("the lock is held");
    assert_eq!(err.code(), "SOURCE_UNREACHABLE");
    assert!(err.to_string().contains("held this lock"), "{err}");
    assert!(err.to_string().contains(".flags.json.lock"), "{err}");
    assert_eq!(std::fs::read(&path).expect("read"), before);
    drop(stuck);
    let out = flagrail(&["kill", text(&path), "--all", "--reason", "free"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Another user's document: run as `nobody` (possible when the tests run as root, as in CI
/// containers), a kill that could not keep the owner, or may not write the file, refuses and
/// changes nothing; `--force` writes it anyway and keeps the mode.
#[test]
fn another_users_document_is_refused_unless_forced() {
    use std::os::unix::process::CommandExt;
    if std::fs::metadata("/proc/self").map_or(true, |m| m.uid() != 0) {
        // Only root can run a command as another user; the same-user paths are tested above.
        eprintln!("not root: the other-user refusals are not exercised here");
        return;
    }
    let as_nobody = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flagrail"))
            .args(args)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run flagrail as nobody")
    };
    let path = temp_copy("other-user");
    let dir = path.parent().expect("dir");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod dir");

    // Root's 0644 file: nobody may not write it.
    let before = std::fs::read(&path).expect("read");
    let out = as_nobody(&[
        "kill",
        text(&path),
        "--all",
        "--reason",
        "x",
        "--actor",
        "n",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not writable by you"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&path).expect("read"), before);

    // Root's 0666 file: nobody may write it but cannot keep root as its owner.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = as_nobody(&[
        "kill",
        text(&path),
        "--all",
        "--reason",
        "x",
        "--actor",
        "n",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot keep its owner (uid 0, gid 0)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&path).expect("read"), before);
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let forced = as_nobody(&[
        "kill",
        text(&path),
        "--all",
        "--reason",
        "x",
        "--actor",
        "n",
        "--force",
    ]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(
        stderr(&forced).contains("written anyway (--force)"),
        "{}",
        stderr(&forced)
    );
    let after = std::fs::metadata(&path).expect("meta");
    assert_eq!((after.uid(), after.mode() & 0o7777), (65534, 0o666));
    assert!(load(&path).kill().active);
}

/// A signed document: `kill` without `--key` refuses (the kill would not reach processes that
/// verify), `--key` re-signs it so that `validate --verify-key` (and every verifying source)
/// accepts the new revision, and `--force` without a key writes it but says verifying processes
/// will reject it.
#[test]
fn a_signed_document_is_re_signed_with_key_and_refused_without() {
    let path = temp_copy("signed");
    let dir = path.parent().expect("dir").to_path_buf();
    let keys = dir.join("keys");
    let out = flagrail(&["keygen", "--out", text(&keys)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (private, public) = (keys.join("flagrail.key"), keys.join("flagrail.pub"));
    let out = flagrail(&["sign", "--key", text(&private), text(&path)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let verify = |path: &Path| flagrail(&["validate", text(path), "--verify-key", text(&public)]);
    assert!(verify(&path).status.success());
    let before = std::fs::read(&path).expect("read");

    let out = flagrail(&["kill", text(&path), "--all", "--reason", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--key flagrail.key"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&path).expect("read"), before);

    let out = flagrail(&[
        "kill",
        text(&path),
        "--all",
        "--reason",
        "outage",
        "--key",
        text(&private),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("signed: "), "{}", stdout(&out));
    assert!(verify(&path).status.success(), "{}", stderr(&verify(&path)));
    assert!(load(&path).kill().active);

    let out = flagrail(&["unkill", text(&path), "--all", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("REJECT"), "{}", stderr(&out));
    let rejected = verify(&path);
    assert_eq!(rejected.status.code(), Some(1));
    assert!(
        stderr(&rejected).contains("[SIGNATURE_INVALID]"),
        "{}",
        stderr(&rejected)
    );
    // The public key's text works as well as its file.
    let public_text = std::fs::read_to_string(&public).expect("pub");
    let out = flagrail(&["sign", "--key", text(&private), text(&path)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = flagrail(&[
        "eval",
        text(&path),
        "--flag",
        "support-bot",
        "--verify-key",
        public_text.trim(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A key that does not parse is a usage error.
    let out = flagrail(&["validate", text(&path), "--verify-key", "ed25519:zz"]);
    assert_eq!(out.status.code(), Some(2));
}
