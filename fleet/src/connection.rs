//! Connecting to Redis: URLs, one connection type for a single server and a Redis Cluster,
//! timeouts, reconnection with backoff, typed errors and key names.
//!
//! URL forms ([`RedisUrl::parse`]):
//!
//! - `redis://[user:password@]host:port[/db]`: one server (db defaults to 0);
//! - `redis+cluster://[user:password@]host1:port1,host2:port2,...`: a Redis Cluster, given
//!   by any of its nodes (the others are discovered); cluster mode has only db 0.
//!
//! `rediss://` (TLS) and `unix://` are not supported by this build: they are rejected with
//! `REDIS_URL_INVALID` rather than silently connecting in clear text.

use std::fmt;
use std::time::{Duration, Instant};

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{Client, Cmd, ConnectionLike, RedisResult, Value};

/// The scheme of a single-server URL.
pub const SINGLE_SCHEME: &str = "redis://";
/// The scheme of a Redis Cluster URL (a comma-separated list of seed nodes).
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// Every error this crate returns, each with a stable code (never renamed; see
/// docs/fleet.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetError {
    /// A Redis URL that does not parse or names an unsupported scheme.
    InvalidUrl { url: String, reason: String },
    /// Redis could not be reached (refused, reset, timed out, or waiting out a backoff).
    Unavailable { target: String, detail: String },
    /// Redis answered with an error (wrong type at a key, a script error, ...).
    CommandFailed { target: String, detail: String },
    /// A compare-and-set lost to concurrent writers too many times in a row.
    Conflict { key: String, attempts: u32 },
    /// A core error (a rejected document, a bad signature), with the core's own code.
    Core(flagrail_core::Error),
}

impl FleetError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            FleetError::InvalidUrl { .. } => "REDIS_URL_INVALID",
            FleetError::Unavailable { .. } => "REDIS_UNAVAILABLE",
            FleetError::CommandFailed { .. } => "REDIS_COMMAND_FAILED",
            FleetError::Conflict { .. } => "REDIS_CONFLICT",
            FleetError::Core(error) => error.code(),
        }
    }

    /// Classifies an error of the `redis` crate: connection-level failures (which call for a
    /// reconnect) are `REDIS_UNAVAILABLE`, answers of the server are `REDIS_COMMAND_FAILED`.
    pub fn from_redis(target: &str, error: &redis::RedisError) -> FleetError {
        if is_connection_error(error) {
            FleetError::Unavailable {
                target: target.to_string(),
                detail: error.to_string(),
            }
        } else {
            FleetError::CommandFailed {
                target: target.to_string(),
                detail: error.to_string(),
            }
        }
    }

    /// Whether this error means the connection is gone (so it should be dropped and
    /// re-established with backoff).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, FleetError::Unavailable { .. })
    }
}

