//! The HTTP(S) source: a flag document polled from any web server, CDN or object store.
//!
//! Each poll is a conditional GET (`If-None-Match` with the last ETag, `If-Modified-Since`
//! with the last `Last-Modified`), so an unchanged document costs a 304 and no parse. A new
//! body is read up to the document bound (16 MiB, after gzip decoding), its signature checked
//! when a verify key is set, validated by the core, and only then offered to the live handle:
//! a failed fetch, a bad, truncated, oversized or unsigned document never replaces the live
//! one. Failures back off exponentially with full jitter (capped, `Retry-After` honoured);
//! the first success returns to the normal interval.
//!
//! The poller runs on a thread the core owns ([`flagrail_core::ExternalSource`]): it holds the
//! handle weakly, stops within 50 ms of `close()` or of the last handle being dropped, and is
//! restarted in a forked child with a fresh connection pool (a lock the parent's poller held
//! at the fork is never touched again). What `status()["remote"]` reports is kept behind an
//! `ArcSwap`, for the same reason: no mutex that a fork could leave locked.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use flagrail_core::live::SystemClock;
use flagrail_core::load::MAX_DOCUMENT_BYTES;
use flagrail_core::time::{format_timestamp, Millis};
use flagrail_core::{Clock, Document, Error, ExternalSource, Flags, Poll};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::Agent;

use crate::cache;
use crate::signature::{VerifyKey, MAX_SIGNATURE_BYTES, SIGNATURE_SUFFIX};

/// Seconds between polls unless configured.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// How long establishing a connection (DNS, TCP, TLS) may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the response (headers and body) may take once connected: a stalled server costs
/// at most this, then the poll fails and the live document stays.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `from_url` waits for a first valid document when there is no usable cache; then it
/// fails with `SOURCE_UNREACHABLE` (or the last rejection's code) rather than serve nothing.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between attempts while failing (before jitter).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Redirects followed per request; a longer chain (or a loop) is a failed poll.
pub const MAX_REDIRECTS: u32 = 3;
/// A `Retry-After` longer than this is read as this: a server cannot switch polling off.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// A poll skips the conditional headers when the last full GET is older than this: a server
/// whose validators miss a change (nginx's ETag is the mtime in whole seconds plus the size,
/// so a same-size replacement within the same second keeps it) cannot hide it for longer.
/// An unchanged body is recognised by its digest and costs no parse.
pub const FULL_REFRESH: Duration = Duration::from_secs(60);
/// The shortest wait between failed attempts: full jitter may draw zero.
const MIN_RETRY_DELAY: Duration = Duration::from_millis(50);

