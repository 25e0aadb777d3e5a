//! Telemetry events and their sinks.
//!
//! Every exposure (a `call` or a tracker starting, or a read on a handle with exposures on), every attempt outcome, every feedback,
//! every guardrail and budget transition and every document load is an [`Event`]: a JSON object
//! tagged with its `type` and `time`. Each kind has a typed body here ([`EventBody`]), so the
//! fields of an event are declared in one place and serialised the same way for every sink
//! and both bindings. Sinks receive events synchronously on the thread that produced them,
//! after the runtime's locks are released (a sink may call back into the handle).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One telemetry event as sinks receive it: a JSON object with at least `type` and `time`.
pub type Event = Value;

/// Every kind of event, with its `type` (the variant's name in snake case) and its fields in
/// the order they are written. docs/runtime.md lists them.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum EventBody<'a> {
    Exposure(Exposure<'a>),
    Outcome(Outcome<'a>),
    Feedback(Feedback<'a>),
    GuardrailTrip(GuardrailChange<'a>),
    GuardrailProbe(GuardrailChange<'a>),
    GuardrailRecover(GuardrailChange<'a>),
    BudgetExhausted(BudgetChange<'a>),
    BudgetRestored(BudgetChange<'a>),
    Reload(Reload<'a>),
    ReloadRejected(ReloadRejected<'a>),
}

impl EventBody<'_> {
    /// The event as sinks receive it.
    pub(crate) fn to_event(&self) -> Event {
        // Serialising these structs cannot fail (string keys, no custom serialisers); a
        // failure would give `null`, which sinks ignore, rather than a panic.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// `exposure`: a call or a tracker started (`source` `"run"`), or, on a handle with exposures
/// on, a plain read was the first of its unit, flag and revision in the window (`source`
/// `"read"`, `run_id` `null`; see [`crate::runtime::exposures`]).
#[derive(Debug, Clone, Serialize)]
pub struct Exposure<'a> {
    pub(crate) time: String,
    pub(crate) run_id: Option<&'a str>,
    pub(crate) flag: &'a str,
    pub(crate) variant: Option<&'a str>,
    pub(crate) revision: &'a str,
    pub(crate) reason: &'a str,
    pub(crate) rule_id: Option<&'a str>,
    pub(crate) bucket: Option<u32>,
    pub(crate) model: Option<&'a str>,
    pub(crate) shadow: bool,
    pub(crate) unit: Option<String>,
    pub(crate) segment: Option<&'a str>,
    /// `"run"` (a call or a tracker) or `"read"` (a plain read).
    pub(crate) source: &'static str,
}

/// `exposure` events of calls and trackers.
pub(crate) const EXPOSURE_OF_RUN: &str = "run";
/// `exposure` events of plain reads.
pub const EXPOSURE_OF_READ: &str = "read";

/// `outcome`: one attempt ended.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome<'a> {
    pub(crate) time: String,
    pub(crate) run_id: &'a str,
    pub(crate) flag: &'a str,
    pub(crate) variant: &'a str,
    pub(crate) revision: &'a str,
    pub(crate) rule_id: Option<&'a str>,
    pub(crate) model: Option<&'a str>,
    /// 1 for the first attempt of the run.
    pub(crate) attempt: usize,
    pub(crate) fallback: bool,
    pub(crate) shadow: bool,
    /// `success`, `error`, or `cancelled` (the caller gave the attempt up: see
    /// `Run::cancel`).
    pub(crate) outcome: &'static str,
    pub(crate) error_kind: Option<&'static str>,
    pub(crate) latency_ms: f64,
    pub(crate) input_tokens: Option<u64>,
    pub(crate) output_tokens: Option<u64>,
    pub(crate) cost: Option<f64>,
    pub(crate) unit: Option<String>,
    pub(crate) segment: Option<&'a str>,
    /// The function's output, for runs with a shadow (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) output: Option<Value>,
}

/// `feedback`: a score or a quality counted for a run (only values that counted).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Feedback<'a> {
    pub(crate) time: String,
    pub(crate) run_id: &'a str,
    pub(crate) flag: &'a str,
    pub(crate) variant: &'a str,
    pub(crate) revision: &'a str,
    pub(crate) model: Option<&'a str>,
    pub(crate) segment: Option<&'a str>,
    pub(crate) score: Option<f64>,
    pub(crate) quality: Option<f64>,
}

/// `guardrail_trip`, `guardrail_probe`, `guardrail_recover`: a guardrail moved.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GuardrailChange<'a> {
    pub(crate) time: String,
    pub(crate) flag: &'a str,
    pub(crate) variant: &'a str,
    pub(crate) revision: &'a str,
    pub(crate) guardrail: &'a str,
    pub(crate) metric: &'static str,
    pub(crate) threshold: f64,
    pub(crate) action: &'static str,
    pub(crate) samples: Option<u64>,
    pub(crate) observed: Option<f64>,
    pub(crate) bound: Option<f64>,
    pub(crate) since: Option<String>,
    pub(crate) probe_from: Option<String>,
}

/// `budget_exhausted`, `budget_restored`: a budget's room changed for one scope.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BudgetChange<'a> {
    pub(crate) time: String,
    pub(crate) flag: Option<&'a str>,
    pub(crate) budget: &'a str,
    pub(crate) per: Option<&'a str>,
    /// The unit (hashed when a key is set) of a per-unit budget; `null` otherwise.
    pub(crate) scope: Option<String>,
    pub(crate) measure: &'static str,
    pub(crate) limit: f64,
    pub(crate) window: String,
    pub(crate) action: &'static str,
    pub(crate) spent: f64,
    pub(crate) reserved: f64,
}

/// `reload`: a new document went live.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Reload<'a> {
    pub(crate) time: String,
    pub(crate) source: &'a str,
    pub(crate) previous: &'a str,
    pub(crate) revision: &'a str,
    /// Documents that went live after the first, this one included.
    pub(crate) reloads: u64,
}

/// One problem of a rejected document.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProblemReport<'a> {
    pub(crate) path: &'a str,
    pub(crate) code: &'static str,
    pub(crate) message: &'a str,
}

/// `reload_rejected`: a document was rejected; `revision` (the live one) stays.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReloadRejected<'a> {
    pub(crate) time: String,
    pub(crate) source: &'a str,
    pub(crate) revision: &'a str,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) problems: Vec<ProblemReport<'a>>,
    /// Documents rejected so far, this one included.
    pub(crate) rejected: u64,
}

impl<'a> ReloadRejected<'a> {
    pub fn new(
        time: String,
        source: &'a str,
        revision: &'a str,
        error: &'a Error,
        rejected: u64,
    ) -> ReloadRejected<'a> {
        ReloadRejected {
            time,
            source,
            revision,
            code: error.code(),
            message: error.to_string(),
            problems: error
                .problems()
                .iter()
                .map(|p| ProblemReport {
                    path: &p.path,
                    code: p.code(),
                    message: &p.message,
                })
                .collect(),
            rejected,
        }
    }
}

/// Receives events.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: &Event);
}

