//! Signed file sources: `<path>.sig` checked with the same rules and codes as `<url>.sig`, a
//! document and its signature judged as a pair on every reload (never a mismatched pair live,
//! no flapping), and `kill` re-signing under the document's lock.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flagrail_core::admin::{kill_file, lock_path, KillChange, KillOptions, Target};
use flagrail_core::live::{signature_path, DocumentVerifier, FileOptions};
use flagrail_core::Flags;
use flagrail_sources::{PrivateKey, VerifyKey};
use serde_json::json;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "flagrail-file-signature-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn document(revision: &str) -> String {
    json!({
        "revision": revision,
        "flags": { "chat": {
            "variants": { "a": {}, "off": { "ai": false } },
            "default": "a",
            "kill": { "active": false, "serve": "off" },
        }}
    })
    .to_string()
}

/// Replaces `path` the way deploy tools do (a new file renamed over the old one).
fn replace(path: &Path, bytes: &[u8]) {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, bytes).expect("write");
    std::fs::rename(&temp, path).expect("rename");
}

fn sign(key: &PrivateKey, path: &Path) {
    let bytes = std::fs::read(path).expect("document");
    replace(&signature_path(path), key.sign(&bytes).as_bytes());
}

fn verifier(key: &PrivateKey) -> Option<Arc<dyn DocumentVerifier>> {
    Some(Arc::new(key.verify_key()))
}

/// A handle that never reloads by itself: the test drives every check.
fn open(path: &Path, key: &PrivateKey) -> flagrail_core::Result<Flags> {
    Flags::from_file_with(
        path,
        FileOptions {
            reload: false,
            verifier: verifier(key),
            ..FileOptions::default()
        },
    )
}

fn last_code(flags: &Flags) -> Option<&'static str> {
    flags.status().last_error.map(|f| f.error.code())
}

#[test]
fn a_file_is_served_only_with_a_matching_signature_by_the_key() {
    let dir = temp_dir("startup");
    let path = dir.join("flags.json");
    let key = PrivateKey::generate().expect("key");
    replace(&path, document("r1").as_bytes());

    // Missing.
    let err = open(&path, &key).unwrap_err();
    assert_eq!(err.code(), "SIGNATURE_INVALID");
    assert!(err.to_string().contains("no signature"), "{err}");
    assert!(err.to_string().contains("flags.json"), "{err}");

    // Good.
    sign(&key, &path);
    let flags = open(&path, &key).expect("signed");
    assert_eq!(flags.status().revision, "r1");

    // Another key.
    let other = PrivateKey::generate().expect("key");
    assert_eq!(open(&path, &other).unwrap_err().code(), "SIGNATURE_INVALID");

    // One byte changed after signing (still a valid document).
    replace(&path, document("r1").replace("r1", "r7").as_bytes());
    assert_eq!(open(&path, &key).unwrap_err().code(), "SIGNATURE_INVALID");

    // The signature of an older revision next to a newer document.
    replace(&path, document("r1").as_bytes());
    sign(&key, &path);
    let old_signature = std::fs::read(signature_path(&path)).expect("sig");
    replace(&path, document("r2").as_bytes());
    replace(&signature_path(&path), &old_signature);
    assert_eq!(open(&path, &key).unwrap_err().code(), "SIGNATURE_INVALID");

    // Not a signature at all, and a .sig that is not a regular file.
    replace(&signature_path(&path), b"hello");
    assert_eq!(open(&path, &key).unwrap_err().code(), "SIGNATURE_INVALID");
    std::fs::remove_file(signature_path(&path)).expect("rm");
    std::fs::create_dir(signature_path(&path)).expect("dir");
    assert_eq!(open(&path, &key).unwrap_err().code(), "NOT_REGULAR_FILE");

    // Without a verify key the signature is not looked at.
    assert!(Flags::from_file_with(
        &path,
        FileOptions {
            reload: false,
            ..FileOptions::default()
        }
    )
    .is_ok());
}