/// How a URL source is polled. `Debug` never shows header values (they carry tokens).
#[derive(Clone)]
pub struct HttpOptions {
    pub poll_interval: Duration,
    /// Every good document is also written here (atomically); served at startup when the
    /// server cannot be reached.
    pub cache_path: Option<PathBuf>,
    /// Documents must carry a detached signature (`<url>.sig`) by this key.
    pub verify_key: Option<VerifyKey>,
    /// Sent with every request (e.g. `Authorization: Bearer …`); never logged, and never sent
    /// to another host on a redirect.
    pub headers: Vec<(String, String)>,
    /// Trust the CA certificates in this PEM file instead of the bundled Mozilla roots.
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub startup_timeout: Duration,
    pub max_backoff: Duration,
    pub clock: Arc<dyn Clock>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            poll_interval: DEFAULT_POLL_INTERVAL,
            cache_path: None,
            verify_key: None,
            headers: Vec::new(),
            ca_file: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            max_backoff: DEFAULT_MAX_BACKOFF,
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("HttpOptions")
            .field("poll_interval", &self.poll_interval)
            .field("cache_path", &self.cache_path)
            .field("verify_key", &self.verify_key)
            .field("headers (values hidden)", &header_names)
            .field("ca_file", &self.ca_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("startup_timeout", &self.startup_timeout)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// A failed poll: the core error (with its stable code) and a finer kind for the status.
#[derive(Debug, Clone)]
struct Failure {
    error: Error,
    /// `connect`, `timeout`, `http_status`, `too_large`, `truncated`, `redirects`, `tls`,
    /// `io`, `invalid_document` or `signature`.
    kind: &'static str,
    retry_after: Option<Duration>,
}

/// What `status()["remote"]` reports; replaced whole (copy on write) by the poller.
#[derive(Debug, Clone, Default)]
struct RemoteState {
    etag: Option<String>,
    last_modified: Option<String>,
    /// SHA-256 of the live document's bytes: a 200 with the same bytes is not re-applied.
    digest: Option<[u8; 32]>,
    last_success: Option<Millis>,
    last_attempt: Option<Millis>,
    consecutive_failures: u32,
    last_error: Option<(Millis, Failure)>,
    /// The live document came from the cache and the server has not answered since.
    served_from_cache: bool,
    /// When the live document was last confirmed (fetched, 304, or loaded from the cache).
    confirmed_at: Option<Millis>,
    /// When the last unconditional GET answered 200.
    last_full: Option<Instant>,
    /// The last 200's `Last-Modified` was less than 2 s before its `Date`: a change within
    /// the same second would keep the validators (HTTP dates and nginx's ETag have 1 s
    /// resolution), so polls stay unconditional until a response shows an older modification.
    validators_weak: bool,
    polls: u64,
    not_modified: u64,
    documents: u64,
}

/// A document source polled over HTTP(S).
pub struct HttpSource {
    url: String,
    /// The URL without credentials, for status and messages.
    shown_url: String,
    options: HttpOptions,
    roots: Option<Arc<Vec<Certificate<'static>>>>,
    state: ArcSwap<RemoteState>,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("url", &self.shown_url)
            .field("options", &self.options)
            .finish()
    }
}

/// What one successful poll brought.
enum Fetched {
    NotModified,
    /// A 200 whose bytes are the live document's.
    Unchanged {
        etag: Option<String>,
        last_modified: Option<String>,
    },
    New {
        document: Box<Document>,
        bytes: Vec<u8>,
        signature: Option<Vec<u8>>,
        digest: [u8; 32],
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// `https://user:secret@host/x` → `https://***@host/x`: credentials never reach a status or a
/// log line.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_string(),
    }
}

fn read_ca_file(path: &Path) -> Result<Vec<Certificate<'static>>, Error> {
    let pem = std::fs::read(path).map_err(|err| Error::InvalidArgument {
        message: format!("ca_file {}: {err}", path.display()),
    })?;
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert.to_owned()),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(Error::InvalidArgument {
            message: format!(
                "ca_file {}: no PEM certificate (BEGIN CERTIFICATE) in it",
                path.display()
            ),
        });
    }
    Ok(certs)
}

/// Uniform in `0..=bound` from the OS random source (full jitter); the bound itself when the
/// random source fails.
fn jitter(bound: Duration) -> Duration {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        return bound;
    }
    let unit = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
    bound.mul_f64(unit)
}

/// The wait after `failures` consecutive failures: uniform in [0, min(cap, interval·2^n)],
/// at least [`MIN_RETRY_DELAY`], and never shorter than a `Retry-After`.
fn backoff(
    interval: Duration,
    cap: Duration,
    failures: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let exponential = interval.saturating_mul(1u32 << failures.min(16));
    let bound = exponential.min(cap.max(interval));
    let delay = jitter(bound).max(MIN_RETRY_DELAY);
    match retry_after {
        Some(after) => delay.max(after.min(MAX_RETRY_AFTER)),
        None => delay,
    }
}

/// Parses an HTTP date (`Thu, 03 Dec 2026 22:20:12 GMT`, the only form servers send today)
/// into Unix milliseconds.
fn http_date(text: &str) -> Option<Millis> {
    let mut parts = text.split_whitespace().skip(1);
    let day: u32 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: u32 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    flagrail_core::time::parse_timestamp(&format!("{year:04}-{month:02}-{day:02}T{time}Z"))
}

