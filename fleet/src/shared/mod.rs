//! The state a fleet of processes shares through Redis: budget leases ([`budget`]),
//! guardrail counts and shared trips ([`guard`]), metrics ([`metrics`]) and sticky pins
//! ([`pins`]), and what each process does while Redis is down or slow.
//!
//! [`FleetState::attach`] hangs a [`flagrail_core::runtime::shared::SharedState`] on a live
//! handle and starts one background thread per handle. The handle's hot path only touches
//! memory (a lease, a pending tally); the thread does every round trip:
//!
//! | every | what |
//! |---|---|
//! | 50 ms | report budget spend, take new leases before the current ones run out, give back idle ones; write queued pins |
//! | 250 ms | flush guardrail tallies into time buckets; decide trips on the fleet's totals; lay the fleet's trips over this process; add the autopilot's per-unit evidence ([`evidence`]) |
//! | 1 s | heartbeat (the fleet's size); publish this process's metrics; read the fleet's |
//!
//! Keys come from [`crate::KeySpace::sibling`]: they share the document key's hash tag, so
//! every key of one fleet is in one Redis Cluster slot and every multi-key operation is
//! legal there.
//!
//! **Redis down or slow.** Commands time out ([`crate::Timeouts`]) and the connection is
//! re-opened with backoff ([`crate::connection::Reconnecting`]); meanwhile `status()["fleet"]` says
//! `"mode": "local"` and `flagrail_fleet_connected` is 0, budgets are enforced locally (a
//! process's remaining lease, then `limit / fleet size` per scope), guardrails trip on this
//! process's own evidence, pins are read from nobody (a miss), and nothing is lost: spend,
//! tallies and pin writes wait in memory and are flushed when Redis answers again.

pub mod budget;
pub mod evidence;
pub mod guard;
pub mod metrics;
pub mod pins;
pub mod series;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flagrail_core::document::budget::Budget;
use flagrail_core::document::guardrail::Guardrail;
use flagrail_core::live::WeakFlags;
use flagrail_core::runtime::shared::SharedState;
use flagrail_core::runtime::stats::Tally;
use flagrail_core::runtime::EventSink;
use flagrail_core::time::{format_timestamp, Millis};
use flagrail_core::Flags;
use redis::{ConnectionLike, RedisResult};
use rustc_hash::FxHashMap;
use serde_json::{json, Value};

use crate::connection::{
    Backoff, FleetError, KeySpace, Reconnecting, RedisConnection, RedisUrl, Timeouts,
};
use budget::{LeaseGrant, LeaseRequest, Leases};
use guard::{FleetGuard, Offer, PendingTallies};
use pins::{PinQueue, PinWrite, PIN_READ_TIMEOUT};

type Result<T> = std::result::Result<T, FleetError>;

/// How a handle shares state.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// The document key whose hash tag every key of the fleet shares
    /// (default `flagrail:document`).
    pub document_key: String,
    /// The lease a process takes, as a share of a budget's limit.
    pub lease_fraction: f64,
    /// Connect / read / write timeouts of the background connection.
    pub timeouts: Timeouts,
}

impl Default for FleetOptions {
    fn default() -> FleetOptions {
        FleetOptions {
            document_key: crate::connection::DEFAULT_DOCUMENT_KEY.to_string(),
            lease_fraction: budget::DEFAULT_LEASE_FRACTION,
            timeouts: Timeouts {
                connect: Duration::from_millis(500),
                read: Duration::from_millis(500),
                write: Duration::from_millis(500),
            },
        }
    }
}

const BUDGET_TICK: Duration = Duration::from_millis(50);
const GUARD_EVERY_MS: u128 = 250;
const HEARTBEAT_EVERY_MS: u128 = 1_000;
/// A process not heard from for this long no longer counts in the fleet's size.
const ALIVE_MS: Millis = 15_000;
/// How long the state of a guardrail outlives its last change.
const GUARD_STATE_TTL_MS: Millis = 24 * 3_600_000;

/// Heartbeat and metrics of one process, and the fleet's of both, in one round trip (no
/// pipelines: a Cluster connection has none; both keys are in one slot).
///
/// `KEYS[1]` processes, `KEYS[2]` metrics. ARGV: process id, now (ms), metrics entry, TTL (ms).
const HEARTBEAT_SCRIPT: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
";

/// The connection's state, for status.
#[derive(Debug, Default)]
struct Link {
    since: Option<Millis>,
    last_error: Option<String>,
    disconnects: u64,
}

/// What the background thread last read of the fleet.
#[derive(Debug, Default)]
struct FleetView {
    metrics: Value,
    processes: usize,
    /// `(flag, variant, guardrail, state)`: 0 closed, 1 tripped, 2 half-open.
    guardrails: Vec<(String, String, String, u8)>,
    read_at: Option<Millis>,
}