/// A document replaced before its `.sig`: rejected (once, with the reason) while the pair does
/// not match, the last good one serving; accepted once both match; never back to a bad state.
#[test]
fn a_document_updated_before_its_signature_waits_for_it_without_flapping() {
    let dir = temp_dir("pair");
    let path = dir.join("flags.json");
    let key = PrivateKey::generate().expect("key");
    replace(&path, document("r1").as_bytes());
    sign(&key, &path);
    let flags = open(&path, &key).expect("signed");

    let (reloads, rejected) = (flags.status().reloads, flags.status().rejected);
    replace(&path, document("r2").as_bytes());
    assert!(flags.reload_if_changed().is_err());
    let status = flags.status();
    assert_eq!(status.revision, "r1", "the last good document stays");
    assert_eq!(last_code(&flags), Some("SIGNATURE_INVALID"));
    assert_eq!(status.rejected, rejected + 1);
    // Nothing changed since: no new verdict, no second rejection.
    for _ in 0..3 {
        assert!(!flags.reload_if_changed().expect("unchanged"));
    }
    assert_eq!(flags.status().rejected, rejected + 1);

    // The signature lands: the pair goes live.
    sign(&key, &path);
    assert!(flags.reload_if_changed().expect("pair"));
    let status = flags.status();
    assert_eq!(status.revision, "r2");
    assert_eq!(status.reloads, reloads + 1);
    assert!(status.last_error.is_none());
    for _ in 0..3 {
        assert!(!flags.reload_if_changed().expect("unchanged"));
        assert_eq!(flags.status().revision, "r2");
    }

    // The signature first this time (old document, new signature): rejected, then accepted.
    let next = document("r3");
    replace(&signature_path(&path), key.sign(next.as_bytes()).as_bytes());
    assert!(flags.reload_if_changed().is_err());
    assert_eq!(flags.status().revision, "r2");
    replace(&path, next.as_bytes());
    assert!(flags.reload_if_changed().expect("pair"));
    assert_eq!(flags.status().revision, "r3");

    // The signature removed: the live document stays; status says why.
    std::fs::remove_file(signature_path(&path)).expect("rm");
    let err = flags.reload_if_changed().unwrap_err();
    assert_eq!(err.code(), "SIGNATURE_INVALID");
    assert!(err.to_string().contains("no signature"), "{err}");
    assert_eq!(flags.status().revision, "r3");
}

/// While a rewrite holds the document's lock (a kill between replacing the document and its
/// signature), a mismatch is not a verdict: nothing is reported, the pair is read again later.
#[test]
fn a_mismatch_under_a_held_rewrite_lock_is_not_reported() {
    let dir = temp_dir("lock");
    let path = dir.join("flags.json");
    let key = PrivateKey::generate().expect("key");
    replace(&path, document("r1").as_bytes());
    sign(&key, &path);
    let flags = open(&path, &key).expect("signed");
    let rejected = flags.status().rejected;

    let real = std::fs::canonicalize(&path).expect("real");
    let lock = File::create(lock_path(&real)).expect("lock file");
    lock.lock().expect("lock");
    replace(&path, document("r2").as_bytes());
    assert!(!flags.reload_if_changed().expect("deferred"));
    assert!(!flags.reload_if_changed().expect("deferred"));
    assert_eq!(
        flags.status().rejected,
        rejected,
        "no rejection while in flux"
    );
    assert_eq!(flags.status().revision, "r1");
    // The writer finishes: signature, then unlock.
    sign(&key, &path);
    drop(lock);
    assert!(flags.reload_if_changed().expect("pair"));
    assert_eq!(flags.status().revision, "r2");
    assert_eq!(flags.status().rejected, rejected);

    // Released without a matching signature: now it is a verdict.
    replace(&path, document("r3").as_bytes());
    assert!(flags.reload_if_changed().is_err());
    assert_eq!(flags.status().rejected, rejected + 1);
    assert_eq!(flags.status().revision, "r2");
}

fn change(active: bool) -> KillChange<'static> {
    KillChange {
        target: Target::Flag("chat"),
        active,
        reason: active.then_some("outage"),
        actor: "ana",
        at: 1_795_000_000_000,
    }
}

fn with_key(key: PrivateKey, force: bool) -> KillOptions {
    KillOptions {
        force,
        signer: Some(Arc::new(key)),
        ..KillOptions::default()
    }
}