/// Whether `Last-Modified` is too close to the response's `Date` (or, without one, to now) to
/// trust: see `RemoteState::validators_weak`.
fn weak_validators(last_modified: Option<&str>, date: Option<&str>, now: Millis) -> bool {
    let Some(modified) = last_modified.and_then(http_date) else {
        return false;
    };
    let served = date.and_then(http_date).unwrap_or(now);
    served - modified < 2_000
}

/// Reads `Retry-After` as seconds (the HTTP-date form is rare for 429/503; it is read as
/// absent, which falls back to the backoff).
fn retry_after(response: &ureq::http::Response<ureq::Body>) -> Option<Duration> {
    let value = response.headers().get("retry-after")?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl HttpSource {
    /// Checks the URL and options (reads the CA file); fetches nothing.
    pub fn new(url: &str, options: HttpOptions) -> Result<HttpSource, Error> {
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(Error::InvalidArgument {
                message: format!(
                    "url must start with http:// or https://, got {}",
                    redact(url)
                ),
            });
        }
        if url.parse::<ureq::http::Uri>().is_err() {
            return Err(Error::InvalidArgument {
                message: format!("url does not parse: {}", redact(url)),
            });
        }
        if options.poll_interval.is_zero() {
            return Err(Error::InvalidArgument {
                message: "poll interval must be positive".to_string(),
            });
        }
        for (name, value) in &options.headers {
            let valid_name = ureq::http::HeaderName::from_bytes(name.as_bytes()).is_ok();
            let valid_value = ureq::http::HeaderValue::from_str(value).is_ok();
            if !valid_name || !valid_value {
                // The value is never echoed: it may be a token.
                return Err(Error::InvalidArgument {
                    message: format!("header {name:?} is not a valid HTTP header name and value"),
                });
            }
        }
        let roots = match &options.ca_file {
            Some(path) => Some(Arc::new(read_ca_file(path)?)),
            None => None,
        };
        Ok(HttpSource {
            url: url.to_string(),
            shown_url: redact(url),
            options,
            roots,
            state: ArcSwap::from_pointee(RemoteState::default()),
        })
    }

    /// The URL as shown in status and messages (credentials hidden).
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// A new connection pool with this source's timeouts, redirect bound and roots.
    fn agent(&self) -> Agent {
        let roots = match &self.roots {
            Some(certs) => RootCerts::Specific(Arc::clone(certs)),
            None => RootCerts::WebPki,
        };
        Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(MAX_REDIRECTS)
            .max_redirects_will_error(true)
            .timeout_connect(Some(self.options.connect_timeout))
            .timeout_global(Some(
                self.options.connect_timeout + self.options.read_timeout,
            ))
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .user_agent(concat!("flagrail/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent()
    }

    fn failure(&self, kind: &'static str, detail: String) -> Failure {
        Failure {
            error: Error::SourceUnreachable {
                source: self.shown_url.clone(),
                detail,
            },
            kind,
            retry_after: None,
        }
    }

    fn transport_failure(&self, url: &str, err: ureq::Error) -> Failure {
        let shown = redact(url);
        let (kind, detail) = match &err {
            ureq::Error::Timeout(which) => ("timeout", format!("{shown}: timed out ({which:?})")),
            ureq::Error::BodyExceedsLimit(limit) => {
                return Failure {
                    error: Error::InvalidDocument {
                        problems: vec![flagrail_core::Problem {
                            path: String::new(),
                            kind: flagrail_core::ProblemKind::DocumentTooLarge,
                            message: format!(
                                "the response body from {shown} is over {limit} bytes (the document limit); it was not read further"
                            ),
                        }],
                    },
                    kind: "too_large",
                    retry_after: None,
                }
            }
            ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => (
                "redirects",
                format!("{shown}: more than {MAX_REDIRECTS} redirects, or a redirect loop"),
            ),
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => {
                ("tls", format!("{shown}: TLS: {err}"))
            }
            ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
                ("connect", format!("{shown}: {err}"))
            }
            ureq::Error::Io(io) => match io.kind() {
                std::io::ErrorKind::UnexpectedEof => (
                    "truncated",
                    format!("{shown}: the response ended before its declared length: {io}"),
                ),
                std::io::ErrorKind::ConnectionRefused => ("connect", format!("{shown}: {io}")),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                    ("timeout", format!("{shown}: {io}"))
                }
                _ => ("io", format!("{shown}: {io}")),
            },
            _ => ("io", format!("{shown}: {err}")),
        };
        self.failure(kind, detail)
    }

    fn request(
        &self,
        agent: &Agent,
        url: &str,
    ) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let mut request = agent.get(url);
        for (name, value) in &self.options.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request
    }

    /// The detached signature next to the document; `None` when the server has none (404).
    fn fetch_signature(&self, agent: &Agent) -> Result<Option<Vec<u8>>, Failure> {
        let url = format!("{}{SIGNATURE_SUFFIX}", self.url);
        let mut response = self
            .request(agent, &url)
            .call()
            .map_err(|err| self.transport_failure(&url, err))?;
        match response.status().as_u16() {
            200 => {}
            404 | 410 => return Ok(None),
            status => {
                return Err(self.failure("http_status", format!("{}: HTTP {status}", redact(&url))))
            }
        }
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_SIGNATURE_BYTES as u64)
            .read_to_vec()
            .map_err(|err| match err {
                ureq::Error::BodyExceedsLimit(_) => Failure {
                    error: Error::SignatureInvalid {
                        source: self.shown_url.clone(),
                        detail: format!("the .sig file is over {MAX_SIGNATURE_BYTES} bytes"),
                    },
                    kind: "signature",
                    retry_after: None,
                },
                other => self.transport_failure(&url, other),
            })?;
        Ok(Some(bytes))
    }

    /// One poll: a conditional GET, then (for a new body) signature and validation.
    fn fetch(&self, agent: &Agent, conditional: bool) -> Result<Fetched, Failure> {
        let state = self.state.load();
        let mut request = self.request(agent, &self.url);
        if conditional {
            if let Some(etag) = &state.etag {
                request = request.header("If-None-Match", etag.as_str());
            }
            if let Some(modified) = &state.last_modified {
                request = request.header("If-Modified-Since", modified.as_str());
            }
        }
        let mut response = request
            .call()
            .map_err(|err| self.transport_failure(&self.url, err))?;
        let status = response.status().as_u16();
        if status == 304 && conditional && (state.etag.is_some() || state.last_modified.is_some()) {
            return Ok(Fetched::NotModified);
        }
        if status != 200 {
            let mut failure =
                self.failure("http_status", format!("{}: HTTP {status}", self.shown_url));
            if status == 429 || status == 503 {
                failure.retry_after = retry_after(&response);
            }
            return Err(failure);
        }
        let etag = header(&response, "etag");
        let last_modified = header(&response, "last-modified");
        let weak = weak_validators(
            last_modified.as_deref(),
            header(&response, "date").as_deref(),
            self.options.clock.now_millis(),
        );
        self.update(|s| s.validators_weak = weak);
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_DOCUMENT_BYTES as u64)
            .read_to_vec()
            .map_err(|err| self.transport_failure(&self.url, err))?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if state.digest == Some(digest) {
            return Ok(Fetched::Unchanged {
                etag,
                last_modified,
            });
        }
        let signature = match &self.options.verify_key {
            Some(key) => {
                let signature = self.fetch_signature(agent)?;
                key.verify(&self.shown_url, &bytes, signature.as_deref())
                    .map_err(|error| Failure {
                        error,
                        kind: "signature",
                        retry_after: None,
                    })?;
                signature
            }
            None => None,
        };
        let document = Document::from_slice(&bytes).map_err(|error| Failure {
            error,
            kind: "invalid_document",
            retry_after: None,
        })?;
        Ok(Fetched::New {
            document: Box::new(document),
            bytes,
            signature,
            digest,
            etag,
            last_modified,
        })
    }

    fn update(&self, change: impl Fn(&mut RemoteState)) {
        self.state.rcu(|current| {
            let mut next = RemoteState::clone(current);
            change(&mut next);
            next
        });
    }

    /// Records a failure and returns the wait before the next attempt.
    fn record_failure(&self, at: Millis, failure: &Failure) -> Duration {
        self.update(|s| {
            s.last_attempt = Some(at);
            s.polls += 1;
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
            s.last_error = Some((at, failure.clone()));
        });
        let failures = self.state.load().consecutive_failures;
        backoff(
            self.options.poll_interval,
            self.options.max_backoff,
            failures.saturating_sub(1),
            failure.retry_after,
        )
    }

    /// Records a successful poll (304 or a new document).
    fn record_success(
        &self,
        at: Millis,
        etag: Option<String>,
        last_modified: Option<String>,
        digest: Option<[u8; 32]>,
        not_modified: bool,
    ) {
        self.update(|s| {
            s.last_attempt = Some(at);
            s.last_success = Some(at);
            s.confirmed_at = Some(at);
            s.polls += 1;
            s.consecutive_failures = 0;
            s.served_from_cache = false;
            if not_modified {
                s.not_modified += 1;
            } else {
                s.etag = etag.clone();
                s.last_modified = last_modified.clone();
                s.last_full = Some(Instant::now());
            }
            if let Some(digest) = digest {
                s.digest = Some(digest);
                s.documents += 1;
            }
        });
    }

    /// Writes a good document (and its signature) to the cache; a failure only shows in the
    /// status, the live document is unaffected.
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
                retry_after: None,
            };
            self.update(|s| s.last_error = Some((at, failure.clone())));
        }
    }

    /// Polls once and hands the outcome to the handle; returns the wait before the next poll,
    /// or `None` when the poller should stop.
    fn poll(&self, agent: &Agent, poll: &dyn Poll) -> Option<Duration> {
        let at = self.options.clock.now_millis();
        let state = self.state.load();
        let conditional =
            !state.validators_weak && state.last_full.is_some_and(|t| t.elapsed() < FULL_REFRESH);
        match self.fetch(agent, conditional) {
            Ok(Fetched::NotModified) => {
                self.record_success(at, None, None, None, true);
                Some(self.options.poll_interval)
            }
            Ok(Fetched::Unchanged {
                etag,
                last_modified,
            }) => {
                self.record_success(at, etag, last_modified, None, false);
                Some(self.options.poll_interval)
            }
            Ok(Fetched::New {
                document,
                bytes,
                signature,
                digest,
                etag,
                last_modified,
            }) => {
                // Recorded first, so that whoever sees the new revision also sees the success.
                self.record_success(at, etag, last_modified, Some(digest), false);
                // Validated already: `offer` swaps it in.
                let _ = poll.offer(Ok(*document))?;
                self.write_cache(&bytes, signature.as_deref());
                Some(self.options.poll_interval)
            }
            Err(failure) => {
                let wait = self.record_failure(at, &failure);
                // Recorded in the core's status and sent to the reload listeners (logged).
                let _ = poll.offer(Err(failure.error))?;
                Some(wait)
            }
        }
    }

    /// The first document: from the server, or (when it cannot be reached and a cache
    /// exists) from the cache. See [`from_url`].
    fn first_document(&self) -> Result<Document, Error> {
        let agent = self.agent();
        let started = Instant::now();
        let mut cached = self
            .options
            .cache_path
            .as_deref()
            .map(|p| self.read_cache(p));
        let mut failures = 0u32;
        loop {
            let at = self.options.clock.now_millis();
            let failure = match self.fetch(&agent, false) {
                Ok(Fetched::New {
                    document,
                    bytes,
                    signature,
                    digest,
                    etag,
                    last_modified,
                }) => {
                    self.record_success(at, etag, last_modified, Some(digest), false);
                    self.write_cache(&bytes, signature.as_deref());
                    return Ok(*document);
                }
                // Unreachable without a previous document; treated as a failure to be safe.
                Ok(Fetched::NotModified | Fetched::Unchanged { .. }) => self.failure(
                    "http_status",
                    "no document in the first response".to_string(),
                ),
                Err(failure) => failure,
            };
            let wait = self.record_failure(at, &failure);
            failures += 1;
            // The server did not deliver; a good cached copy serves now, polling goes on.
            if let Some(Ok(document)) = cached.take_if(|c| c.is_ok()) {
                let at = self.options.clock.now_millis();
                self.update(|s| {
                    s.served_from_cache = true;
                    s.confirmed_at = Some(at);
                });
                return Ok(document);
            }
            let elapsed = started.elapsed();
            if elapsed >= self.options.startup_timeout {
                return Err(match failure.error {
                    Error::SourceUnreachable { source, detail } => Error::SourceUnreachable {
                        source,
                        detail: format!(
                            "{detail} (no valid document within the startup timeout of {:.1} s after {failures} attempt{}{})",
                            self.options.startup_timeout.as_secs_f64(),
                            if failures == 1 { "" } else { "s" },
                            match &cached {
                                Some(Err(err)) => format!("; the cache was not usable: {err}"),
                                _ => String::new(),
                            }
                        ),
                    },
                    other => other,
                });
            }
            std::thread::sleep(wait.min(self.options.startup_timeout - elapsed));
        }
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
}