/// Whether a `redis` crate error means the connection (not the command) failed.
pub fn is_connection_error(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
        || error.is_cluster_error()
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetError::InvalidUrl { url, reason } => {
                write!(f, "invalid Redis URL {url:?}: {reason} [REDIS_URL_INVALID]")
            }
            FleetError::Unavailable { target, detail } => {
                write!(f, "Redis at {target} is unavailable: {detail} [REDIS_UNAVAILABLE]")
            }
            FleetError::CommandFailed { target, detail } => {
                write!(f, "Redis at {target} refused a command: {detail} [REDIS_COMMAND_FAILED]")
            }
            FleetError::Conflict { key, attempts } => write!(
                f,
                "the document at {key} kept changing under a read-modify-write ({attempts} attempts) [REDIS_CONFLICT]"
            ),
            FleetError::Core(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for FleetError {}

impl From<flagrail_core::Error> for FleetError {
    fn from(error: flagrail_core::Error) -> FleetError {
        FleetError::Core(error)
    }
}

/// A fleet error as a core error, for the bindings (which map core codes to exceptions): a
/// bad URL is `INVALID_ARGUMENT`, every Redis failure is `SOURCE_UNREACHABLE` with the Redis
/// code in its detail, and a core error stays itself.
impl From<FleetError> for flagrail_core::Error {
    fn from(error: FleetError) -> flagrail_core::Error {
        match error {
            FleetError::InvalidUrl { .. } => flagrail_core::Error::InvalidArgument {
                message: error.to_string(),
            },
            FleetError::Unavailable { ref target, .. }
            | FleetError::CommandFailed { ref target, .. } => {
                flagrail_core::Error::SourceUnreachable {
                    source: format!("redis:{target}"),
                    detail: error.to_string(),
                }
            }
            FleetError::Conflict { ref key, .. } => flagrail_core::Error::SourceUnreachable {
                source: format!("redis:{key}"),
                detail: error.to_string(),
            },
            FleetError::Core(error) => error,
        }
    }
}

pub type Result<T, E = FleetError> = std::result::Result<T, E>;

/// Where Redis is: one server or the seed nodes of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    Single { host: String, port: u16, db: i64 },
    Cluster { nodes: Vec<(String, u16)> },
}

/// A parsed Redis URL. [`fmt::Display`] never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub topology: Topology,
    username: Option<String>,
    password: Option<String>,
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("topology", &self.topology)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.topology {
            Topology::Single { host, port, db } => write!(f, "redis://{host}:{port}/{db}"),
            Topology::Cluster { nodes } => {
                write!(f, "redis+cluster://")?;
                for (index, (host, port)) in nodes.iter().enumerate() {
                    if index > 0 {
                        write!(f, ",")?;
                    }
                    write!(f, "{host}:{port}")?;
                }
                Ok(())
            }
        }
    }
}

impl RedisUrl {
    /// Parses `redis://…` or `redis+cluster://…` (see the module docs).
    pub fn parse(url: &str) -> Result<RedisUrl> {
        let invalid = |reason: &str| FleetError::InvalidUrl {
            url: redact(url),
            reason: reason.to_string(),
        };
        let (cluster, rest) = if let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix(SINGLE_SCHEME) {
            (false, rest)
        } else if url.starts_with("rediss://") || url.starts_with("rediss+cluster://") {
            return Err(invalid("TLS (rediss://) is not supported by this build"));
        } else {
            return Err(invalid(
                "expected redis://host:port[/db] or redis+cluster://host:port,host:port,...",
            ));
        };
        if rest.contains('?') || rest.contains('#') {
            return Err(invalid("query parameters and fragments are not supported"));
        }
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (Some(userinfo), rest),
            None => (None, rest),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => match userinfo.split_once(':') {
                Some((user, password)) => (
                    (!user.is_empty()).then(|| user.to_string()),
                    Some(password.to_string()),
                ),
                None => (None, Some(userinfo.to_string())),
            },
        };
        let (hosts, db) = match rest.split_once('/') {
            Some((hosts, "")) => (hosts, 0),
            Some((hosts, db)) => (
                hosts,
                db.parse::<i64>()
                    .ok()
                    .filter(|db| *db >= 0)
                    .ok_or_else(|| invalid("the database after / must be a number >= 0"))?,
            ),
            None => (rest, 0),
        };
        let mut nodes = Vec::new();
        for node in hosts.split(',') {
            nodes.push(parse_host_port(node).map_err(|reason| invalid(&reason))?);
        }
        let topology = if cluster {
            if db != 0 {
                return Err(invalid("a Redis Cluster has only database 0"));
            }
            Topology::Cluster { nodes }
        } else {
            if nodes.len() != 1 {
                return Err(invalid(
                    "redis:// names one server; use redis+cluster:// for a list of cluster nodes",
                ));
            }
            let (host, port) = nodes.remove(0);
            Topology::Single { host, port, db }
        };
        Ok(RedisUrl {
            topology,
            username,
            password,
        })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.topology, Topology::Cluster { .. })
    }

    /// The URL of one node for the `redis` crate (credentials included).
    fn node_url(&self, host: &str, port: u16, db: i64) -> String {
        let auth = match (&self.username, &self.password) {
            (Some(user), Some(password)) => format!("{user}:{password}@"),
            (None, Some(password)) => format!(":{password}@"),
            (Some(user), None) => format!("{user}@"),
            (None, None) => String::new(),
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        format!("redis://{auth}{host}:{port}/{db}")
    }

    /// One URL per node (for a single server, just that one), in the given order.
    fn node_urls(&self) -> Vec<String> {
        match &self.topology {
            Topology::Single { host, port, db } => vec![self.node_url(host, *port, *db)],
            Topology::Cluster { nodes } => nodes
                .iter()
                .map(|(host, port)| self.node_url(host, *port, 0))
                .collect(),
        }
    }
}

