//! The `flagrail` command, run as a process.

use flagrail_core::EvalOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

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

fn temp_copy(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flagrail-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("flags.json");
    std::fs::copy(example(), &path).expect("copy example");
    path
}

#[test]
fn validate_accepts_the_example_and_lists_every_problem_of_a_bad_document() {
    let ok = flagrail(&["validate", example().to_str().expect("utf-8")]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("valid (revision 2026-11-21.1, 3 flags, 3 segments)"));

    let path = temp_copy("validate");
    std::fs::write(
        &path,
        json!({ "flags": { "support-bot": {
            "variants": { "a": {} }, "default": "a",
            "rules": [ { "serve": "a" }, { "serve": "a" },
                       { "when": { "attr": "plan", "op": "equalz", "value": "x" }, "serve": "b" } ],
            "ownr": "me",
        }}})
        .to_string(),
    )
    .expect("write");
    let bad = flagrail(&["validate", path.to_str().expect("utf-8")]);
    assert_eq!(bad.status.code(), Some(1));
    let err = stderr(&bad);
    assert!(
        err.contains(
            "flags.support-bot.rules[2].when.op: unknown operator \"equalz\" [UNKNOWN_OPERATOR]"
        ),
        "{err}"
    );
    assert!(
        err.contains("flags.support-bot.ownr: unknown field \"ownr\" (did you mean \"owner\"?)"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "{err}");

    std::fs::write(&path, "{\n  \"flags\": {,\n}").expect("write");
    let syntax = flagrail(&["validate", path.to_str().expect("utf-8")]);
    assert!(
        stderr(&syntax).contains("invalid JSON at line 2, column 13"),
        "{}",
        stderr(&syntax)
    );
    assert!(stderr(&syntax).contains("[INVALID_JSON]"));

    let missing = flagrail(&["validate", "/no/such/file.json"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("SOURCE_UNREACHABLE"));
}

#[test]
fn bucket_agrees_with_the_vectors() {
    let vectors: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/v1/bucket.json"),
        )
        .expect("vectors"),
    )
    .expect("json");
    for case in vectors["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .step_by(5)
    {
        let unit = match &case["unit"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let total = case["total"].to_string();
        let out = flagrail(&[
            "bucket",
            "--salt",
            case["salt"].as_str().expect("salt"),
            "--unit",
            &unit,
            "--total",
            &total,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stdout(&out).trim(),
            case["bucket"].to_string(),
            "{}",
            case["id"]
        );
    }
    let zero = flagrail(&["bucket", "--salt", "s", "--unit", "u", "--total", "0"]);
    assert_eq!(zero.status.code(), Some(2));
    let default_total = flagrail(&["bucket", "--salt", "support-bot", "--unit", "user-123"]);
    assert_eq!(stdout(&default_total).trim(), "86763");
}

#[test]
fn eval_and_explain_print_the_decision() {
    let file = example();
    let file = file.to_str().expect("utf-8");
    let out = flagrail(&[
        "eval",
        file,
        "--flag",
        "support-bot",
        "--at",
        "2026-11-25T00:00:00Z",
        "--context",
        r#"{"user_id": "user-2", "email": "ana@acme.com"}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result: Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(result["variant"], "v2.2");
    assert_eq!(result["reason"], "TARGETING_MATCH");
    assert_eq!(result["rule_id"], "dogfood");
    assert_eq!(result["revision"], "2026-11-21.1");
    assert_eq!(result["payload"]["model"], "claude-opus-4");

    let out = flagrail(&["eval", file, "--flag", "nope", "--default", "safe"]);
    let result: Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(
        (result["variant"].as_str(), result["reason"].as_str()),
        (Some("safe"), Some("FLAG_NOT_FOUND"))
    );

    let out = flagrail(&[
        "explain",
        file,
        "--flag",
        "support-bot",
        "--context",
        r#"{"user_id": 7, "plan": ["x"]}"#,
        "--at",
        "2026-12-01",
    ]);
    let explained: Value = serde_json::from_str(&stdout(&out)).expect("json");
    let steps = explained["steps"].as_array().expect("steps");
    assert!(
        steps.iter().any(|s| s["attr"] == "plan"
            && s["ignored"]
                .as_str()
                .is_some_and(|w| w.contains("list of strings"))),
        "{steps:?}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s["step"] == "ramp" && s["percent"] == json!(100.0)),
        "{steps:?}"
    );

    let bad = flagrail(&["eval", file, "--flag", "support-bot", "--at", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn kill_rewrites_atomically_audits_and_reaches_a_watching_process() {
    let path = temp_copy("kill");
    let file = path.to_str().expect("utf-8");
    let flags = flagrail_core::Flags::from_file(&path).expect("valid");
    let ctx = json!({ "user_id": "user-5" });
    assert_ne!(
        flags
            .evaluate("support-bot", &ctx, EvalOptions::default())
            .reason,
        flagrail_core::Reason::Killed
    );

    let no_reason = flagrail(&["kill", file, "--flag", "support-bot"]);
    assert_eq!(no_reason.status.code(), Some(2));
    let unknown = flagrail(&["kill", file, "--flag", "ghost", "--reason", "x"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("no flag \"ghost\""));

    let out = flagrail(&[
        "kill",
        file,
        "--flag",
        "support-bot",
        "--reason",
        "wrong refunds",
        "--actor",
        "oncall-ana",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let start = Instant::now();
    while flags
        .evaluate("support-bot", &ctx, EvalOptions::default())
        .reason
        != flagrail_core::Reason::Killed
    {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "the kill did not reach the watcher within 1 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = flags.evaluate("support-bot", &ctx, EvalOptions::default());
    assert_eq!(killed.variant_id(), Some("human"));
    let today = flagrail_core::time::format_date(flagrail_core::time::now_millis());
    let first = flagrail_core::admin::next_revision("2026-11-21.1", &today);
    assert_eq!(killed.revision(), first);

    let out = flagrail(&[
        "unkill",
        file,
        "--flag",
        "support-bot",
        "--actor",
        "oncall-ana",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = flagrail(&["kill", file, "--all", "--reason", "provider outage"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let audit =
        std::fs::read_to_string(path.with_file_name("flags.audit.jsonl")).expect("audit log");
    let records: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["action"], "kill");
    assert_eq!(records[0]["flag"], "support-bot");
    assert_eq!(records[0]["actor"], "oncall-ana");
    assert_eq!(records[0]["reason"], "wrong refunds");
    assert_eq!(records[0]["old_revision"], "2026-11-21.1");
    assert_eq!(records[1]["action"], "unkill");
    assert_eq!(records[1]["old_revision"], records[0]["new_revision"]);
    assert_eq!(records[2]["flag"], "*");
    let second = flagrail_core::admin::next_revision(&first, &today);
    assert_eq!(records[1]["new_revision"], second);
    assert_eq!(
        records[2]["new_revision"],
        flagrail_core::admin::next_revision(&second, &today)
    );
    // The rewritten document is valid and says who killed everything and why.
    let doc =
        flagrail_core::Document::from_slice(&std::fs::read(&path).expect("read")).expect("valid");
    assert!(doc.kill().active);
    assert_eq!(doc.kill().reason.as_deref(), Some("provider outage"));
    // No temp file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    flags.stop_watching();
}

#[test]
fn simulate_shows_a_monotonic_timeline() {
    let file = example();
    let out = flagrail(&[
        "simulate",
        file.to_str().expect("utf-8"),
        "--flag",
        "support-bot",
        "--users",
        "5000",
        "--timeline",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).expect("json");
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 6, "before the start + 5 steps");
    let shares: Vec<u64> = rows
        .iter()
        .map(|r| r["variants"]["v2.2"].as_u64().unwrap_or(0))
        .collect();
    assert!(shares.windows(2).all(|w| w[0] <= w[1]), "{shares:?}");
    assert_eq!(shares[0], 0);
    assert_eq!(shares[5], 5000);
    assert!(
        (25..=75).contains(&shares[1]),
        "about 1 % at step 1: {shares:?}"
    );
    for row in &rows[1..] {
        assert_eq!(
            row["since_previous"]["left_ramp"], 0,
            "no unit leaves a ramp"
        );
    }
    let at = flagrail(&[
        "simulate",
        file.to_str().expect("utf-8"),
        "--flag",
        "support-prompt",
        "--users",
        "10000",
        "--at",
        "2026-11-21",
    ]);
    let text = stdout(&at);
    assert!(text.contains("SPLIT 10000"), "{text}");
}

#[test]
fn lint_reports_hygiene_problems() {
    let path = temp_copy("lint");
    std::fs::write(
        &path,
        json!({ "flags": { "old": {
            "expires": "2020-01-01", "owner": "ml",
            "variants": { "a": {}, "b": {}, "orphan": {} }, "default": "a",
            "rules": [
                { "id": "everyone", "serve": "b" },
                { "id": "never", "when": { "attr": "phone", "op": "exists" }, "serve": "a" },
            ],
        }}})
        .to_string(),
    )
    .expect("write");
    let out = flagrail(&["lint", path.to_str().expect("utf-8")]);
    assert!(out.status.success());
    let text = stdout(&out);
    for code in [
        "EXPIRED_FLAG",
        "UNUSED_VARIANT",
        "SHADOWED_RULE",
        "PERSONAL_DATA",
    ] {
        assert!(text.contains(code), "{code} missing from:\n{text}");
    }
    assert!(text.contains("flags.old.variants.orphan"), "{text}");
    assert!(text.contains("flags.old.rules[1]"), "{text}");
    let strict = flagrail(&["lint", path.to_str().expect("utf-8"), "--strict"]);
    assert_eq!(strict.status.code(), Some(1));
}

#[test]
fn concurrent_kills_serialize_and_symlinks_survive() {
    let real = temp_copy("concurrent");
    let link = real.with_file_name("live.json");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let link_text = link.to_str().expect("utf-8").to_string();
    let workers: Vec<_> = ["support-bot", "support-prompt", "support-temperature"]
        .into_iter()
        .map(|flag| {
            let link_text = link_text.clone();
            std::thread::spawn(move || {
                flagrail(&[
                    "kill", &link_text, "--flag", flag, "--reason", "drill", "--actor", "ci",
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
    let doc =
        flagrail_core::Document::from_slice(&std::fs::read(&real).expect("read")).expect("valid");
    for flag in doc.flags() {
        assert!(flag.kill.active, "the kill of {} was lost", flag.key);
    }
    // One audit log per document, named after the real file, whichever path the kill was given.
    assert!(!link.with_file_name("live.audit.jsonl").exists());
    let audit = std::fs::read_to_string(real.with_file_name("flags.audit.jsonl")).expect("audit");
    let revisions: std::collections::BTreeSet<String> = audit
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["new_revision"]
                .as_str()
                .expect("rev")
                .to_string()
        })
        .collect();
    assert_eq!(
        revisions.len(),
        3,
        "each kill got its own revision: {audit}"
    );
    let empty_actor = flagrail(&[
        "kill",
        &link_text,
        "--flag",
        "support-bot",
        "--reason",
        "x",
        "--actor",
        " ",
    ]);
    assert_eq!(empty_actor.status.code(), Some(2));
}

#[test]
fn drill_trips_the_guardrail_on_an_outage_and_not_on_noise() {
    let file = example();
    let drill = |rate: &str| {
        let out = flagrail(&[
            "drill",
            file.to_str().expect("utf-8"),
            "--flag",
            "support-bot",
            "--variant",
            "v2.2",
            "--error-rate",
            rate,
            "--requests",
            "3000",
            "--context",
            r#"{"plan": "pro"}"#,
            "--at",
            "2026-11-25T10:00:00Z",
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str::<Value>(&stdout(&out)).expect("json")
    };
    let trips = |report: &Value| -> Vec<(String, u64)> {
        report["guardrail_events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["event"]["type"] == "guardrail_trip")
            .map(|e| {
                let id = e["event"]["guardrail"].as_str().expect("id").to_string();
                (id, e["event"]["samples"].as_u64().expect("samples"))
            })
            .collect()
    };
    // An outage: every v2.2 call fails. The outage guardrail (fallback above 25 %, 20 samples)
    // trips on the 20th failure, and users who would get v2.2 are served the fallback.
    let outage = drill("1.0");
    assert_eq!(trips(&outage), [("v22-outage".to_string(), 20)]);
    assert_eq!(
        outage["evaluation_now"]["variants"].get("v2.2"),
        None,
        "{outage}"
    );
    assert!(
        outage["evaluation_now"]["reasons"]["GUARDRAIL"]
            .as_u64()
            .expect("rerouted")
            > 0
    );
    // A subtle regression: 8 % errors. Only the 3 % guardrail trips, and it halts the ramp.
    let subtle = drill("0.08");
    let subtle_trips = trips(&subtle);
    assert_eq!(subtle_trips.len(), 1, "{subtle_trips:?}");
    assert_eq!(subtle_trips[0].0, "v22-errors");
    assert!(
        subtle_trips[0].1 >= 50,
        "at least min_samples: {subtle_trips:?}"
    );
    // Noise: 1 % errors never trips the 3 % guardrail.
    let noise = drill("0.01");
    assert!(
        noise["guardrail_events"]
            .as_array()
            .expect("events")
            .is_empty(),
        "{}",
        noise["guardrail_events"]
    );
    // A bad command line is a usage error.
    let bad = flagrail(&[
        "drill",
        file.to_str().expect("utf-8"),
        "--flag",
        "support-bot",
        "--variant",
        "nope",
    ]);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
}