impl ExternalSource for HttpSource {
    fn describe(&self) -> String {
        format!("url:{}", self.shown_url)
    }

    fn status_json(&self, now: Millis) -> Value {
        let s = self.state.load();
        json!({
            "url": self.shown_url,
            "etag": s.etag,
            "last_modified": s.last_modified,
            "last_success": s.last_success.map(format_timestamp),
            "last_attempt": s.last_attempt.map(format_timestamp),
            "consecutive_failures": s.consecutive_failures,
            "stale_seconds": s.confirmed_at.map(|at| (now - at).max(0) as f64 / 1000.0),
            "served_from_cache": s.served_from_cache,
            "cache_path": self.options.cache_path.as_ref().map(|p| p.display().to_string()),
            "signed": self.options.verify_key.is_some(),
            "poll_interval_seconds": self.options.poll_interval.as_secs_f64(),
            "polls": s.polls,
            "not_modified": s.not_modified,
            "documents": s.documents,
            "last_error": s.last_error.as_ref().map(|(at, f)| json!({
                "at": format_timestamp(*at),
                "code": f.error.code(),
                "kind": f.kind,
                "message": f.error.to_string(),
            })),
        })
    }

    fn run(&self, poll: &dyn Poll) {
        // A fresh pool per run: after a fork, the parent's connections and locks are not ours.
        let agent = self.agent();
        let mut wait = match self.state.load().consecutive_failures {
            0 => self.options.poll_interval,
            n => backoff(
                self.options.poll_interval,
                self.options.max_backoff,
                n - 1,
                None,
            ),
        };
        loop {
            if !poll.sleep(wait) {
                return;
            }
            let began = Instant::now();
            let Some(next) = self.poll(&agent, poll) else {
                return;
            };
            // Polls keep their cadence: the request's own time counts against the interval.
            wait = next.saturating_sub(began.elapsed());
        }
    }
}

