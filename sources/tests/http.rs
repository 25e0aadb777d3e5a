//! The HTTP source against a loopback stub that misbehaves on demand: each failure keeps the
//! last good document, names itself in `status()`, and the next good answer recovers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use flagrail_core::Flags;
use flagrail_sources::{from_url, HttpOptions, PrivateKey, VerifyKey};
use serde_json::Value;

/// What the stub answers next.
#[derive(Clone)]
enum Mode {
    /// 200 with this body and ETag; 304 to a matching `If-None-Match`.
    Serve {
        body: Vec<u8>,
        etag: String,
    },
    Status(u16),
    TooMany {
        retry_after: u64,
    },
    /// Reads the request and never answers.
    Stall,
    /// Declares 1000 bytes, sends 20, closes.
    Truncated,
    /// 17 MiB of spaces.
    Huge,
    /// 302 to itself.
    RedirectLoop,
}

struct Stub {
    port: u16,
    mode: Arc<Mutex<Mode>>,
    /// `.sig` body served next to the document (404 when `None`).
    signature: Arc<Mutex<Option<Vec<u8>>>>,
    requests: Arc<AtomicUsize>,
    not_modified: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// What each request's `If-None-Match` / `Authorization` were.
    seen_headers: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    fn start(mode: Mode) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stub = Stub {
            port,
            mode: Arc::new(Mutex::new(mode)),
            signature: Arc::new(Mutex::new(None)),
            requests: Arc::new(AtomicUsize::new(0)),
            not_modified: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            seen_headers: Arc::new(Mutex::new(Vec::new())),
        };
        let (mode, signature, requests, not_modified, stop, seen) = (
            Arc::clone(&stub.mode),
            Arc::clone(&stub.signature),
            Arc::clone(&stub.requests),
            Arc::clone(&stub.not_modified),
            Arc::clone(&stub.stop),
            Arc::clone(&stub.seen_headers),
        );
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (mode, signature, requests, not_modified, seen) = (
                            Arc::clone(&mode),
                            Arc::clone(&signature),
                            Arc::clone(&requests),
                            Arc::clone(&not_modified),
                            Arc::clone(&seen),
                        );
                        thread::spawn(move || {
                            serve(stream, &mode, &signature, &requests, &not_modified, &seen)
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        stub
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/flags.json", self.port)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(
    stream: TcpStream,
    mode: &Mutex<Mode>,
    signature: &Mutex<Option<Vec<u8>>>,
    requests: &AtomicUsize,
    not_modified: &AtomicUsize,
    seen: &Mutex<Vec<String>>,
) {
    stream.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut if_none_match = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("if-none-match:") {
            if_none_match = Some(v.trim().to_string());
        }
        if lower.starts_with("authorization:") || lower.starts_with("if-none-match:") {
            // Header names are case-insensitive (ureq sends them lower-cased).
            seen.lock().unwrap().push(lower.trim().to_string());
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
    let respond = |stream: &mut TcpStream, status: &str, headers: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
    };
    if path.ends_with(".sig") {
        match signature.lock().unwrap().clone() {
            Some(sig) => respond(&mut stream, "200 OK", "", &sig),
            None => respond(&mut stream, "404 Not Found", "", b""),
        }
        return;
    }
    let mode = mode.lock().unwrap().clone();
    match mode {
        Mode::Serve { body, etag } => {
            if if_none_match.as_deref() == Some(etag.as_str()) {
                not_modified.fetch_add(1, Ordering::SeqCst);
                respond(
                    &mut stream,
                    "304 Not Modified",
                    &format!("ETag: {etag}\r\n"),
                    b"",
                );
            } else {
                respond(
                    &mut stream,
                    "200 OK",
                    &format!("ETag: {etag}\r\nContent-Type: application/json\r\n"),
                    &body,
                );
            }
        }
        Mode::Status(code) => respond(&mut stream, &format!("{code} Oops"), "", b"oops"),
        Mode::TooMany { retry_after } => respond(
            &mut stream,
            "429 Too Many Requests",
            &format!("Retry-After: {retry_after}\r\n"),
            b"",
        ),
        Mode::Stall => thread::sleep(Duration::from_secs(5)),
        Mode::Truncated => {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{\"revision\": \"half",
            );
        }
        Mode::Huge => {
            let size = 17 * 1024 * 1024;
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..(size / chunk.len()) {
                if stream.write_all(&chunk).is_err() {
                    return;
                }
            }
        }
        Mode::RedirectLoop => respond(
            &mut stream,
            "302 Found",
            &format!("Location: {path}\r\n"),
            b"",
        ),
    }
    let _ = stream.flush();
    // Let the client read everything before the socket closes.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
}

fn document(revision: &str) -> Vec<u8> {
    serde_json::to_vec_pretty(&serde_json::json!({
        "revision": revision,
        "flags": {
            "chat": {
                "variants": { "on": { "model": "m" }, "off": { "ai": false } },
                "default": "on",
                "kill": { "active": false, "serve": "off" }
            }
        }
    }))
    .unwrap()
}

fn serving(revision: &str) -> Mode {
    Mode::Serve {
        body: document(revision),
        etag: format!("\"{revision}\""),
    }
}

fn fast(options: HttpOptions) -> HttpOptions {
    HttpOptions {
        poll_interval: Duration::from_millis(50),
        read_timeout: Duration::from_millis(400),
        connect_timeout: Duration::from_millis(400),
        startup_timeout: Duration::from_millis(400),
        max_backoff: Duration::from_millis(200),
        ..options
    }
}

fn remote(flags: &Flags) -> Value {
    flags.status().to_json()["remote"].clone()
}

/// Waits (bounded) until `condition` holds on the status; panics with the status otherwise.
fn wait_for(flags: &Flags, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
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

/// Goes from r1 to a failure, checks that r1 stays live and the failure is named, then
/// recovers with r2.
fn failure_keeps_last_good(mode: Mode, code: &str, kind: &str) {
    failure_keeps_last_good_with(mode, code, kind, fast(HttpOptions::default()));
}

fn failure_keeps_last_good_with(mode: Mode, code: &str, kind: &str, options: HttpOptions) {
    let stub = Stub::start(serving("r1"));
    let flags = from_url(&stub.url(), options).unwrap();
    assert_eq!(flags.document().revision(), "r1");
    stub.set(mode);
    let status = wait_for(&flags, kind, |s| {
        s["remote"]["last_error"]["kind"] == kind
            && s["remote"]["consecutive_failures"].as_u64() >= Some(1)
    });
    assert_eq!(flags.document().revision(), "r1", "{status:#}");
    assert_eq!(status["remote"]["last_error"]["code"], code, "{status:#}");
    assert_eq!(status["last_error"]["code"], code, "{status:#}");
    assert!(status["rejected"].as_u64() >= Some(1));
    stub.set(serving("r2"));
    let status = wait_for(&flags, "recovery", |s| {
        s["revision"] == "r2" && s["remote"]["consecutive_failures"] == 0
    });
    assert!(status["remote"]["last_success"].is_string());
}

#[test]
fn server_errors_keep_the_last_good_document() {
    failure_keeps_last_good(Mode::Status(500), "SOURCE_UNREACHABLE", "http_status");
}

#[test]
fn a_stalled_response_times_out() {
    failure_keeps_last_good(Mode::Stall, "SOURCE_UNREACHABLE", "timeout");
}

#[test]
fn a_truncated_body_is_not_applied() {
    failure_keeps_last_good(Mode::Truncated, "SOURCE_UNREACHABLE", "truncated");
}

#[test]
fn a_huge_body_is_cut_at_the_bound() {
    // Time enough to stream 16 MiB on a loaded machine: the bound, not the timeout, must stop it.
    let options = HttpOptions {
        read_timeout: Duration::from_secs(20),
        ..fast(HttpOptions::default())
    };
    failure_keeps_last_good_with(Mode::Huge, "INVALID_DOCUMENT", "too_large", options);
}

#[test]
fn wrong_json_is_rejected_with_its_problem() {
    failure_keeps_last_good(
        Mode::Serve {
            body: b"{\"revision\": ".to_vec(),
            etag: "\"bad\"".into(),
        },
        "INVALID_DOCUMENT",
        "invalid_document",
    );
}

#[test]
fn a_redirect_loop_is_bounded() {
    failure_keeps_last_good(Mode::RedirectLoop, "SOURCE_UNREACHABLE", "redirects");
}

#[test]
fn too_many_requests_waits_for_retry_after() {
    let stub = Stub::start(serving("r1"));
    let flags = from_url(&stub.url(), fast(HttpOptions::default())).unwrap();
    stub.set(Mode::TooMany { retry_after: 2 });
    wait_for(&flags, "429", |s| s["remote"]["consecutive_failures"] == 1);
    let after_first = stub.requests.load(Ordering::SeqCst);
    // At a 50 ms interval the poller would ask ~20 more times in a second; Retry-After: 2
    // makes it wait. Counting requests (not timing them) keeps this free of clock flakiness.
    thread::sleep(Duration::from_millis(1000));
    assert_eq!(stub.requests.load(Ordering::SeqCst), after_first);
    assert_eq!(flags.document().revision(), "r1");
    stub.set(serving("r2"));
    wait_for(&flags, "recovery", |s| s["revision"] == "r2");
}

#[test]
fn unchanged_documents_cost_a_304_and_no_reload() {
    let stub = Stub::start(serving("r1"));
    let flags = from_url(
        &stub.url(),
        fast(HttpOptions {
            headers: vec![("Authorization".into(), "Bearer tok-123".into())],
            ..HttpOptions::default()
        }),
    )
    .unwrap();
    let status = wait_for(&flags, "304s", |s| {
        s["remote"]["not_modified"].as_u64() >= Some(5)
    });
    assert_eq!(status["reloads"], 0);
    assert_eq!(status["remote"]["etag"], "\"r1\"");
    assert!(stub.not_modified.load(Ordering::SeqCst) >= 5);
    let seen = stub.seen_headers.lock().unwrap().clone();
    assert!(
        seen.iter().any(|h| h == "authorization: bearer tok-123"),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|h| h == "if-none-match: \"r1\""),
        "{seen:?}"
    );
    // The token never shows in the status.
    assert!(!flags.status().to_json().to_string().contains("tok-123"));
    stub.set(serving("r2"));
    wait_for(&flags, "r2", |s| s["revision"] == "r2" && s["reloads"] == 1);
}

#[test]
fn cold_start_serves_the_cache_and_keeps_polling() {
    let dir = tempdir();
    let cache = dir.join("cache.json");
    let stub = Stub::start(serving("r1"));
    let flags = from_url(
        &stub.url(),
        fast(HttpOptions {
            cache_path: Some(cache.clone()),
            ..HttpOptions::default()
        }),
    )
    .unwrap();
    assert_eq!(std::fs::read(&cache).unwrap(), document("r1"));
    drop(flags);

    // The server is down: the cache serves, status says so.
    stub.set(Mode::Status(503));
    let flags = from_url(
        &stub.url(),
        fast(HttpOptions {
            cache_path: Some(cache.clone()),
            ..HttpOptions::default()
        }),
    )
    .unwrap();
    assert_eq!(flags.document().revision(), "r1");
    assert_eq!(remote(&flags)["served_from_cache"], true);
    // It comes back: polling picks up the new document and the cache follows.
    stub.set(serving("r2"));
    wait_for(&flags, "r2", |s| {
        s["revision"] == "r2" && s["remote"]["served_from_cache"] == false
    });
    wait_for(&flags, "cache", |_| {
        std::fs::read(&cache).unwrap() == document("r2")
    });
}

#[test]
fn no_cache_and_no_server_is_source_unreachable() {
    let stub = Stub::start(Mode::Status(500));
    let err = from_url(&stub.url(), fast(HttpOptions::default())).unwrap_err();
    assert_eq!(err.code(), "SOURCE_UNREACHABLE");
    assert!(err.to_string().contains("startup timeout"), "{err}");
    // Nothing listening at all.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = from_url(
        &format!("http://127.0.0.1:{port}/flags.json"),
        fast(HttpOptions::default()),
    )
    .unwrap_err();
    assert_eq!(err.code(), "SOURCE_UNREACHABLE");
}

#[test]
fn signatures_good_missing_wrong_key_tampered_and_older() {
    let key = PrivateKey::generate().unwrap();
    let verify = VerifyKey::parse(&key.verify_key().to_text()).unwrap();
    let stub = Stub::start(serving("r1"));
    *stub.signature.lock().unwrap() = Some(key.sign(&document("r1")).into_bytes());
    let flags = from_url(
        &stub.url(),
        fast(HttpOptions {
            verify_key: Some(verify),
            ..HttpOptions::default()
        }),
    )
    .unwrap();
    assert_eq!(remote(&flags)["signed"], true);

    let cases: Vec<(&str, Mode, Option<Vec<u8>>)> = vec![
        ("missing", serving("r2"), None),
        (
            "wrong key",
            serving("r3"),
            Some(
                PrivateKey::generate()
                    .unwrap()
                    .sign(&document("r3"))
                    .into_bytes(),
            ),
        ),
        (
            "tampered",
            {
                let mut body = document("r4");
                let last = body.len() - 2;
                body[last] = b' ';
                Mode::Serve {
                    body,
                    etag: "\"r4t\"".into(),
                }
            },
            Some(key.sign(&document("r4")).into_bytes()),
        ),
        (
            "older revision",
            serving("r5"),
            Some(key.sign(&document("r1")).into_bytes()),
        ),
    ];
    for (name, mode, signature) in cases {
        let rejected_before = flags.status().rejected;
        *stub.signature.lock().unwrap() = signature;
        stub.set(mode);
        let status = wait_for(&flags, name, |s| {
            s["rejected"].as_u64() > Some(rejected_before)
                && s["remote"]["last_error"]["code"] == "SIGNATURE_INVALID"
        });
        assert_eq!(status["revision"], "r1", "{name}: {status:#}");
    }
    // A good signature of the new bytes goes live.
    *stub.signature.lock().unwrap() = Some(key.sign(&document("r6")).into_bytes());
    stub.set(serving("r6"));
    wait_for(&flags, "r6", |s| s["revision"] == "r6");
}

#[test]
fn the_poller_stops_when_closed_or_dropped() {
    let stub = Stub::start(serving("r1"));
    let flags = from_url(&stub.url(), fast(HttpOptions::default())).unwrap();
    assert!(flags.is_watching());
    flags.stop_watching();
    thread::sleep(Duration::from_millis(200));
    let after_close = stub.requests.load(Ordering::SeqCst);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(stub.requests.load(Ordering::SeqCst), after_close);

    let flags = from_url(&stub.url(), fast(HttpOptions::default())).unwrap();
    drop(flags);
    thread::sleep(Duration::from_millis(200));
    let after_drop = stub.requests.load(Ordering::SeqCst);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(stub.requests.load(Ordering::SeqCst), after_drop);
}

fn tempdir() -> std::path::PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "flagrail-sources-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