struct Inner {
    process_id: String,
    url: RedisUrl,
    keys: KeySpace,
    leases: Mutex<Leases>,
    tallies: Mutex<PendingTallies>,
    pins: Mutex<PinQueue>,
    /// The autopilot's per-unit evidence waiting for Redis (fed by an event sink).
    evidence: Arc<Mutex<evidence::PendingEvidence>>,
    /// The sink feeding `evidence`, once the document has an autopilot ramp.
    evidence_sink: std::sync::OnceLock<Arc<dyn EventSink>>,
    pin_reader: Mutex<Reconnecting>,
    connected: AtomicBool,
    link: Mutex<Link>,
    view: Mutex<FleetView>,
    stop: AtomicBool,
    flushes: AtomicU64,
    /// The background thread, woken when a lease runs low (so a refill does not wait for the
    /// next tick).
    worker: std::sync::OnceLock<std::thread::Thread>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves these tables consistent: keep going after a panic elsewhere.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Shared fleet state attached to one handle (see the module documentation).
pub struct FleetState {
    inner: Arc<Inner>,
    flags: WeakFlags,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for FleetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetState")
            .field("redis", &self.inner.url.to_string())
            .field("process", &self.inner.process_id)
            .finish()
    }
}

/// The [`SharedState`] the handle holds: memory only.
struct Hook(Arc<Inner>);

impl SharedState for Hook {
    fn budget_exhausted(&self, budget: &Budget, scope: &str, now: Millis) -> bool {
        lock(&self.0.leases).exhausted(budget, scope, now)
    }
    fn budget_charge(&self, budget: &Budget, scope: &str, amount: f64, now: Millis) {
        let wake = lock(&self.0.leases).charge(budget, scope, amount, now);
        if wake {
            // Once per lease and refill: the refill starts now rather than at the next tick.
            if let Some(worker) = self.0.worker.get() {
                worker.unpark();
            }
        }
    }
    fn budget_reserve(&self, budget: &Budget, scope: &str, amount: f64, now: Millis) {
        lock(&self.0.leases).reserve(budget, scope, amount, now);
    }
    fn budget_release(&self, budget: &Budget, scope: &str, amount: f64, now: Millis) {
        lock(&self.0.leases).release(budget, scope, amount, now);
    }
    fn guardrail_observed(
        &self,
        flag: &str,
        variant: &str,
        guardrail: &Guardrail,
        observation: Tally,
        _now: Millis,
    ) {
        lock(&self.0.tallies).add(flag, variant, &guardrail.id, &observation);
    }
    fn guardrail_tripped(
        &self,
        flag: &str,
        variant: &str,
        guardrail: &Guardrail,
        since: Millis,
        probe_from: Millis,
    ) {
        lock(&self.0.tallies).offers.push(Offer {
            flag: Box::from(flag),
            variant: Box::from(variant),
            guardrail: Box::from(&*guardrail.id),
            since,
            probe_from,
        });
    }
    fn status_json(&self, now: Millis) -> Value {
        self.0.status_json(now)
    }
}

impl Inner {
    fn status_json(&self, now: Millis) -> Value {
        let connected = self.connected.load(Ordering::Acquire);
        let link = lock(&self.link);
        let (pending_spend, scopes, fleet_size, denied_for_lease) = {
            let leases = lock(&self.leases);
            (
                leases.pending_spend(),
                leases.scopes(),
                leases.fleet_size,
                leases.denied_for_lease(),
            )
        };
        let (queued_pins, dropped_pins) = {
            let pins = lock(&self.pins);
            (pins.writes.len(), pins.dropped)
        };
        let autopilot = self
            .evidence_sink
            .get()
            .map(|_| lock(&self.evidence).status_json());
        let view = lock(&self.view);
        json!({
            "redis": self.url.to_string(),
            "process": self.process_id,
            "connected": connected,
            // "shared": budgets by fleet leases, trips decided on fleet totals; "local": Redis
            // is unreachable and this process enforces on its own (docs/fleet.md).
            "mode": if connected { "shared" } else { "local" },
            "since": link.since.map(format_timestamp),
            "last_error": link.last_error,
            "disconnects": link.disconnects,
            "fleet_size": fleet_size,
            "leased_scopes": scopes,
            "pending_spend": pending_spend,
            "denied_for_lease": denied_for_lease,
            "pending_pin_writes": queued_pins,
            "dropped_pin_writes": dropped_pins,
            "flushes": self.flushes.load(Ordering::Relaxed),
            "fleet_read_at": view.read_at.map(format_timestamp),
            "autopilot": autopilot,
            "now": format_timestamp(now),
        })
    }