/// Live flags from a URL, polled in the background (see the module docs).
///
/// Startup: the document is fetched before this returns. When that fails and `cache_path`
/// holds a valid (and, with a verify key, correctly signed) document, one attempt is made and
/// the cached document serves (`status()["remote"]["served_from_cache"]`) while polling goes
/// on; without a usable cache, attempts go on (with backoff) for up to `startup_timeout`, then
/// the last failure is returned (`SOURCE_UNREACHABLE`, or `INVALID_DOCUMENT` /
/// `SIGNATURE_INVALID` when the server answered with something unusable).
pub fn from_url(url: &str, options: HttpOptions) -> Result<Flags, Error> {
    let clock = Arc::clone(&options.clock);
    let source = Arc::new(HttpSource::new(url, options)?);
    let document = source.first_document()?;
    let flags = Flags::from_external(document, source, clock);
    flags.start_watching(Duration::ZERO);
    Ok(flags)
}

/// Fetches a document's bytes once (the CLI reading a URL): status 200 required, the document
/// bound enforced, signature checked when `verify_key` is given.
pub fn fetch_bytes(url: &str, options: HttpOptions) -> Result<Vec<u8>, Error> {
    let source = HttpSource::new(url, options)?;
    let agent = source.agent();
    let mut response = source
        .request(&agent, url)
        .call()
        .map_err(|err| source.transport_failure(url, err).error)?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(source
            .failure(
                "http_status",
                format!("{}: HTTP {status}", source.shown_url),
            )
            .error);
    }
    let bytes = response
        .body_mut()
        .with_config()
        .limit(MAX_DOCUMENT_BYTES as u64)
        .read_to_vec()
        .map_err(|err| source.transport_failure(url, err).error)?;
    if let Some(key) = &source.options.verify_key {
        let signature = source.fetch_signature(&agent).map_err(|f| f.error)?;
        key.verify(&source.shown_url, &bytes, signature.as_deref())?;
    }
    Ok(bytes)
}

