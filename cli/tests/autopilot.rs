//! `flagrail autopilot`, `forensics` and `report` on a small recorded rollout: the decision is
//! printed with its evidence, written (or not, with `--dry-run`) through the audited rewrite,
//! a bounded daemon stops, and forensics lists the runs a variant served.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

const DOC: &str = r#"{
  "revision": "r1",
  "flags": {
    "bot": {
      "variants": { "stable": {}, "v2": {} },
      "default": "stable",
      "rules": [
        {
          "id": "canary",
          "ramp": {
            "variant": "v2",
            "baseline": "stable",
            "start": "2026-12-01T09:00:00Z",
            "paused_at": "2026-12-01T09:00:00Z",
            "steps": [ { "percent": 5, "hold": "1h" }, { "percent": 100 } ],
            "autopilot": {
              "holds": [ { "min": "30m", "max": "4h" } ],
              "min_units_per_arm": 50,
              "metrics": [ { "metric": "quality", "difference": 0.03 } ]
            }
          }
        }
      ]
    }
  }
}
"#;

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("flagrail-autopilot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// 1000 control and 60 candidate units in the first 20 minutes of the step; the candidate's
/// quality is 0.2 lower (per-unit spread 0.05): a regression the first look proves.
fn events(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for i in 0..1060u32 {
        let (variant, quality) = if i < 60 { ("v2", 0.6) } else { ("stable", 0.8) };
        let wobble = f64::from(i % 7) * 0.015 - 0.045;
        let time = format!("2026-12-01T09:{:02}:{:02}Z", i / 60 % 20, i % 60);
        let run = format!("run-{i}");
        for event in [
            json!({"type": "exposure", "time": time, "run_id": run, "flag": "bot", "variant": variant,
                   "revision": "r1", "reason": "SPLIT", "rule_id": "canary", "bucket": i,
                   "model": null, "shadow": false, "unit": format!("u{i}"), "segment": if i % 2 == 0 { "eu" } else { "us" }}),
            json!({"type": "outcome", "time": time, "run_id": run, "flag": "bot", "variant": variant,
                   "revision": "r1", "rule_id": "canary", "attempt": 1, "fallback": false, "shadow": false,
                   "outcome": "success", "error_kind": null, "latency_ms": 500.0, "cost": 0.001,
                   "unit": format!("u{i}"), "segment": null}),
            json!({"type": "feedback", "time": time, "run_id": run, "flag": "bot", "variant": variant,
                   "revision": "r1", "model": null, "segment": null, "score": null, "quality": quality + wobble}),
        ] {
            text.push_str(&event.to_string());
            text.push('\n');
        }
    }
    let path = dir.join("events.jsonl");
    std::fs::write(&path, text).expect("events");
    path
}

fn flagrail(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flagrail"))
        .args(args)
        .output()
        .expect("run flagrail")
}

fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("{err}: {l}")))
        .collect()
}