    fn set_connected(&self, connected: bool, error: Option<&FleetError>, now: Millis) {
        let was = self.connected.swap(connected, Ordering::AcqRel);
        lock(&self.leases).connected = connected;
        let mut link = lock(&self.link);
        if was != connected || link.since.is_none() {
            link.since = Some(now);
            if !connected {
                link.disconnects += 1;
            }
        }
        if let Some(error) = error {
            link.last_error = Some(format!("{}: {error}", error.code()));
        }
    }
}

impl FleetState {
    /// Shares `flags`' budgets, guardrails and metrics through the Redis at `url`
    /// (`redis://…` or `redis+cluster://…`) and starts the background thread. Never waits
    /// for Redis: an unreachable server only means the handle starts in local mode.
    pub fn attach(flags: &Flags, url: &str, options: FleetOptions) -> Result<Arc<FleetState>> {
        let url = RedisUrl::parse(url)?;
        let keys = KeySpace::new(&options.document_key)?;
        let pin_timeouts = Timeouts {
            connect: PIN_READ_TIMEOUT,
            read: PIN_READ_TIMEOUT,
            write: PIN_READ_TIMEOUT,
        };
        let inner = Arc::new(Inner {
            process_id: process_id(),
            url: url.clone(),
            keys,
            leases: Mutex::new(Leases::new(options.lease_fraction)),
            tallies: Mutex::new(PendingTallies::default()),
            pins: Mutex::new(PinQueue::default()),
            evidence: Arc::new(Mutex::new(evidence::PendingEvidence::default())),
            evidence_sink: std::sync::OnceLock::new(),
            pin_reader: Mutex::new(Reconnecting::new(
                url.clone(),
                pin_timeouts,
                Backoff::default(),
            )),
            connected: AtomicBool::new(false),
            link: Mutex::new(Link::default()),
            view: Mutex::new(FleetView::default()),
            stop: AtomicBool::new(false),
            flushes: AtomicU64::new(0),
            worker: std::sync::OnceLock::new(),
        });
        flags.share_state(Some(Arc::new(Hook(Arc::clone(&inner)))));
        let weak = flags.downgrade();
        let worker = {
            let inner = Arc::clone(&inner);
            let weak = weak.clone();
            let connection = Reconnecting::new(url, options.timeouts, Backoff::default());
            std::thread::Builder::new()
                .name("flagrail-fleet".into())
                .spawn(move || Worker::new(inner, weak, connection).run())
                .map_err(|error| FleetError::Unavailable {
                    target: "background thread".into(),
                    detail: error.to_string(),
                })?
        };
        let _ = inner.worker.set(worker.thread().clone());
        Ok(Arc::new(FleetState {
            inner,
            flags: weak,
            worker: Mutex::new(Some(worker)),
        }))
    }

    /// Stops sharing: reports what was spent, gives every lease back (one attempt, bounded
    /// by the timeouts), stops the thread and detaches from the handle, whose budgets are
    /// then enforced locally again. Idempotent.
    pub fn close(&self) {
        self.inner.stop.store(true, Ordering::Release);
        let worker = lock(&self.worker).take();
        if let Some(worker) = worker {
            worker.thread().unpark();
            let _ = worker.join();
        }
        // After the worker's last flush: the evidence sink stays on the handle (sinks are
        // never removed) but keeps nothing from now on.
        lock(&self.inner.evidence).closed = true;
        if let Some(flags) = self.flags.upgrade() {
            flags.share_state(None);
        }
    }

    /// In a child process after `fork()`: lets go of this state, which is the parent's,
    /// without touching its thread or its locks (the thread does not exist in the child, and a
    /// lock it held at the fork stays held there), and leaks it. The handle stops sharing
    /// state and loses the evidence sink, so the child's events never wait on the parent's
    /// pending evidence; attach a fresh state with [`FleetState::attach`] afterwards.
    pub fn forget_in_forked_child(self: Arc<Self>) {
        if let Some(flags) = self.flags.upgrade() {
            if let Some(sink) = self.inner.evidence_sink.get() {
                flags.remove_event_sink(sink);
            }
            flags.share_state(None);
        }
        std::mem::forget(self);
    }

    /// Whether the background thread reached Redis on its last attempt.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// `status()["fleet"]`.
    pub fn status_json(&self, now: Millis) -> Value {
        self.inner.status_json(now)
    }

    /// The fleet's merged metrics as last read (at most about a second old), with
    /// `$fleet`: processes, the fleet's guardrail states, when it was read. No round trip.
    pub fn fleet_metrics(&self) -> Value {
        let view = lock(&self.inner.view);
        let mut merged = view.metrics.clone();
        if !merged.is_object() {
            merged = json!({});
        }
        if let Value::Object(map) = &mut merged {
            map.insert("$fleet".into(), fleet_summary(&view));
        }
        merged
    }

    /// [`FleetState::fleet_metrics`] as Prometheus text.
    pub fn fleet_metrics_text(&self) -> String {
        let view = lock(&self.inner.view);
        metrics::fleet_prometheus(&view.metrics, view.processes, &view.guardrails)
    }

