//! The flag document as a Redis key, pushed atomically and announced on a pub/sub channel.
//!
//! Layout (see [`KeySpace`]): the document's JSON at the key (`flagrail:document` by
//! default), its detached signature at `flagrail:{<key>}:signature`, a counter bumped by
//! every push at `flagrail:{<key>}:revision`, the audit stream at `flagrail:{<key>}:audit`,
//! and the channel `flagrail:{<key>}:changed` on which every push publishes the new counter.
//! All keys share one hash tag, so each push is one Lua script in one cluster slot
//! ([`crate::push`]).
//!
//! A process ([`from_redis`]) subscribes to the channel and re-reads the key as soon as a
//! message arrives; because pub/sub delivers at most once (a message sent while the
//! subscriber reconnects is lost), it also re-reads every `poll_interval` (30 s by default)
//! and right after every (re)subscription. A read fetches the document, signature and
//! counter in one `MGET` (one slot, one node, atomic). A document equal to the live one is
//! not parsed again; a new one is verified (with a verify key), validated by the core and only
//! then swapped in: a bad or unsigned document never replaces the last good one, and its
//! problems (path and reason) go to `status()` and the reload listeners.
//!
//! Redis down is never an exception after startup: the poller reconnects with backoff and
//! jitter and the live document keeps serving. At startup, `from_redis` waits up to
//! `startup_timeout` for Redis; then it serves the cache (`cache_path`) or, without one, an
//! empty document (every flag answers its default) and loads the real one when Redis
//! returns: `status()["remote"]` says `connected: false` and `document_loaded: false` until
//! then.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use flagrail_core::live::SystemClock;
use flagrail_core::time::{format_timestamp, Millis};
use flagrail_core::{Clock, Document, Error, ExternalSource, Flags, Poll};
use flagrail_sources::{cache, VerifyKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::connection::{
    connect_one_node, is_connection_error, Backoff, FleetError, KeySpace, Reconnecting, RedisUrl,
    Timeouts, DEFAULT_DOCUMENT_KEY,
};

/// The safety-net poll: how often the key is re-read even without a pub/sub message.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);
/// How long `from_redis` waits for Redis before serving the cache or an empty document.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between reconnection attempts (before jitter).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long the subscriber blocks on its socket before checking whether it was stopped and
/// whether the safety-net poll is due.
const LISTEN_SLICE: Duration = Duration::from_millis(50);
/// The revision of the empty document served while Redis (or the key) is missing.
pub const WAITING_REVISION: &str = "redis:waiting";

/// How a Redis source is read.
#[derive(Clone)]
pub struct RedisOptions {
    /// The key that holds the document.
    pub key: String,
    pub poll_interval: Duration,
    /// Every good document is also written here (atomically); served at startup when Redis
    /// cannot be reached.
    pub cache_path: Option<PathBuf>,
    /// Documents must carry a detached signature (at the signature key) by this key.
    pub verify_key: Option<VerifyKey>,
    pub timeouts: Timeouts,
    pub startup_timeout: Duration,
    pub max_backoff: Duration,
    pub clock: Arc<dyn Clock>,
}

impl Default for RedisOptions {
    fn default() -> RedisOptions {
        RedisOptions {
            key: DEFAULT_DOCUMENT_KEY.to_string(),
            poll_interval: DEFAULT_POLL_INTERVAL,
            cache_path: None,
            verify_key: None,
            timeouts: Timeouts::default(),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            max_backoff: DEFAULT_MAX_BACKOFF,
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("key", &self.key)
            .field("poll_interval", &self.poll_interval)
            .field("cache_path", &self.cache_path)
            .field("verify_key", &self.verify_key)
            .field("timeouts", &self.timeouts)
            .field("startup_timeout", &self.startup_timeout)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// A failed read: the core error (with its stable code) and a finer kind for the status.
#[derive(Debug, Clone)]
struct Failure {
    error: Error,
    /// `connect`, `command`, `invalid_document`, `signature`, `missing` or `cache_write`.
    kind: &'static str,
}

/// What `status()["remote"]` reports; replaced whole (copy on write).
#[derive(Debug, Clone, Default)]
struct RemoteState {
    /// The command connection answered the last read.
    connected: bool,
    /// The subscriber is subscribed to the channel.
    subscribed: bool,
    /// SHA-256 of the live document's bytes.
    digest: Option<[u8; 32]>,
    /// The push counter of the live document (0 before the first push).
    revision: Option<i64>,
    /// The live document came from Redis (not the cache or the empty stand-in).
    document_loaded: bool,
    served_from_cache: bool,
    /// Redis answered but the key holds nothing.
    key_missing: bool,
    last_success: Option<Millis>,
    last_attempt: Option<Millis>,
    confirmed_at: Option<Millis>,
    consecutive_failures: u32,
    last_error: Option<(Millis, Failure)>,
    reads: u64,
    messages: u64,
    documents: u64,
    subscriptions: u64,
}

/// A document source in Redis, pushed over pub/sub.
pub struct RedisSource {
    url: RedisUrl,
    keys: KeySpace,
    options: RedisOptions,
    state: ArcSwap<RemoteState>,
}

impl std::fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSource")
            .field("url", &self.url.to_string())
            .field("keys", &self.keys)
            .field("options", &self.options)
            .finish()
    }
}

/// What one read of the key brought.
enum Read {
    /// The key holds nothing.
    Missing,
    /// The live document's bytes again (at this counter).
    Unchanged { revision: Option<i64> },
    New {
        document: Box<Document>,
        bytes: Vec<u8>,
        signature: Option<Vec<u8>>,
        digest: [u8; 32],
        revision: Option<i64>,
    },
}

/// The document, its signature and the push counter, in one `MGET` (one slot).
type Fetched = (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>);

impl RedisSource {
    /// Checks the URL, key and options; connects to nothing.
    pub fn new(url: &str, options: RedisOptions) -> Result<RedisSource, Error> {
        let url = RedisUrl::parse(url)?;
        let keys = KeySpace::new(&options.key)?;
        if options.poll_interval.is_zero() {
            return Err(Error::InvalidArgument {
                message: "poll interval must be positive".to_string(),
            });
        }
        Ok(RedisSource {
            url,
            keys,
            options,
            state: ArcSwap::from_pointee(RemoteState::default()),
        })
    }

    fn shown(&self) -> String {
        format!("{}#{}", self.url, self.keys.document())
    }

    fn commands(&self) -> Reconnecting {
        Reconnecting::new(
            self.url.clone(),
            self.options.timeouts,
            Backoff::new(Duration::from_millis(50), self.options.max_backoff),
        )
    }

    fn update(&self, change: impl Fn(&mut RemoteState)) {
        self.state.rcu(|current| {
            let mut next = RemoteState::clone(current);
            change(&mut next);
            next
        });
    }

    fn failure(&self, error: FleetError) -> Failure {
        let kind = match &error {
            FleetError::Unavailable { .. } => "connect",
            FleetError::Core(Error::SignatureInvalid { .. }) => "signature",
            FleetError::Core(Error::InvalidDocument { .. }) => "invalid_document",
            _ => "command",
        };
        let error = match Error::from(error) {
            Error::SourceUnreachable { detail, .. } => Error::SourceUnreachable {
                source: self.shown(),
                detail,
            },
            other => other,
        };
        Failure { error, kind }
    }

    /// One read: `MGET` of document, signature and counter, then (for new bytes) signature
    /// and validation.
    fn read(&self, commands: &mut Reconnecting) -> Result<Read, Failure> {
        let (document, signature, revision): Fetched = commands
            .run_retrying(|connection| {
                redis::cmd("MGET")
                    .arg(self.keys.document())
                    .arg(self.keys.signature())
                    .arg(self.keys.revision())
                    .query(connection)
            })
            .map_err(|error| self.failure(error))?;
        self.update(|s| s.connected = true);
        let Some(bytes) = document else {
            return Ok(Read::Missing);
        };
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if self.state.load().digest == Some(digest) {
            return Ok(Read::Unchanged { revision });
        }
        if let Some(key) = &self.options.verify_key {
            key.verify(&self.shown(), &bytes, signature.as_deref())
                .map_err(|error| Failure {
                    error,
                    kind: "signature",
                })?;
        }
        let document = Document::from_slice(&bytes).map_err(|error| Failure {
            error,
            kind: "invalid_document",
        })?;
        Ok(Read::New {
            document: Box::new(document),
            bytes,
            signature,
            digest,
            revision,
        })
    }

    fn record_failure(&self, at: Millis, failure: &Failure) {
        let disconnected = failure.kind == "connect";
        self.update(|s| {
            s.last_attempt = Some(at);
            s.reads += 1;
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
            s.last_error = Some((at, failure.clone()));
            if disconnected {
                s.connected = false;
            }
        });
    }

    fn record_success(&self, at: Millis, change: impl Fn(&mut RemoteState)) {
        self.update(|s| {
            s.last_attempt = Some(at);
            s.last_success = Some(at);
            s.reads += 1;
            s.consecutive_failures = 0;
            s.connected = true;
            change(s);
        });
    }

    /// Writes a good document (and its signature) to the cache; a failure only shows in the
    /// status.
    fn write_cache(&self, bytes: &[u8], signature: Option<&[u8]>) {
        let Some(path) = &self.options.cache_path else {
            return;
        };
        let written = match signature {
            Some(signature) => cache::write_atomic(&cache::signature_path(path), signature)
                .and_then(|()| cache::write_atomic(path, bytes)),
            None => cache::write_atomic(path, bytes),
        };
        if let Err(detail) = written {
            let at = self.options.clock.now_millis();
            let failure = Failure {
                error: Error::SourceUnreachable {
                    source: format!("cache {}", path.display()),
                    detail,
                },
                kind: "cache_write",
            };
            self.update(|s| s.last_error = Some((at, failure.clone())));
        }
    }

    /// Reads once and hands a new document (or the failure) to the handle. `None` when the
    /// poller should stop.
    fn reload(&self, commands: &mut Reconnecting, poll: &dyn Poll) -> Option<()> {
        let at = self.options.clock.now_millis();
        match self.read(commands) {
            Ok(Read::Missing) => {
                // The live document stays (the last good one, the cache or the stand-in): a
                // deleted key is not a kill.
                self.record_success(at, |s| s.key_missing = true);
            }
            Ok(Read::Unchanged { revision }) => {
                // The live document is Redis's (perhaps it came from the cache first).
                self.record_success(at, |s| {
                    s.key_missing = false;
                    s.confirmed_at = Some(at);
                    s.revision = revision.or(s.revision);
                    s.document_loaded = true;
                    s.served_from_cache = false;
                });
            }
            Ok(Read::New {
                document,
                bytes,
                signature,
                digest,
                revision,
            }) => {
                // Recorded first, so that whoever sees the new document also sees the success.
                self.record_success(at, |s| {
                    s.key_missing = false;
                    s.confirmed_at = Some(at);
                    s.digest = Some(digest);
                    s.revision = revision;
                    s.documents += 1;
                    s.document_loaded = true;
                    s.served_from_cache = false;
                });
                let _ = poll.offer(Ok(*document))?;
                self.write_cache(&bytes, signature.as_deref());
            }
            Err(failure) => {
                self.record_failure(at, &failure);
                let _ = poll.offer(Err(failure.error))?;
            }
        }
        Some(())
    }

    /// The cached document, verified when a key is set.
    fn read_cache(&self, path: &Path) -> Result<Document, Error> {
        let bytes = cache::read(path)?;
        if let Some(key) = &self.options.verify_key {
            let signature = cache::read(&cache::signature_path(path)).ok();
            key.verify(
                &format!("cache {}", path.display()),
                &bytes,
                signature.as_deref(),
            )?;
        }
        let document = Document::from_slice(&bytes)?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        self.update(|s| s.digest = Some(digest));
        Ok(document)
    }

    /// The first document (see [`from_redis`]).
    fn first_document(&self) -> Result<Document, Error> {
        let mut commands = self.commands();
        let started = Instant::now();
        loop {
            let at = self.options.clock.now_millis();
            match self.read(&mut commands) {
                Ok(Read::New {
                    document,
                    bytes,
                    signature,
                    digest,
                    revision,
                }) => {
                    self.record_success(at, |s| {
                        s.confirmed_at = Some(at);
                        s.digest = Some(digest);
                        s.revision = revision;
                        s.documents += 1;
                        s.document_loaded = true;
                    });
                    self.write_cache(&bytes, signature.as_deref());
                    return Ok(*document);
                }
                // Redis is up and nobody pushed yet: no reason to wait.
                Ok(Read::Missing | Read::Unchanged { .. }) => {
                    self.record_success(at, |s| s.key_missing = true);
                    return self.stand_in();
                }
                Err(failure) if failure.kind == "connect" => {
                    self.record_failure(at, &failure);
                    let elapsed = started.elapsed();
                    if elapsed >= self.options.startup_timeout {
                        return self.stand_in();
                    }
                    // Reconnecting paces the attempts; a short sleep keeps this loop cheap.
                    std::thread::sleep(
                        Duration::from_millis(50).min(self.options.startup_timeout - elapsed),
                    );
                }
                // Redis answered with something unusable: a definite answer, raised (unless
                // a good cached copy can serve while the poller waits for a good push).
                Err(failure) => {
                    self.record_failure(at, &failure);
                    return match self.cached() {
                        Some(document) => Ok(document),
                        None => Err(failure.error),
                    };
                }
            }
        }
    }

    fn cached(&self) -> Option<Document> {
        let document = self.read_cache(self.options.cache_path.as_deref()?).ok()?;
        let at = self.options.clock.now_millis();
        self.update(|s| {
            s.served_from_cache = true;
            s.confirmed_at = Some(at);
        });
        Some(document)
    }

    /// What serves while Redis (or the key) is missing: the cache, else an empty document
    /// (every flag answers the caller's default).
    fn stand_in(&self) -> Result<Document, Error> {
        if let Some(document) = self.cached() {
            return Ok(document);
        }
        Document::from_json(&format!(
            r#"{{"revision":"{WAITING_REVISION}","flags":{{}}}}"#
        ))
    }

    /// Subscribes and listens until the connection fails or the poller is stopped; re-reads
    /// on every message, right after subscribing, and every `poll_interval`. Returns `None`
    /// when the poller should stop.
    fn listen(
        &self,
        commands: &mut Reconnecting,
        poll: &dyn Poll,
        next_poll: &mut Instant,
    ) -> Option<bool> {
        let mut connection = match connect_one_node(&self.url, self.options.timeouts) {
            Ok(connection) => connection,
            Err(error) => {
                // Shown in the status at once; not sent to the reload listeners (that happens
                // for the reads, which the backoff paces).
                let at = self.options.clock.now_millis();
                let failure = self.failure(error);
                self.update(|s| {
                    s.connected = false;
                    s.last_error = Some((at, failure.clone()));
                });
                return Some(false);
            }
        };
        let mut pubsub = connection.as_pubsub();
        if pubsub.subscribe(self.keys.channel()).is_err()
            || pubsub.set_read_timeout(Some(LISTEN_SLICE)).is_err()
        {
            return Some(false);
        }
        self.update(|s| {
            s.subscribed = true;
            s.subscriptions += 1;
        });
        // Messages sent while unsubscribed are lost: catch up now.
        commands.retry_now();
        self.reload(commands, poll)?;
        *next_poll = Instant::now() + self.options.poll_interval;
        loop {
            if !poll.sleep(Duration::ZERO) {
                return None;
            }
            match pubsub.get_message() {
                Ok(_) => {
                    self.update(|s| s.messages += 1);
                    // A message means Redis is up: no reason to wait out a backoff.
                    commands.retry_now();
                    self.reload(commands, poll)?;
                    *next_poll = Instant::now() + self.options.poll_interval;
                }
                Err(error) if error.is_timeout() => {}
                Err(error) if is_connection_error(&error) => break,
                // A reply the subscriber did not expect: start over on a fresh connection.
                Err(_) => break,
            }
            if Instant::now() >= *next_poll {
                self.reload(commands, poll)?;
                *next_poll = Instant::now() + self.options.poll_interval;
            }
        }
        self.update(|s| s.subscribed = false);
        Some(true)
    }
}

impl ExternalSource for RedisSource {
    fn describe(&self) -> String {
        format!("redis:{}", self.shown())
    }

    fn status_json(&self, now: Millis) -> Value {
        let s = self.state.load();
        json!({
            "kind": "redis",
            "url": self.url.to_string(),
            "key": self.keys.document(),
            "channel": self.keys.channel(),
            "connected": s.connected,
            "subscribed": s.subscribed,
            "document_loaded": s.document_loaded,
            "key_missing": s.key_missing,
            "served_from_cache": s.served_from_cache,
            "redis_revision": s.revision,
            "last_success": s.last_success.map(format_timestamp),
            "last_attempt": s.last_attempt.map(format_timestamp),
            "consecutive_failures": s.consecutive_failures,
            "stale_seconds": s.confirmed_at.map(|at| (now - at).max(0) as f64 / 1000.0),
            "cache_path": self.options.cache_path.as_ref().map(|p| p.display().to_string()),
            "signed": self.options.verify_key.is_some(),
            "poll_interval_seconds": self.options.poll_interval.as_secs_f64(),
            "reads": s.reads,
            "messages": s.messages,
            "documents": s.documents,
            "subscriptions": s.subscriptions,
            "last_error": s.last_error.as_ref().map(|(at, f)| json!({
                "at": format_timestamp(*at),
                "code": f.error.code(),
                "kind": f.kind,
                "message": f.error.to_string(),
            })),
        })
    }

    fn run(&self, poll: &dyn Poll) {
        // Fresh connections per run: after a fork, the parent's sockets are not ours.
        let mut commands = self.commands();
        let mut backoff = Backoff::new(Duration::from_millis(50), self.options.max_backoff);
        let mut next_poll = Instant::now() + self.options.poll_interval;
        loop {
            let Some(subscribed) = self.listen(&mut commands, poll, &mut next_poll) else {
                return;
            };
            if subscribed {
                backoff.reset();
            }
            // Not subscribed: Redis is likely down. Wait by the backoff, polling when due
            // (a cluster node may be down while the others still serve the key).
            if !poll.sleep(backoff.next_delay()) {
                return;
            }
            if Instant::now() >= next_poll {
                if self.reload(&mut commands, poll).is_none() {
                    return;
                }
                next_poll = Instant::now() + self.options.poll_interval;
            }
        }
    }
}

/// Live flags from a Redis key, pushed over pub/sub with a safety-net poll (see the module
/// docs). Fails only for a bad URL or options, or when Redis answers with a document that is
/// invalid or not signed by `verify_key` and no cache can serve; an unreachable Redis is
/// waited for in the background.
pub fn from_redis(url: &str, options: RedisOptions) -> Result<Flags, Error> {
    let clock = Arc::clone(&options.clock);
    let source = Arc::new(RedisSource::new(url, options)?);
    let document = source.first_document()?;
    let flags = Flags::from_external(document, source, clock);
    flags.start_watching(Duration::ZERO);
    Ok(flags)
}