/// The URL with any password replaced by `***`, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

fn parse_host_port(node: &str) -> std::result::Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = node.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed [ in {node:?}"))?;
        (host, after.strip_prefix(':').unwrap_or(""))
    } else {
        match node.rsplit_once(':') {
            Some((host, port)) => (host, port),
            None => (node, ""),
        }
    };
    if host.is_empty() {
        return Err(format!("missing host in {node:?}"));
    }
    let port = if port.is_empty() {
        6379
    } else {
        port.parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("port {port:?} is not a number in 1..=65535"))?
    };
    Ok((host.to_string(), port))
}

/// How long a connection may take to open and how long one reply may take. A slow Redis
/// then costs an error (and a reconnect), never an unbounded wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_millis(1000),
            read: Duration::from_millis(1000),
            write: Duration::from_millis(1000),
        }
    }
}

/// One connection to a single server or to a Redis Cluster; both implement
/// [`ConnectionLike`], so commands and scripts are written once.
pub enum RedisConnection {
    Single(redis::Connection),
    Cluster(Box<ClusterConnection>),
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisConnection::Single(_) => f.write_str("RedisConnection::Single"),
            RedisConnection::Cluster(_) => f.write_str("RedisConnection::Cluster"),
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            RedisConnection::Single(connection) => connection.req_packed_command(cmd),
            RedisConnection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            RedisConnection::Single(connection) => {
                connection.req_packed_commands(cmd, offset, count)
            }
            RedisConnection::Cluster(connection) => {
                connection.req_packed_commands(cmd, offset, count)
            }
        }
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            RedisConnection::Single(connection) => connection.req_command(cmd),
            RedisConnection::Cluster(connection) => connection.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(connection) => connection.get_db(),
            RedisConnection::Cluster(connection) => connection.get_db(),
        }
    }

    fn supports_pipelining(&self) -> bool {
        match self {
            RedisConnection::Single(connection) => connection.supports_pipelining(),
            RedisConnection::Cluster(connection) => connection.supports_pipelining(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            RedisConnection::Single(connection) => connection.check_connection(),
            RedisConnection::Cluster(connection) => connection.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            RedisConnection::Single(connection) => connection.is_open(),
            RedisConnection::Cluster(connection) => connection.is_open(),
        }
    }
}

/// Opens a connection for commands (for a cluster: one that routes by slot and follows
/// MOVED/ASK).
pub fn connect(url: &RedisUrl, timeouts: Timeouts) -> Result<RedisConnection> {
    let target = url.to_string();
    let fail = |error: redis::RedisError| FleetError::from_redis(&target, &error);
    match &url.topology {
        Topology::Single { .. } => {
            let client = Client::open(url.node_urls().remove(0)).map_err(fail)?;
            let connection = client
                .get_connection_with_timeout(timeouts.connect)
                .map_err(|error| FleetError::Unavailable {
                    target: target.clone(),
                    detail: error.to_string(),
                })?;
            connection
                .set_read_timeout(Some(timeouts.read))
                .map_err(fail)?;
            connection
                .set_write_timeout(Some(timeouts.write))
                .map_err(fail)?;
            Ok(RedisConnection::Single(connection))
        }
        Topology::Cluster { .. } => {
            let client = ClusterClient::builder(url.node_urls())
                .connection_timeout(timeouts.connect)
                .response_timeout(timeouts.read.max(timeouts.write))
                // The caller owns retrying (with its own backoff); one quick retry covers a
                // MOVED after a resharding.
                .retries(1)
                .build()
                .map_err(fail)?;
            let connection = client
                .get_connection()
                .map_err(|error| FleetError::Unavailable {
                    target: target.clone(),
                    detail: error.to_string(),
                })?;
            connection
                .set_read_timeout(Some(timeouts.read))
                .map_err(fail)?;
            connection
                .set_write_timeout(Some(timeouts.write))
                .map_err(fail)?;
            Ok(RedisConnection::Cluster(Box::new(connection)))
        }
    }
}