    /// The pinned variant at `key`, read from Redis with a short timeout; `Ok(None)` when
    /// there is no pin. An error (Redis down, slow, or known down) lets the binding count a
    /// store error and evaluate without the pin.
    pub fn pin_get(&self, key: &str) -> Result<Option<String>> {
        if !self.inner.connected.load(Ordering::Acquire) {
            return Err(FleetError::Unavailable {
                target: self.inner.url.to_string(),
                detail: "the fleet is in local mode; pins are not read".into(),
            });
        }
        let mut reader = match self.inner.pin_reader.try_lock() {
            Ok(reader) => reader,
            // Another thread is reading: wait for it (each read is bounded by its timeout).
            Err(_) => lock(&self.inner.pin_reader),
        };
        reader.run(|c| redis::cmd("GET").arg(key).query::<Option<String>>(c))
    }

    /// Queues a pin write (never waits).
    pub fn pin_set(&self, key: &str, variant: &str, ttl_seconds: f64) {
        let ttl_ms = (ttl_seconds * 1000.0).clamp(1.0, 1e15) as u64;
        lock(&self.inner.pins).push(PinWrite::Set {
            key: key.to_string(),
            variant: variant.to_string(),
            ttl_ms,
        });
    }

    /// Queues a pin delete (never waits).
    pub fn pin_delete(&self, key: &str) {
        lock(&self.inner.pins).push(PinWrite::Delete {
            key: key.to_string(),
        });
    }
}

impl Drop for FleetState {
    fn drop(&mut self) {
        self.close();
    }
}

fn fleet_summary(view: &FleetView) -> Value {
    let guardrails: Vec<Value> = view
        .guardrails
        .iter()
        .map(|(flag, variant, guardrail, state)| {
            json!({
                "flag": flag, "variant": variant, "guardrail": guardrail,
                "state": match state { 0 => "closed", 1 => "tripped", _ => "half_open" },
            })
        })
        .collect();
    json!({
        "processes": view.processes,
        "guardrails": guardrails,
        "read_at": view.read_at.map(format_timestamp),
    })
}

/// A budget's key as Redis shows it: `<flag>/<id>` (`*/<id>` for a document-wide budget); the
/// core separates the two with a control character.
pub fn readable_budget_key(key: &str) -> String {
    key.replace('\u{1f}', "/")
}

/// A process id unique in the fleet: the OS pid and 48 random bits.
fn process_id() -> String {
    let mut bytes = [0u8; 6];
    let random = match getrandom::getrandom(&mut bytes) {
        Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        Err(_) => format!("{:x}", Instant::now().elapsed().as_nanos()),
    };
    format!("{}-{random}", std::process::id())
}

/// The background thread.
struct Worker {
    inner: Arc<Inner>,
    flags: WeakFlags,
    connection: Reconnecting,
    lease_script: redis::Script,
    cas_script: redis::Script,
    tally_script: redis::Script,
    sum_script: redis::Script,
    heartbeat_script: redis::Script,
    evidence_script: redis::Script,
    series_script: redis::Script,
    last_guard: Option<Instant>,
    last_heartbeat: Option<Instant>,
}

impl Worker {
    fn new(inner: Arc<Inner>, flags: WeakFlags, connection: Reconnecting) -> Worker {
        Worker {
            inner,
            flags,
            connection,
            lease_script: redis::Script::new(budget::LEASE_SCRIPT),
            cas_script: redis::Script::new(guard::GUARD_CAS_SCRIPT),
            tally_script: redis::Script::new(guard::TALLY_SCRIPT),
            sum_script: redis::Script::new(guard::SUM_SCRIPT),
            heartbeat_script: redis::Script::new(HEARTBEAT_SCRIPT),
            evidence_script: redis::Script::new(evidence::EVIDENCE_SCRIPT),
            series_script: redis::Script::new(series::SERIES_SCRIPT),
            last_guard: None,
            last_heartbeat: None,
        }
    }

    fn run(mut self) {
        loop {
            if self.inner.stop.load(Ordering::Acquire) {
                break;
            }
            let Some(flags) = self.flags.upgrade() else {
                return;
            };
            self.tick(&flags);
            drop(flags);
            std::thread::park_timeout(BUDGET_TICK);
        }
        if let Some(flags) = self.flags.upgrade() {
            self.final_flush(&flags);
        }
    }

    /// Runs one command; a failure marks the fleet disconnected (local mode).
    fn run_command<T>(
        &mut self,
        now: Millis,
        command: impl FnOnce(&mut RedisConnection) -> RedisResult<T>,
    ) -> Option<T> {
        match self.connection.run(command) {
            Ok(value) => {
                self.inner.set_connected(true, None, now);
                Some(value)
            }
            Err(error) => {
                if error.is_unavailable() {
                    self.inner.set_connected(false, Some(&error), now);
                } else {
                    let mut link = lock(&self.inner.link);
                    link.last_error = Some(format!("{}: {error}", error.code()));
                }
                None
            }
        }
    }

