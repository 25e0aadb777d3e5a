//! The command line never panics: bad arguments are usage errors (exit 2) with a message, a
//! closed stdout ends the command quietly, and `drill` documents its options.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn flagrail_os(args: &[&OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flagrail"))
        .args(args)
        .output()
        .expect("run flagrail")
}

fn flagrail(args: &[&str]) -> Output {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    flagrail_os(&args)
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

fn example_text() -> String {
    example().to_str().expect("utf-8").to_string()
}

fn assert_no_panic(out: &Output) {
    assert_ne!(out.status.code(), Some(101), "panicked: {}", stderr(out));
    assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
}

#[test]
fn a_non_utf8_argument_is_a_usage_error() {
    let surrogate = OsStr::from_bytes(b"\xed\xa0\x80");
    let out = flagrail_os(&[
        OsStr::new("bucket"),
        OsStr::new("--salt"),
        OsStr::new("a"),
        OsStr::new("--unit"),
        surrogate,
    ]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not valid UTF-8"), "{}", stderr(&out));
    // In the command word and in a file name too.
    for args in [
        vec![surrogate],
        vec![OsStr::new("validate"), OsStr::from_bytes(b"/tmp/\xff.json")],
    ] {
        let out = flagrail_os(&args);
        assert_no_panic(&out);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    }
}

/// `flagrail … | head`: the reader goes away before the command writes.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let file = example_text();
    let commands: [&[&str]; 5] = [
        &["drill", &file, "--flag", "support-bot", "--variant", "v2.2"],
        &[
            "simulate",
            &file,
            "--flag",
            "support-bot",
            "--users",
            "2000",
            "--timeline",
        ],
        &["eval", &file, "--flag", "support-bot"],
        &["validate", &file],
        &["help"],
    ];
    for args in commands {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flagrail"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        assert_no_panic(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

#[test]
fn drill_documents_its_options() {
    for args in [&["drill", "--help"][..], &["help", "drill"][..]] {
        let out = flagrail(args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let help = stdout(&out);
        for option in [
            "--flag",
            "--variant",
            "--error-rate",
            "--latency-ms",
            "--requests",
            "--every",
            "--seed",
            "--context",
            "--at",
            "--expect-trip",
            "--json",
        ] {
            assert!(help.contains(option), "{option} missing from:\n{help}");
        }
        assert!(help.contains("default"), "{help}");
    }
    // Every other command answers --help with its usage line.
    let out = flagrail(&["kill", "--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("flagrail kill FILE"),
        "{}",
        stdout(&out)
    );
}

/// `--latency-ms` alone drills latency: the variant is slow, not failing.
#[test]
fn drill_with_only_a_latency_is_slow_not_failing() {
    let out = flagrail(&[
        "drill",
        &example_text(),
        "--flag",
        "support-bot",
        "--variant",
        "v2.2",
        "--latency-ms",
        "9000",
        "--requests",
        "2000",
        "--context",
        r#"{"plan": "pro"}"#,
        "--at",
        "2026-11-25T10:00:00Z",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(report["error_rate"], 0.0, "{report}");
    assert_eq!(report["metrics"]["v2.2"]["errors"], 0, "{report}");
    let tripped: Vec<&str> = report["guardrail_events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"]["type"] == "guardrail_trip")
        .filter_map(|e| e["event"]["guardrail"].as_str())
        .collect();
    assert_eq!(tripped, ["slow"], "the latency guardrail trips: {report}");
}

#[test]
fn bad_numbers_are_usage_errors() {
    let file = example_text();
    let base = ["drill", &file, "--flag", "support-bot", "--variant", "v2.2"];
    for bad in [
        ["--latency-ms", "inf"],
        ["--latency-ms", "NaN"],
        ["--requests", "1.5"],
        ["--requests", "0"],
        ["--seed", "-1"],
        ["--every", "99999999d"],
        ["--error-rate", "2"],
    ] {
        let mut args = base.to_vec();
        args.extend(bad);
        let out = flagrail(&args);
        assert_no_panic(&out);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }
    for args in [
        &["bucket", "--salt", "s", "--unit", "u", "--total", "0"][..],
        &["bucket", "--salt"][..],
        &[
            "eval",
            &file,
            "--flag",
            "support-bot",
            "--at",
            "2026-11-21T1é:00:00Z",
        ][..],
        &["eval", &file, "--flag", "support-bot", "--context", "[1]"][..],
        &["simulate", &file, "--flag", "support-bot", "--users", "-3"][..],
        &["kill", &file, "--flag"][..],
    ] {
        let out = flagrail(args);
        assert_no_panic(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

/// A FIFO or a device given as the document is refused at once instead of blocking or reading
/// without end.
#[test]
fn a_document_that_is_not_a_regular_file_is_refused() {
    let dir = std::env::temp_dir().join(format!("flagrail-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let fifo = dir.join("flags.json");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    for path in [fifo.to_str().expect("utf-8"), "/dev/zero"] {
        for command in ["validate", "lint"] {
            let out = flagrail(&[command, path]);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{command} {path}: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains("not a regular file"),
                "{}",
                stderr(&out)
            );
        }
        let out = flagrail(&["kill", path, "--all", "--reason", "x"]);
        assert_eq!(out.status.code(), Some(1), "kill {path}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not a regular file"),
            "{}",
            stderr(&out)
        );
    }
    // Nothing was created beside them (a lock file in /dev would be a mess).
    assert!(!Path::new("/dev/.zero.lock").exists());
    let beside: Vec<_> = std::fs::read_dir(&dir).expect("dir").collect();
    assert_eq!(beside.len(), 1, "only the FIFO: {beside:?}");
}