/// Opens a plain connection to one node, for pub/sub: in a cluster a classic `PUBLISH`
/// reaches every node, so a subscriber on any one node hears every message. Nodes are tried
/// in the order of the URL. The read timeout is left to the caller (a subscriber waits in
/// short slices so that it can notice a stop).
pub fn connect_one_node(url: &RedisUrl, timeouts: Timeouts) -> Result<redis::Connection> {
    let target = url.to_string();
    let mut last_error = None;
    for node in url.node_urls() {
        let attempt = Client::open(node)
            .and_then(|client| client.get_connection_with_timeout(timeouts.connect))
            .and_then(|connection| {
                connection.set_write_timeout(Some(timeouts.write))?;
                Ok(connection)
            });
        match attempt {
            Ok(connection) => return Ok(connection),
            Err(error) => last_error = Some(error.to_string()),
        }
    }
    Err(FleetError::Unavailable {
        target,
        detail: last_error.unwrap_or_else(|| "no node to connect to".to_string()),
    })
}

/// Exponential backoff with jitter between reconnection attempts: the delay doubles from
/// `initial` up to `max`, and each wait is drawn uniformly from its upper half, so a fleet
/// that lost Redis together does not reconnect in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial: initial.max(Duration::from_millis(1)),
            max: max.max(initial),
            failures: 0,
        }
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let exponent = self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        let ceiling = self.initial.saturating_mul(1u32 << exponent).min(self.max);
        let half = ceiling / 2;
        half + half.mul_f64(random_unit())
    }

    /// Records a success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A number in [0, 1) from the OS random source (0.5 if it is unavailable: the jitter is a
/// courtesy, not a security property).
fn random_unit() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

/// A command connection that is opened on first use and re-opened after a failure, no
/// sooner than its [`Backoff`] allows (attempts in between fail at once with
/// `REDIS_UNAVAILABLE`, so callers never wait on a dead server).
#[derive(Debug)]
pub struct Reconnecting {
    url: RedisUrl,
    timeouts: Timeouts,
    backoff: Backoff,
    connection: Option<RedisConnection>,
    retry_at: Option<Instant>,
    last_error: Option<FleetError>,
}

impl Reconnecting {
    pub fn new(url: RedisUrl, timeouts: Timeouts, backoff: Backoff) -> Reconnecting {
        Reconnecting {
            url,
            timeouts,
            backoff,
            connection: None,
            retry_at: None,
            last_error: None,
        }
    }

    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// Whether a connection is open (as of the last command).
    pub fn is_connected(&self) -> bool {
        self.connection.is_some()
    }

    /// The error that closed the last connection or failed the last attempt.
    pub fn last_error(&self) -> Option<&FleetError> {
        self.last_error.as_ref()
    }