/// Appends one JSON object per line to a file.
///
/// Safe with concurrent writers, threads and processes alike: the file is opened with
/// `O_APPEND` and every event is written with a single `write` of one complete line, so lines
/// from different writers never interleave (Linux appends each such write atomically at the
/// end of a local file). No lock is needed for that, and none is taken: a lock held by a
/// writing thread at a `fork()` would stay held in the child. A write error is counted, never
/// raised: telemetry must not fail a call.
pub struct JsonLinesSink {
    path: PathBuf,
    file: File,
    failures: std::sync::atomic::AtomicU64,
}

impl JsonLinesSink {
    pub fn open(path: impl AsRef<Path>) -> Result<JsonLinesSink> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|err| Error::SourceUnreachable {
                source: path.display().to_string(),
                detail: format!("cannot open the events file: {err}"),
            })?;
        Ok(JsonLinesSink {
            path,
            file,
            failures: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes that failed (disk full, file removed …).
    pub fn failures(&self) -> u64 {
        self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl EventSink for JsonLinesSink {
    fn emit(&self, event: &Event) {
        let mut line = event.to_string().into_bytes();
        line.push(b'\n');
        // `&File` writes without `&mut`: one `write` call per line in the usual case.
        if (&self.file).write_all(&line).is_err() {
            self.failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("path", &self.path)
            .finish()
    }
}

/// Calls a closure per event.
pub struct CallbackSink<F: Fn(&Event) + Send + Sync>(pub F);

impl<F: Fn(&Event) + Send + Sync> EventSink for CallbackSink<F> {
    fn emit(&self, event: &Event) {
        (self.0)(event)
    }
}

/// Replaces unit ids in events by a keyed hash, so that no raw id leaves the process while
/// events of one unit can still be joined: HMAC-SHA-256 with the operator's key, first 16
/// bytes in hex, prefixed `h:`.
#[derive(Clone)]
pub(crate) struct UnitHasher {
    inner_pad: Arc<[u8; 64]>,
    outer_pad: Arc<[u8; 64]>,
}

impl std::fmt::Debug for UnitHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnitHasher(<key>)")
    }
}

impl UnitHasher {
    pub fn new(key: &[u8]) -> UnitHasher {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut inner_pad = [0x36u8; 64];
        let mut outer_pad = [0x5cu8; 64];
        for i in 0..64 {
            inner_pad[i] ^= block[i];
            outer_pad[i] ^= block[i];
        }
        UnitHasher {
            inner_pad: Arc::new(inner_pad),
            outer_pad: Arc::new(outer_pad),
        }
    }

    /// `h:` + the first 16 bytes of HMAC-SHA-256(key, unit), lowercase hex.
    pub(crate) fn hash(&self, unit: &str) -> String {
        let inner = Sha256::new()
            .chain_update(&self.inner_pad[..])
            .chain_update(unit.as_bytes())
            .finalize();
        let mac = Sha256::new()
            .chain_update(&self.outer_pad[..])
            .chain_update(inner)
            .finalize();
        let mut out = String::with_capacity(34);
        out.push_str("h:");
        for byte in &mac[..16] {
            out.push(char::from(HEX[(byte >> 4) as usize]));
            out.push(char::from(HEX[(byte & 15) as usize]));
        }
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_hash_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let h = UnitHasher::new(b"Jefe").hash("what do ya want for nothing?");
        assert_eq!(h, "h:5bdcc146bf60754e6a042426089575c7");
        // Keys longer than a block are hashed first (RFC 4231 test case 6).
        let long = UnitHasher::new(&[0xaa; 131])
            .hash("Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(long, "h:60e431591ee0b67f0d8a26aacbf5b77f");
    }

    #[test]
    fn json_lines_sink_appends_whole_lines() {
        let dir = std::env::temp_dir().join(format!("flagrail-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let _ = std::fs::remove_file(&path);
        let sink = Arc::new(JsonLinesSink::open(&path).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || {
                    for i in 0..500 {
                        sink.emit(&serde_json::json!({ "type": "test", "thread": t, "i": i, "pad": "x".repeat(i % 300) }));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2000);
        assert_eq!(sink.failures(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
