//! `flagrail diff OLD NEW`, run as a process: the review text and JSON, the exit code of a
//! dangerous change and `--allow`, a given population, bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

fn flagrail(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flagrail"))
        .args(args)
        .output()
        .expect("run flagrail")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn example() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/flags.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("example")).expect("json")
}

/// A scratch directory of this test with `old.json` (the example) and `new.json` (`edit`
/// applied to it).
fn pair(name: &str, edit: impl FnOnce(&mut Value)) -> (PathBuf, String, String) {
    let dir = std::env::temp_dir().join(format!("flagrail-diff-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let old = example();
    let mut new = old.clone();
    edit(&mut new);
    let write = |file: &str, value: &Value| {
        let path = dir.join(file);
        std::fs::write(&path, serde_json::to_string_pretty(value).expect("json")).expect("write");
        path.to_str().expect("utf-8").to_string()
    };
    let (o, n) = (write("old.json", &old), write("new.json", &new));
    (dir, o, n)
}

const AT: &str = "2026-11-21T12:00:00Z";

fn jump(new: &mut Value) {
    new["revision"] = json!("next");
    new["flags"]["support-bot"]["rules"][3]["ramp"]["steps"] =
        json!([{ "percent": 50, "hold": "24h" }, { "percent": 100 }]);
}

#[test]
fn a_ramp_jump_exits_3_unless_allowed() {
    let (dir, old, new) = pair("jump", jump);
    let out = flagrail(&["diff", &old, &new, "--at", AT, "--users", "4000"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("flag support-bot"), "{stdout}");
    assert!(stdout.contains("ramp changed \"canary\""), "{stdout}");
    assert!(stdout.contains("stable -> v2.2"), "{stdout}");
    assert!(stdout.contains("RAMP_JUMP support-bot"), "{stdout}");
    assert!(text(&out.stderr).contains("approve with --allow"));
    let allowed = flagrail(&["diff", &old, &new, "--at", AT, "--users", "4000", "--allow"]);
    assert_eq!(allowed.status.code(), Some(0));
    // Seeded: the same command prints the same review.
    assert_eq!(allowed.stdout, out.stdout);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn json_output_carries_changes_moves_and_dangers() {
    let (dir, old, new) = pair("json", jump);
    let out = flagrail(&[
        "diff", &old, &new, "--at", AT, "--users", "2000", "--json", "--allow",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let review: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(review["units"], json!(2000));
    assert_eq!(review["new_revision"], json!("next"));
    assert_eq!(review["dangers"][0]["code"], json!("RAMP_JUMP"));
    let bot = &review["flags"][0];
    assert_eq!(bot["flag"], json!("support-bot"));
    assert!(bot["moved"].as_u64().expect("moved") > 0);
    for m in bot["moves"].as_array().expect("moves") {
        assert_eq!(
            (m["from"].as_str(), m["to"].as_str()),
            (Some("stable"), Some("v2.2"))
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_given_population_is_evaluated_unit_by_unit() {
    // Enterprise units stay on stable whatever the ramp: nothing moves for them.
    let (dir, old, new) = pair("population", jump);
    let population = dir.join("users.jsonl");
    let lines: Vec<String> = (0..200)
        .map(|i| json!({ "user_id": format!("u-{i}"), "plan": "enterprise" }).to_string())
        .collect();
    std::fs::write(&population, lines.join("\n") + "\n").expect("write");
    let population = population.to_str().expect("utf-8");
    let out = flagrail(&[
        "diff",
        &old,
        &new,
        "--at",
        AT,
        "--population",
        population,
        "--json",
        "--allow",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let review: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(review["units"], json!(200));
    assert_eq!(review["flags"][0]["moved"], json!(0));
    // Still dangerous: the schedule itself jumped.
    assert_eq!(review["dangers"][0]["code"], json!("RAMP_JUMP"));
    std::fs::write(dir.join("bad.jsonl"), "{\"user_id\": \"a\"}\n[1]\n").expect("write");
    let bad = dir.join("bad.jsonl");
    let out = flagrail(&[
        "diff",
        &old,
        &new,
        "--population",
        bad.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    // The core's text, named by the file (not "population: " a second time).
    let expected = format!(
        "--population {}: context 2 is not a JSON object",
        bad.display()
    );
    assert!(
        text(&out.stderr).contains(&expected),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn no_change_exits_0_and_an_invalid_document_exits_1() {
    let (dir, old, _) = pair("same", |_| {});
    let out = flagrail(&["diff", &old, &old]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("no change"));
    let (dir2, old2, bad) = pair("invalid", |new| {
        new["flags"]["support-bot"]["default"] = json!("nope")
    });
    let out = flagrail(&["diff", &old2, &bad]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("flags.support-bot.default"),
        "{}",
        text(&out.stderr)
    );
    let out = flagrail(&["diff", &old2]);
    assert_eq!(out.status.code(), Some(2));
    let out = flagrail(&["diff", &old2, &old2, "--users", "0"]);
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(dir).ok();
    std::fs::remove_dir_all(dir2).ok();
}

#[test]
fn a_kill_that_calls_the_model_and_a_salt_change_are_dangerous() {
    let (dir, old, new) = pair("kill-salt", |new| {
        new["flags"]["support-bot"]["kill"]["serve"] = json!("stable");
        new["flags"]["support-bot"]["salt"] = json!("support-bot-2");
    });
    let out = flagrail(&["diff", &old, &new, "--at", AT, "--users", "1000", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let review: Value = serde_json::from_slice(&out.stdout).expect("json");
    let codes: Vec<&str> = review["dangers"]
        .as_array()
        .expect("dangers")
        .iter()
        .filter_map(|d| d["code"].as_str())
        .collect();
    assert_eq!(codes, ["KILL_CALLS_MODEL", "REBUCKET"]);
    std::fs::remove_dir_all(dir).ok();
}