/// Whether `location` names a URL this crate fetches (rather than a file path).
pub fn is_url(location: &str) -> bool {
    let lower = location.get(..8).unwrap_or(location).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validators_of_a_file_changed_within_the_second_are_weak() {
        let at = http_date("Thu, 03 Dec 2026 22:20:12 GMT").unwrap();
        assert_eq!(
            flagrail_core::time::format_timestamp(at),
            "2026-12-03T22:20:12Z"
        );
        let lm = Some("Thu, 03 Dec 2026 22:20:12 GMT");
        assert!(weak_validators(
            lm,
            Some("Thu, 03 Dec 2026 22:20:13 GMT"),
            0
        ));
        assert!(!weak_validators(
            lm,
            Some("Thu, 03 Dec 2026 22:20:14 GMT"),
            0
        ));
        assert!(!weak_validators(
            None,
            Some("Thu, 03 Dec 2026 22:20:12 GMT"),
            0
        ));
        assert!(weak_validators(lm, None, at + 500));
    }

    #[test]
    fn credentials_in_urls_are_hidden() {
        assert_eq!(redact("https://u:tok@h/x?y@z"), "https://***@h/x?y@z");
        assert_eq!(redact("http://h:80/f.json"), "http://h:80/f.json");
    }

    #[test]
    fn backoff_is_capped_jittered_and_honours_retry_after() {
        let interval = Duration::from_secs(1);
        let cap = Duration::from_secs(8);
        for failures in 0..40 {
            let d = backoff(interval, cap, failures, None);
            assert!(d >= MIN_RETRY_DELAY && d <= cap, "{failures}: {d:?}");
        }
        // Full jitter: over many draws at a large bound, not all the same.
        let draws: Vec<_> = (0..20).map(|_| backoff(interval, cap, 5, None)).collect();
        assert!(draws.iter().any(|d| *d != draws[0]));
        let d = backoff(interval, cap, 0, Some(Duration::from_secs(7)));
        assert!(d >= Duration::from_secs(7));
        let d = backoff(interval, cap, 0, Some(Duration::from_secs(100_000)));
        assert_eq!(d, MAX_RETRY_AFTER);
    }

    #[test]
    fn options_debug_hides_header_values() {
        let options = HttpOptions {
            headers: vec![("Authorization".into(), "Bearer s3cret".into())],
            ..HttpOptions::default()
        };
        let shown = format!("{options:?}");
        assert!(shown.contains("Authorization"));
        assert!(!shown.contains("s3cret"));
    }

    #[test]
    fn only_http_urls_are_sources() {
        let err = HttpSource::new("ftp://x/y", HttpOptions::default()).unwrap_err();
        assert_eq!(err.code(), "INVALID_ARGUMENT");
        assert!(is_url("HTTPS://x"));
        assert!(!is_url("flags.json"));
    }
}
