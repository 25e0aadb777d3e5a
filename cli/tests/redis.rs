//! `flagrail push`, and `kill` / `unkill` / `status` with `--redis`, against a real
//! redis-server and a local 3-node Redis Cluster.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flagrail_fleet::push::Publisher;
use flagrail_fleet::testing::{RedisCluster, RedisServer};
use flagrail_fleet::Timeouts;
use flagrail_sources::PrivateKey;
use serde_json::Value;

fn flagrail(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flagrail"))
        .current_dir(dir)
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

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("flagrail-cli-redis-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/flags.json"),
        dir.join("flags.json"),
    )
    .expect("copy example");
    dir
}

fn stored_document(url: &str) -> Value {
    let mut publisher = Publisher::open(url, "flagrail:document", Timeouts::default()).unwrap();
    serde_json::from_slice(&publisher.read().unwrap().document.unwrap()).unwrap()
}

fn push_kill_status(url: &str, name: &str) {
    let dir = temp_dir(name);
    let pushed = flagrail(
        &dir,
        &["push", "flags.json", "--redis", url, "--actor", "ana"],
    );
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert!(
        stdout(&pushed).contains("push counter 1"),
        "{}",
        stdout(&pushed)
    );

    let killed = flagrail(
        &dir,
        &[
            "kill",
            "--redis",
            url,
            "--flag",
            "support-bot",
            "--reason",
            "bad answers",
            "--actor",
            "ana",
        ],
    );
    assert!(killed.status.success(), "{}", stderr(&killed));
    assert!(
        stdout(&killed).contains("push counter 2"),
        "{}",
        stdout(&killed)
    );
    assert_eq!(
        stored_document(url)["flags"]["support-bot"]["kill"]["active"],
        Value::Bool(true)
    );

    // Already killed: nothing written, exit 0.
    let again = flagrail(
        &dir,
        &[
            "kill",
            "--redis",
            url,
            "--flag",
            "support-bot",
            "--reason",
            "x",
        ],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("nothing written"),
        "{}",
        stdout(&again)
    );

    let status = flagrail(&dir, &["status", "--redis", url]);
    assert!(status.status.success(), "{}", stderr(&status));
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(status["redis_revision"], Value::from(2));
    assert_eq!(status["document"]["valid"], Value::Bool(true));
    let actions: Vec<&str> = status["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["record"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["kill", "push"]);

    // The same records in the local log, with the push counter.
    let local: Vec<Value> = std::fs::read_to_string(dir.join("flagrail.audit.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(local.len(), 2);
    assert_eq!(local[1]["action"], "kill");
    assert_eq!(local[1]["reason"], "bad answers");
    assert_eq!(local[1]["redis_revision"], Value::from(2));

    let unkilled = flagrail(&dir, &["unkill", "--redis", url, "--flag", "support-bot"]);
    assert!(unkilled.status.success(), "{}", stderr(&unkilled));
    assert_eq!(
        stored_document(url)["flags"]["support-bot"]["kill"]["active"],
        Value::Bool(false)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn push_kill_unkill_and_status_on_a_single_server() {
    let server = RedisServer::start().unwrap();
    push_kill_status(&server.url(), "single");
}

#[test]
fn push_kill_unkill_and_status_on_a_cluster() {
    let cluster = RedisCluster::start().unwrap();
    push_kill_status(&cluster.url(), "cluster");
}

#[test]
fn push_refuses_bad_and_badly_signed_documents_before_writing() {
    let server = RedisServer::start().unwrap();
    let url = server.url();
    let dir = temp_dir("refuse");
    std::fs::write(
        dir.join("bad.json"),
        br#"{"flags":{"x":{"variants":{},"default":"y"}}}"#,
    )
    .unwrap();
    let bad = flagrail(&dir, &["push", "bad.json", "--redis", &url]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("flags.x"), "{}", stderr(&bad));

    let key = PrivateKey::generate().unwrap();
    std::fs::write(dir.join("flagrail.pub"), key.verify_key().to_text()).unwrap();
    let unsigned = flagrail(
        &dir,
        &[
            "push",
            "flags.json",
            "--redis",
            &url,
            "--verify-key",
            "flagrail.pub",
        ],
    );
    assert_eq!(unsigned.status.code(), Some(1));
    assert!(
        stderr(&unsigned).contains("SIGNATURE_INVALID"),
        "{}",
        stderr(&unsigned)
    );
    let mut publisher = Publisher::open(&url, "flagrail:document", Timeouts::default()).unwrap();
    assert_eq!(publisher.read().unwrap().revision, 0, "nothing was written");

    let bytes = std::fs::read(dir.join("flags.json")).unwrap();
    std::fs::write(dir.join("flags.json.sig"), key.sign(&bytes)).unwrap();
    let signed = flagrail(
        &dir,
        &[
            "push",
            "flags.json",
            "--redis",
            &url,
            "--verify-key",
            "flagrail.pub",
        ],
    );
    assert!(signed.status.success(), "{}", stderr(&signed));
    assert!(publisher.read().unwrap().signature.is_some());

    let status = flagrail(
        &dir,
        &["status", "--redis", &url, "--verify-key", "flagrail.pub"],
    );
    assert!(status.status.success(), "{}", stderr(&status));
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(status["signature_valid"], Value::Bool(true));
    // A signed document in Redis cannot be killed without re-signing it.
    let refused = flagrail(&dir, &["kill", "--redis", &url, "--all", "--reason", "r"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("--key"), "{}", stderr(&refused));
    std::fs::write(dir.join("flagrail.key"), key.to_text()).unwrap();
    let resigned = flagrail(
        &dir,
        &[
            "kill",
            "--redis",
            &url,
            "--all",
            "--reason",
            "r",
            "--key",
            "flagrail.key",
            "--verify-key",
            "flagrail.pub",
        ],
    );
    assert!(resigned.status.success(), "{}", stderr(&resigned));
    let stored = publisher.read().unwrap();
    key.verify_key()
        .verify("t", &stored.document.unwrap(), stored.signature.as_deref())
        .unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