    /// Runs `command` on the connection, opening it first when needed. A connection-level
    /// failure drops the connection and schedules the next attempt by the backoff.
    pub fn run<T>(
        &mut self,
        command: impl FnOnce(&mut RedisConnection) -> RedisResult<T>,
    ) -> Result<T> {
        let mut command = Some(command);
        self.attempt(&mut |connection| match command.take() {
            Some(command) => command(connection),
            None => Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "a command runs once",
            ))),
        })
    }

    /// [`Reconnecting::run`] for a command that may run twice: a connection that was open
    /// may have died since its last use (Redis restarted, an idle timeout), so the first
    /// connection failure on it is retried once on a fresh connection, and a Redis that is
    /// back answers now rather than after a backoff.
    pub fn run_retrying<T>(
        &mut self,
        mut command: impl FnMut(&mut RedisConnection) -> RedisResult<T>,
    ) -> Result<T> {
        let had_connection = self.connection.is_some();
        match self.attempt(&mut command) {
            Err(error) if had_connection && error.is_unavailable() => {
                self.retry_at = None;
                self.attempt(&mut command)
            }
            outcome => outcome,
        }
    }

    fn attempt<T>(
        &mut self,
        command: &mut impl FnMut(&mut RedisConnection) -> RedisResult<T>,
    ) -> Result<T> {
        if self.connection.is_none() {
            if let Some(retry_at) = self.retry_at {
                if Instant::now() < retry_at {
                    return Err(self.last_error.clone().unwrap_or_else(|| {
                        FleetError::Unavailable {
                            target: self.url.to_string(),
                            detail: "waiting to reconnect".to_string(),
                        }
                    }));
                }
            }
            match connect(&self.url, self.timeouts) {
                Ok(connection) => self.connection = Some(connection),
                Err(error) => return Err(self.failed(error)),
            }
        }
        let Some(connection) = self.connection.as_mut() else {
            return Err(FleetError::Unavailable {
                target: self.url.to_string(),
                detail: "no connection".to_string(),
            });
        };
        match command(connection) {
            Ok(value) => {
                self.backoff.reset();
                self.retry_at = None;
                self.last_error = None;
                Ok(value)
            }
            Err(error) => {
                let error = FleetError::from_redis(&self.url.to_string(), &error);
                if error.is_unavailable() {
                    self.connection = None;
                    Err(self.failed(error))
                } else {
                    Err(error)
                }
            }
        }
    }

    /// Forces the next [`Reconnecting::run`] to try at once (after a pub/sub message said
    /// Redis is back, for example).
    pub fn retry_now(&mut self) {
        self.retry_at = None;
    }

    fn failed(&mut self, error: FleetError) -> FleetError {
        self.retry_at = Some(Instant::now() + self.backoff.next_delay());
        self.last_error = Some(error.clone());
        error
    }
}

/// The names of every Redis key of one flag document. All share the document key's hash
/// tag, so a Lua script or transaction that touches several of them stays in one cluster
/// slot.
///
/// The document lives exactly at the key the user names (`flagrail:document` by default).
/// Its siblings are `flagrail:{<key>}:<suffix>`: Redis Cluster hashes only the text between
/// the first `{` and the next `}`, so `flagrail:{flagrail:document}:revision` lands in the
/// slot of `flagrail:document`. A key that already carries a hash tag (`app:{tenant}:flags`)
/// keeps it: its siblings are `<key>:<suffix>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpace {
    document: String,
    prefix: String,
}

/// The default key of the flag document.
pub const DEFAULT_DOCUMENT_KEY: &str = "flagrail:document";

impl KeySpace {
    pub fn new(document_key: &str) -> Result<KeySpace> {
        if document_key.is_empty() {
            return Err(FleetError::Core(flagrail_core::Error::InvalidArgument {
                message: "the Redis key of the document is empty".to_string(),
            }));
        }
        let prefix = if has_hash_tag(document_key) {
            format!("{document_key}:")
        } else {
            format!("flagrail:{{{document_key}}}:")
        };
        Ok(KeySpace {
            document: document_key.to_string(),
            prefix,
        })
    }

    /// The key that holds the document's JSON.
    pub fn document(&self) -> &str {
        &self.document
    }