#[test]
fn kill_re_signs_a_signed_document_and_the_watcher_takes_it() {
    let dir = temp_dir("kill");
    let path = dir.join("flags.json");
    let key_text = PrivateKey::generate().expect("key").to_text();
    let key = || PrivateKey::parse(&key_text).expect("key");
    replace(&path, document("r1").as_bytes());
    sign(&key(), &path);
    let flags = open(&path, &key()).expect("signed");

    let outcome = kill_file(&path, &change(true), &with_key(key(), false)).expect("kill");
    assert!(outcome.changed);
    assert_eq!(
        outcome.signature.as_deref(),
        Some(
            std::fs::canonicalize(signature_path(&path))
                .expect("sig")
                .as_path()
        )
    );
    assert!(flags.reload_if_changed().expect("re-signed pair"));
    assert_eq!(flags.status().revision, outcome.new_revision);
    assert!(flags.document().flag("chat").expect("chat").kill.active);
    let audit = std::fs::read_to_string(&outcome.audit_log).expect("audit");
    assert!(audit.contains("\"signed\":true"), "{audit}");

    let unkill = kill_file(&path, &change(false), &with_key(key(), false)).expect("unkill");
    assert!(flags.reload_if_changed().expect("re-signed pair"));
    assert_eq!(flags.status().revision, unkill.new_revision);
    assert!(flags.status().last_error.is_none());
}

#[test]
fn kill_of_a_signed_document_without_its_key_is_refused_unless_forced() {
    let dir = temp_dir("refuse");
    let path = dir.join("flags.json");
    let key = PrivateKey::generate().expect("key");
    replace(&path, document("r1").as_bytes());
    sign(&key, &path);
    let before = std::fs::read(&path).expect("doc");
    let flags = open(&path, &key).expect("signed");

    // No key.
    let err = kill_file(&path, &change(true), &KillOptions::default()).unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT");
    assert!(err.to_string().contains("--key"), "{err}");
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    assert_eq!(std::fs::read(&path).expect("doc"), before);

    // Another key: re-signing would be rejected by every verifying process.
    let other = PrivateKey::generate().expect("key");
    let err = kill_file(&path, &change(true), &with_key(other, false)).unwrap_err();
    assert!(
        err.to_string().contains("not this key's signature"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).expect("doc"), before);

    // Edited after signing, then killed with the right key: refused too (the edit would go
    // live on every verifying process with the kill).
    let edited = document("r1").replace("\"a\":{}", "\"a\":{\"model\":\"x\"}");
    replace(&path, edited.as_bytes());
    let err = kill_file(
        &path,
        &change(true),
        &with_key(PrivateKey::parse(&key.to_text()).expect("key"), false),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("edited after it was signed"),
        "{err}"
    );
    replace(&path, &before);

    // Forced without a key: written, the old signature left; verifying processes keep the
    // previous revision and say why.
    let outcome = kill_file(
        &path,
        &change(true),
        &KillOptions {
            force: true,
            ..KillOptions::default()
        },
    )
    .expect("forced");
    assert!(outcome.changed);
    assert!(outcome.signature.is_none());
    assert!(
        outcome.warnings.iter().any(|w| w.contains("REJECT")),
        "{:?}",
        outcome.warnings
    );
    assert!(flags.reload_if_changed().is_err());
    assert_eq!(flags.status().revision, "r1");
    assert_eq!(last_code(&flags), Some("SIGNATURE_INVALID"));
}

#[test]
fn kill_with_a_key_signs_an_unsigned_document() {
    let dir = temp_dir("unsigned");
    let path = dir.join("flags.json");
    let key = PrivateKey::generate().expect("key");
    replace(&path, document("r1").as_bytes());
    let public = VerifyKey::parse(&key.verify_key().to_text()).expect("pub");
    let outcome = kill_file(&path, &change(true), &with_key(key, false)).expect("kill");
    assert!(
        outcome.warnings.iter().any(|w| w.contains("now")),
        "{:?}",
        outcome.warnings
    );
    let bytes = std::fs::read(&path).expect("doc");
    let signature = std::fs::read(signature_path(&path)).expect("sig");
    public
        .verify("t", &bytes, Some(&signature))
        .expect("a valid signature of the new bytes");
}