    fn tick(&mut self, flags: &Flags) {
        let now = flags.now_millis();
        self.flush_budgets(flags, now);
        self.flush_pins(now);
        let due = |last: Option<Instant>, every: u128| {
            last.is_none_or(|t| t.elapsed().as_millis() >= every)
        };
        if due(self.last_guard, GUARD_EVERY_MS) {
            self.last_guard = Some(Instant::now());
            self.flush_guardrails(flags, now);
            self.install_evidence_sink(flags);
            self.flush_evidence(now);
        }
        if due(self.last_heartbeat, HEARTBEAT_EVERY_MS) {
            self.last_heartbeat = Some(Instant::now());
            self.heartbeat(flags, now);
        }
        if !self.inner.connected.load(Ordering::Acquire) && lock(&self.inner.link).since.is_none() {
            self.inner.set_connected(false, None, now);
        }
    }

    fn budget_windows(flags: &Flags) -> FxHashMap<Box<str>, Millis> {
        let document = flags.document();
        document
            .budgets()
            .iter()
            .chain(document.flags().iter().flat_map(|f| f.budgets.iter()))
            .map(|b| (Box::from(&*b.key), b.window))
            .collect()
    }

    fn flush_budgets(&mut self, flags: &Flags, now: Millis) {
        let windows = Self::budget_windows(flags);
        if windows.is_empty() {
            return;
        }
        let requests = lock(&self.inner.leases).take_requests(now, &windows);
        self.send_lease_requests(requests, now);
    }