    /// A sibling key in the same slot: `revision`, `signature`, `audit`, or any name the
    /// shared state needs (`budget:<flag>:<id>` …).
    pub fn sibling(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// The counter bumped by every push: the document's revision.
    pub fn revision(&self) -> String {
        self.sibling("revision")
    }

    /// The detached signature (base64, as `flagrail sign` writes) of the document.
    pub fn signature(&self) -> String {
        self.sibling("signature")
    }

    /// The stream of audit records (kill, unkill, push).
    pub fn audit(&self) -> String {
        self.sibling("audit")
    }

    /// The pub/sub channel on which every push announces its revision.
    pub fn channel(&self) -> String {
        self.sibling("changed")
    }
}

/// Whether Redis Cluster would hash `key` by a tag: a `{` followed later by a `}` with at
/// least one character between them.
fn has_hash_tag(key: &str) -> bool {
    match key.find('{') {
        Some(open) => key[open + 1..].find('}').is_some_and(|close| close > 0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_server_urls_parse_with_defaults() {
        let url = RedisUrl::parse("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(
            url.topology,
            Topology::Single {
                host: "127.0.0.1".into(),
                port: 6380,
                db: 2
            }
        );
        let url = RedisUrl::parse("redis://localhost").unwrap();
        assert_eq!(url.to_string(), "redis://localhost:6379/0");
    }

    #[test]
    fn cluster_urls_list_their_seed_nodes() {
        let url = RedisUrl::parse("redis+cluster://127.0.0.1:7000,127.0.0.1:7001").unwrap();
        assert!(url.is_cluster());
        assert_eq!(url.node_urls().len(), 2);
        assert_eq!(
            url.to_string(),
            "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"
        );
    }

    #[test]
    fn passwords_never_show() {
        let url = RedisUrl::parse("redis://user:s3cret@127.0.0.1:7000").unwrap();
        assert!(!url.to_string().contains("s3cret"));
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(url.node_urls()[0].contains("user:s3cret@"));
        let error = RedisUrl::parse("redis://user:s3cret@host:notaport").unwrap_err();
        assert!(!error.to_string().contains("s3cret"));
    }

    #[test]
    fn bad_urls_name_the_reason() {
        for (url, reason) in [
            ("http://x", "expected redis://"),
            ("rediss://x:1", "TLS"),
            ("redis://h:1,h:2", "redis+cluster://"),
            ("redis+cluster://h:1/3", "only database 0"),
            ("redis://h:0", "port"),
            ("redis://h:1/x", "database"),
            ("redis://:1", "missing host"),
            ("redis://h:1?db=2", "query"),
        ] {
            let error = RedisUrl::parse(url).unwrap_err();
            assert_eq!(error.code(), "REDIS_URL_INVALID");
            assert!(error.to_string().contains(reason), "{url}: {error}");
        }
    }

    #[test]
    fn sibling_keys_share_the_document_keys_hash_tag() {
        let keys = KeySpace::new("flagrail:document").unwrap();
        assert_eq!(keys.document(), "flagrail:document");
        assert_eq!(keys.revision(), "flagrail:{flagrail:document}:revision");
        let tagged = KeySpace::new("app:{tenant-1}:flags").unwrap();
        assert_eq!(tagged.audit(), "app:{tenant-1}:flags:audit");
        // `{}` is not a tag: the whole key is hashed, so wrap it.
        let empty_tag = KeySpace::new("a{}b").unwrap();
        assert_eq!(empty_tag.channel(), "flagrail:{a{}b}:changed");
        assert_eq!(KeySpace::new("").unwrap_err().code(), "INVALID_ARGUMENT");
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling_with_jitter_in_the_upper_half() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let ceilings = [100, 200, 400, 800, 800];
        for ceiling in ceilings {
            let delay = backoff.next_delay();
            assert!(delay >= Duration::from_millis(ceiling / 2), "{delay:?}");
            assert!(delay <= Duration::from_millis(ceiling), "{delay:?}");
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn an_unreachable_server_is_unavailable_and_waits_out_the_backoff() {
        // A port nothing listens on (bound then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
        let mut connection = Reconnecting::new(
            url,
            Timeouts::default(),
            Backoff::new(Duration::from_secs(60), Duration::from_secs(60)),
        );
        let first = connection
            .run(|c| redis::cmd("PING").query::<String>(c))
            .unwrap_err();
        assert_eq!(first.code(), "REDIS_UNAVAILABLE");
        // Within the backoff the next call fails at once, with the same error.
        let second = connection
            .run(|c| redis::cmd("PING").query::<String>(c))
            .unwrap_err();
        assert_eq!(second, first);
        assert!(!connection.is_connected());
    }
}