#[test]
fn a_proven_regression_is_printed_with_its_evidence_and_written_once() {
    let dir = scratch("write");
    let doc = dir.join("flags.json");
    std::fs::write(&doc, DOC).expect("doc");
    let events = events(&dir);
    let (doc_s, events_s) = (doc.to_str().expect("path"), events.to_str().expect("path"));

    let dry = flagrail(&[
        "autopilot",
        doc_s,
        "--events",
        events_s,
        "--once",
        "--dry-run",
        "--json",
        "--at",
        "2026-12-01T09:30:00Z",
    ]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let decided = lines(&dry);
    assert_eq!(decided.len(), 1);
    let d = &decided[0];
    assert_eq!(
        (
            d["flag"].as_str(),
            d["step"].as_u64(),
            d["decision"].as_str()
        ),
        (Some("bot"), Some(0), Some("roll_back"))
    );
    assert_eq!(
        d["evidence"]["samples"],
        json!({"control": 1000, "candidate": 60})
    );
    let quality = &d["evidence"]["metrics"][0];
    assert_eq!(quality["limit"], json!(-0.03));
    let interval = quality["interval"].as_array().expect("interval");
    assert!(interval[1].as_f64().expect("high") < 0.0, "{quality}");
    assert_eq!(d["written"], Value::Null);
    assert_eq!(
        std::fs::read_to_string(&doc).expect("doc"),
        DOC,
        "a dry run writes nothing"
    );

    // A bounded daemon replaying the events: the first look writes, the later ones see a
    // rolled-back ramp and decide nothing.
    let daemon = flagrail(&[
        "autopilot",
        doc_s,
        "--events",
        events_s,
        "--at",
        "2026-12-01T09:30:00Z",
        "--interval",
        "600",
        "--max-looks",
        "3",
    ]);
    assert!(
        daemon.status.success(),
        "{}",
        String::from_utf8_lossy(&daemon.stderr)
    );
    let text = String::from_utf8_lossy(&daemon.stdout);
    let printed: Vec<&str> = text.lines().collect();
    assert_eq!(printed.len(), 3, "{text}");
    assert!(
        printed[0].contains("roll_back (proven_regression)")
            && printed[0].contains("written, revision 2026-12-01.1"),
        "{text}"
    );
    assert!(
        printed[1].ends_with("rolled_back, nothing to decide"),
        "{text}"
    );
    let after = std::fs::read_to_string(&doc).expect("doc");
    let changed: Vec<&str> = after
        .lines()
        .filter(|l| !DOC.lines().any(|b| b == *l))
        .collect();
    assert_eq!(changed.len(), 3, "{changed:?}");
    assert_eq!(changed[0], "  \"revision\": \"2026-12-01.1\",");
    assert_eq!(changed[1], "            \"rolled_back\": true,");
    assert!(
        changed[2].starts_with(
            "            \"last_decision\": {\"decision\":\"roll_back\",\"reason\":\"proven_regression\",\"at\":\"2026-12-01T09:30:00Z\""
        ),
        "{changed:?}"
    );
    // explain shows the last decision beside the state, from the document.
    let explained = flagrail(&[
        "explain",
        doc_s,
        "--flag",
        "bot",
        "--context",
        "{\"user_id\": \"u1\"}",
        "--at",
        "2026-12-01T09:31:00Z",
    ]);
    let explained: Value = serde_json::from_slice(&explained.stdout).expect("explain json");
    let ramp_step = explained["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["step"] == "ramp"))
        .expect("a ramp step");
    let last = &ramp_step["autopilot"]["last_decision"];
    assert_eq!(ramp_step["autopilot"]["state"], "rolled_back");
    assert_eq!(last["decision"], "roll_back", "{explained}");
    assert_eq!(last["at"], "2026-12-01T09:30:00Z");
    assert_eq!(last["samples"]["candidate"], 60);
    assert_eq!(last["metrics"][0]["status"], "regression");
    let audit = std::fs::read_to_string(dir.join("flags.audit.jsonl")).expect("audit");
    let records: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["action"], "autopilot");
    assert_eq!(records[0]["decision"], "roll_back");
    assert_eq!(records[0]["actor"], "autopilot");
    assert_eq!(records[0]["evidence"]["samples"]["candidate"], 60);

    // The report draws the rollback from the audit log.
    let report = dir.join("report.html");
    let out = flagrail(&[
        "report",
        doc_s,
        "--events",
        events_s,
        "--out",
        report.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&report).expect("report");
    assert!(html.contains("data-series=\"decision\""));
    assert!(html.contains("autopilot roll_back (proven_regression) at step 0"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn forensics_lists_the_runs_a_variant_served_and_counts_them() {
    let dir = scratch("forensics");
    let events = events(&dir);
    let events_s = events.to_str().expect("path");
    let runs = lines(&flagrail(&[
        "forensics",
        "--events",
        events_s,
        "--flag",
        "bot",
        "--variant",
        "v2",
    ]));
    assert_eq!(runs.len(), 60);
    assert_eq!(runs[0]["run_id"], "run-0");
    assert_eq!(runs[0]["unit"], "u0");
    assert_eq!(runs[0]["revision"], "r1");
    assert_eq!(runs[0]["outcome"], "success");
    let window = lines(&flagrail(&[
        "forensics",
        "--events",
        events_s,
        "--flag",
        "bot",
        "--since",
        "2026-12-01T09:00:00Z",
        "--until",
        "2026-12-01T09:00:30Z",
    ]));
    assert_eq!(window.len(), 30);
    let summary = lines(&flagrail(&[
        "forensics",
        "--events",
        events_s,
        "--flag",
        "bot",
        "--variant",
        "v2",
        "--summary",
    ]));
    assert_eq!(summary.len(), 2);
    assert_eq!(
        (summary[0]["segment"].as_str(), summary[0]["runs"].as_u64()),
        (Some("eu"), Some(30))
    );
    let both = flagrail(&[
        "forensics",
        "--events",
        events_s,
        "--flag",
        "bot",
        "--revision",
        "r1",
        "--since",
        "2026-12-01",
    ]);
    assert_eq!(both.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn redis_input_is_either_or_with_events_and_an_unreachable_redis_has_a_stable_code() {
    let both = flagrail(&[
        "autopilot",
        "flags.json",
        "--events",
        "events.jsonl",
        "--redis",
        "redis://127.0.0.1:1/0",
        "--once",
    ]);
    assert_eq!(both.status.code(), Some(2));
    let out = flagrail(&["autopilot", "--redis", "redis://127.0.0.1:1/0", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("REDIS_UNAVAILABLE"), "{stderr}");
}