    fn send_lease_requests(&mut self, requests: Vec<LeaseRequest>, now: Millis) {
        let mut failed = false;
        for request in requests {
            let answer = if failed {
                None
            } else {
                self.lease(&request, now)
            };
            let mut leases = lock(&self.inner.leases);
            match answer {
                Some(grant) => leases.granted(&request, grant, now),
                None => {
                    failed = true;
                    leases.failed(&request);
                }
            }
        }
        if !failed {
            self.inner.flushes.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn lease(&mut self, request: &LeaseRequest, now: Millis) -> Option<LeaseGrant> {
        let slot_length = (request.window / 60).max(1);
        let key = self.inner.keys.sibling(&format!(
            "budget:{}:{}",
            readable_budget_key(&request.budget_key),
            request.scope
        ));
        let script = self.lease_script.clone();
        let process = self.inner.process_id.clone();
        let reply: Vec<String> = self.run_command(now, |c| {
            script
                .key(&key)
                .arg(&process)
                .arg(now.div_euclid(slot_length))
                .arg(60)
                .arg(request.limit)
                .arg(request.used)
                .arg(request.want)
                .arg(now)
                .arg(budget::LEASE_TTL_MS)
                .arg(request.window + budget::LEASE_TTL_MS)
                .invoke(c)
        })?;
        let number = |i: usize| {
            reply
                .get(i)
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Some(LeaseGrant {
            spent: number(0),
            grant: number(1),
            room_after: number(2),
        })
    }

    fn flush_pins(&mut self, now: Millis) {
        loop {
            let Some(write) = lock(&self.inner.pins).writes.pop_front() else {
                return;
            };
            let done = match &write {
                PinWrite::Set {
                    key,
                    variant,
                    ttl_ms,
                } => self.run_command(now, |c| {
                    redis::cmd("SET")
                        .arg(key)
                        .arg(variant)
                        .arg("PX")
                        .arg(*ttl_ms)
                        .query::<()>(c)
                }),
                PinWrite::Delete { key } => {
                    self.run_command(now, |c| redis::cmd("DEL").arg(key).query::<()>(c))
                }
            };
            if done.is_none() {
                lock(&self.inner.pins).writes.push_front(write);
                return;
            }
        }
    }

    fn guard_config<'d>(
        document: &'d flagrail_core::Document,
        flag: &str,
        guardrail: &str,
    ) -> Option<&'d Guardrail> {
        document
            .flag(flag)?
            .guardrails
            .iter()
            .find(|g| &*g.id == guardrail)
    }

    fn flush_guardrails(&mut self, flags: &Flags, now: Millis) {
        let document = flags.document();
        let (tallies, offers) = {
            let mut pending = lock(&self.inner.tallies);
            (pending.take(), std::mem::take(&mut pending.offers))
        };
        if !tallies.is_empty() {
            let script = self.tally_script.clone();
            let mut invocation = script.prepare_invoke();
            for (flag, variant, guardrail, tally) in &tallies {
                let Some(config) = Self::guard_config(&document, flag, guardrail) else {
                    continue;
                };
                let bucket = guard::bucket_ms(config);
                invocation.key(self.inner.keys.sibling(&format!(
                    "{}:b:{bucket}:{}",
                    guard::guard_key(flag, variant, guardrail),
                    now.div_euclid(bucket)
                )));
                invocation
                    .arg(tally.n)
                    .arg(tally.bad)
                    .arg(tally.sum)
                    .arg(tally.sum_of_squares)
                    .arg(config.window + 2 * bucket);
            }
            if self
                .run_command(now, |c| invocation.invoke::<i64>(c))
                .is_none()
            {
                lock(&self.inner.tallies).restore(tallies);
                lock(&self.inner.tallies).offers.extend(offers);
                return;
            }
        }
        for offer in &offers {
            if let Some(config) = Self::guard_config(&document, &offer.flag, &offer.guardrail) {
                let config = config.clone();
                self.offer(&config, offer, now);
            }
        }
        let mut states = Vec::new();
        for flag in document.flags() {
            for config in &flag.guardrails {
                for &index in &config.variants {
                    let Some(variant) = flag.variants.get(index) else {
                        continue;
                    };
                    let Some(state) = self.decide(flags, &flag.key, &variant.id, config, now)
                    else {
                        return;
                    };
                    let code = match state.trip {
                        None => 0,
                        Some((_, probe_from)) if now >= probe_from => 2,
                        Some(_) => 1,
                    };
                    states.push((
                        flag.key.to_string(),
                        variant.id.to_string(),
                        config.id.to_string(),
                        code,
                    ));
                }
            }
        }
        lock(&self.inner.view).guardrails = states;
    }

    fn read_guard_state(&mut self, key: &str, now: Millis) -> Option<FleetGuard> {
        let fields: FxHashMap<String, String> =
            self.run_command(now, |c| redis::cmd("HGETALL").arg(key).query(c))?;
        Some(guard::parse_state(&fields))
    }

    fn write_guard_state(
        &mut self,
        key: &str,
        expected: i64,
        next: &FleetGuard,
        now: Millis,
    ) -> bool {
        let script = self.cas_script.clone();
        let (since, probe_from) = match next.trip {
            Some((s, p)) => (s.to_string(), p.to_string()),
            None => (String::new(), String::new()),
        };
        let written: Option<i64> = self.run_command(now, |c| {
            script
                .key(key)
                .arg(expected)
                .arg(&since)
                .arg(&probe_from)
                .arg(next.epoch)
                .arg(GUARD_STATE_TTL_MS)
                .invoke(c)
        });
        written == Some(1)
    }

    /// Offers a trip this process decided alone: written when the fleet's state is closed
    /// and the trip is newer than its last recovery.
    fn offer(&mut self, config: &Guardrail, offer: &Offer, now: Millis) {
        let key = self.inner.keys.sibling(&format!(
            "{}:state",
            guard::guard_key(&offer.flag, &offer.variant, &offer.guardrail)
        ));
        let Some(state) = self.read_guard_state(&key, now) else {
            return;
        };
        if state.trip.is_none() && offer.since >= state.epoch {
            let next = FleetGuard {
                trip: Some((offer.since, offer.probe_from)),
                epoch: offer.probe_from.max(offer.since + config.cooldown),
                version: state.version,
            };
            self.write_guard_state(&key, state.version, &next, now);
        }
    }

    /// Reads the fleet's evidence for one guardrail of one variant, moves its state when the
    /// evidence says so, and lays the result over this process. `None`: Redis failed.
    fn decide(
        &mut self,
        flags: &Flags,
        flag: &str,
        variant: &str,
        config: &Guardrail,
        now: Millis,
    ) -> Option<FleetGuard> {
        let prefix = guard::guard_key(flag, variant, &config.id);
        let state_key = self.inner.keys.sibling(&format!("{prefix}:state"));
        let mut state = self.read_guard_state(&state_key, now)?;
        let bucket = guard::bucket_ms(config);
        let from = state.evidence_from(config, now);
        // Only buckets that start at or after `from`: evidence from before a trip or a
        // recovery must not decide what comes after it.
        let first = from.div_euclid(bucket) + i64::from(from.rem_euclid(bucket) != 0);
        let last = now.div_euclid(bucket);
        let mut total = Tally::default();
        if first <= last {
            let script = self.sum_script.clone();
            let mut invocation = script.prepare_invoke();
            for number in first..=last {
                invocation.key(
                    self.inner
                        .keys
                        .sibling(&format!("{prefix}:b:{bucket}:{number}")),
                );
            }
            let sums: Vec<String> = self.run_command(now, |c| invocation.invoke(c))?;
            let field = |i: usize| {
                sums.get(i)
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            total = Tally {
                n: field(0) as u64,
                bad: field(1) as u64,
                sum: field(2),
                sum_of_squares: field(3),
            };
        }
        if let Some(next) = guard::decide(config, &state, &total, now) {
            if self.write_guard_state(&state_key, state.version, &next, now) {
                state = FleetGuard {
                    version: state.version + 1,
                    ..next
                };
            } else {
                state = self.read_guard_state(&state_key, now)?;
            }
        }
        let local = flags.guardrail_trip(flag, variant, &config.id);
        match (state.trip, local) {
            (Some(trip), local) if local != Some(trip) => {
                flags.apply_fleet_trip(flag, variant, &config.id, Some(trip));
            }
            (None, Some((since, probe_from))) => {
                if since < state.epoch {
                    // The fleet recovered after this process tripped: follow it.
                    flags.apply_fleet_trip(flag, variant, &config.id, None);
                } else {
                    // Tripped here after the fleet's last change: offer it (again).
                    lock(&self.inner.tallies).offers.push(Offer {
                        flag: Box::from(flag),
                        variant: Box::from(variant),
                        guardrail: Box::from(&*config.id),
                        since,
                        probe_from,
                    });
                }
            }
            _ => {}
        }
        Some(state)
    }

    /// Listens to the handle's events once its document has an autopilot ramp (sinks stay
    /// for the handle's life; the sink does nothing once this fleet state is closed).
    fn install_evidence_sink(&mut self, flags: &Flags) {
        if self.inner.evidence_sink.get().is_some() || !evidence::has_autopilot(&flags.document()) {
            return;
        }
        let sink: Arc<dyn EventSink> = Arc::new(evidence::EvidenceSink {
            pending: Arc::downgrade(&self.inner.evidence),
            flags: flags.downgrade(),
        });
        // Only this thread installs it, so `set` cannot fail.
        if self.inner.evidence_sink.set(Arc::clone(&sink)).is_ok() {
            flags.add_event_sink(sink);
        }
    }

    /// Adds the pending per-unit evidence into Redis; what fails waits for the next flush.
    fn flush_evidence(&mut self, now: Millis) {
        if self.inner.evidence_sink.get().is_none() {
            return;
        }
        let steps = lock(&self.inner.evidence).take();
        let mut failed = false;
        for (step, units) in steps {
            let step = step.0;
            let hash =
                evidence::step_key(&self.inner.keys, &step.flag, &step.rule_id, step.step_began);
            let dropped_counter =
                evidence::dropped_key(&self.inner.keys, &step.flag, &step.rule_id, step.step_began);
            let mut written = 0;
            if !failed {
                for chunk in units.chunks(evidence::chunk_size()) {
                    let script = self.evidence_script.clone();
                    let dropped = self.run_command(now, |c| {
                        evidence::write_units(c, &script, &hash, &dropped_counter, chunk)
                    });
                    let Some(dropped) = dropped else {
                        failed = true;
                        break;
                    };
                    written += chunk.len();
                    let mut pending = lock(&self.inner.evidence);
                    pending.dropped_in_redis += dropped;
                    pending.flushed_units += chunk.len() as u64;
                }
            }
            if written < units.len() {
                let rest = units.into_iter().skip(written).collect();
                lock(&self.inner.evidence).put_back(&step, rest);
            }
        }
        // The same runs' values over time (what the report charts).
        let points = lock(&self.inner.evidence).series.take();
        if points.is_empty() {
            return;
        }
        if failed {
            lock(&self.inner.evidence).series.put_back(points);
            return;
        }
        let script = self.series_script.clone();
        let keys = self.inner.keys.clone();
        // Kept outside the command until it runs: a connection that fails before running it
        // loses nothing.
        let mut held = Some(points);
        let unwritten = self.run_command(now, |c| {
            let points = held.take().unwrap_or_default();
            Ok::<_, redis::RedisError>(series::write_points(c, &script, &keys, points))
        });
        let back: Vec<_> = held
            .into_iter()
            .flatten()
            .chain(unwritten.into_iter().flatten())
            .collect();
        if !back.is_empty() {
            lock(&self.inner.evidence).series.put_back(back);
        }
    }

    fn heartbeat(&mut self, flags: &Flags, now: Millis) {
        let processes_key = self.inner.keys.sibling("processes");
        let metrics_key = self.inner.keys.sibling("metrics");
        let process = self.inner.process_id.clone();
        let entry = json!({ "at": now, "metrics": flags.metrics(), "guardrails": lock(&self.inner.view).guardrails }).to_string();
        let script = self.heartbeat_script.clone();
        let replies: Option<Vec<Vec<String>>> = self.run_command(now, |c| {
            script
                .key(&processes_key)
                .key(&metrics_key)
                .arg(&process)
                .arg(now)
                .arg(&entry)
                .arg(metrics::METRICS_MAX_AGE_MS)
                .invoke(c)
        });
        let Some(replies) = replies else {
            return;
        };
        let pairs = |i: usize| -> FxHashMap<String, String> {
            replies
                .get(i)
                .map(|flat| {
                    flat.chunks(2)
                        .filter_map(|kv| Some((kv.first()?.clone(), kv.get(1)?.clone())))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (processes, entries) = (pairs(0), pairs(1));
        let alive = processes
            .values()
            .filter_map(|at| at.parse::<Millis>().ok())
            .filter(|at| now - at < ALIVE_MS)
            .count()
            .max(1);
        lock(&self.inner.leases).fleet_size = alive as u64;
        let stale: Vec<&String> = processes
            .iter()
            .filter(|(_, at)| {
                at.parse::<Millis>()
                    .map_or(true, |at| now - at >= metrics::METRICS_MAX_AGE_MS)
            })
            .map(|(p, _)| p)
            .collect();
        for p in stale {
            let p = p.clone();
            self.run_command(now, |c| {
                redis::cmd("HDEL")
                    .arg(&processes_key)
                    .arg(&p)
                    .query::<()>(c)?;
                redis::cmd("HDEL").arg(&metrics_key).arg(&p).query::<()>(c)
            });
        }
        let (merged, count) = merge_entries(entries.values(), now);
        let mut view = lock(&self.inner.view);
        view.metrics = merged;
        view.processes = count;
        view.read_at = Some(now);
    }

    /// On close: flush tallies, report spend and give every lease back (one attempt each).
    fn final_flush(&mut self, flags: &Flags) {
        let now = flags.now_millis();
        self.flush_guardrails(flags, now);
        self.flush_evidence(now);
        self.flush_pins(now);
        let windows = Self::budget_windows(flags);
        let requests = lock(&self.inner.leases).take_all_for_close(&windows);
        self.send_lease_requests(requests, now);
        let processes_key = self.inner.keys.sibling("processes");
        let process = self.inner.process_id.clone();
        self.run_command(now, |c| {
            redis::cmd("HDEL")
                .arg(&processes_key)
                .arg(&process)
                .query::<()>(c)
        });
    }
}

/// Merges published metrics entries (`{"at", "metrics", "guardrails"}`) younger than
/// [`metrics::METRICS_MAX_AGE_MS`]; returns the merge and how many processes it holds.
fn merge_entries<'a>(entries: impl Iterator<Item = &'a String>, now: Millis) -> (Value, usize) {
    let fresh: Vec<Value> = entries
        .filter_map(|raw| serde_json::from_str::<Value>(raw).ok())
        .filter(|e| {
            e.get("at")
                .and_then(Value::as_i64)
                .is_some_and(|at| now - at < metrics::METRICS_MAX_AGE_MS)
        })
        .filter_map(|e| e.get("metrics").cloned())
        .collect();
    (metrics::merge_metrics(&fresh), fresh.len())
}

/// Reads the fleet's metrics once (for `flagrail metrics --redis URL`): the merged JSON (with
/// `$fleet`) and its Prometheus text.
pub fn read_fleet_metrics(
    url: &str,
    document_key: &str,
    timeouts: Timeouts,
) -> Result<(Value, String)> {
    let url = RedisUrl::parse(url)?;
    let keys = KeySpace::new(document_key)?;
    let mut connection = crate::connection::connect(&url, timeouts)?;
    let target = url.to_string();
    let entries: FxHashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys.sibling("metrics"))
        .query(&mut connection)
        .map_err(|e| FleetError::from_redis(&target, &e))?;
    let now = flagrail_core::time::now_millis();
    let (merged, processes) = merge_entries(entries.values(), now);
    // The fleet's guardrail states, as the freshest process saw them.
    let mut guardrails: Vec<(String, String, String, u8)> = Vec::new();
    let freshest = entries
        .values()
        .filter_map(|raw| serde_json::from_str::<Value>(raw).ok())
        .max_by_key(|e| e.get("at").and_then(Value::as_i64).unwrap_or(0));
    if let Some(Value::Array(rows)) = freshest.as_ref().and_then(|e| e.get("guardrails")) {
        for row in rows {
            if let (Some(f), Some(v), Some(g), Some(s)) = (
                row.get(0).and_then(Value::as_str),
                row.get(1).and_then(Value::as_str),
                row.get(2).and_then(Value::as_str),
                row.get(3).and_then(Value::as_u64),
            ) {
                guardrails.push((f.into(), v.into(), g.into(), s as u8));
            }
        }
    }
    let text = metrics::fleet_prometheus(&merged, processes, &guardrails);
    let view = FleetView {
        metrics: merged.clone(),
        processes,
        guardrails,
        read_at: Some(now),
    };
    let mut json = merged;
    if let Value::Object(map) = &mut json {
        map.insert("$fleet".into(), fleet_summary(&view));
    }
    let _ = connection.is_open();
    Ok((json, text))
}
