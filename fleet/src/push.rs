//! Writing the document in Redis: `flagrail push`, and `kill` / `unkill` / `status` with
//! `--redis`.
//!
//! Every write is one Lua script over the keys of one document (one hash tag, one cluster
//! slot), so it is atomic and ordered: set the document and its signature (or delete a stale
//! signature), bump the push counter, append the audit record to the stream (capped with
//! `MAXLEN ~`), and publish the new counter on the channel. A kill is a read-modify-write: it
//! reads document and counter, applies the change to the text with the core's
//! [`edit_kill`] (the same edit as a kill of a file: only the switch and the revision
//! change), and writes only if the counter has not moved since the read (compare-and-set in
//! the script); a lost race is retried on the new document.

use flagrail_core::admin::{edit_kill, edit_ramp, KillChange, RampChange, SwitchState, Target};
use flagrail_core::autopilot::RampFields;
use flagrail_core::time::format_timestamp;
use flagrail_core::{Document, Error};
use flagrail_sources::{PrivateKey, VerifyKey};
use redis::{Script, Value as RedisValue};
use serde_json::{json, Value};

use crate::connection::{
    connect, connect_one_node, FleetError, KeySpace, RedisConnection, RedisUrl, Result, Timeouts,
};

/// The audit stream keeps about this many records (`XADD … MAXLEN ~`).
pub const AUDIT_STREAM_LENGTH: u64 = 10_000;
/// How many times a kill re-reads and retries after losing a compare-and-set.
pub const MAX_KILL_ATTEMPTS: u32 = 10;

/// KEYS: document, signature, revision counter, audit stream. ARGV: document bytes, signature
/// (empty: none), expected counter (empty: unconditional), audit record JSON (empty: none),
/// stream length, channel. Returns `{1, new counter}` or `{0, current counter}` when the
/// expected counter did not match.
const WRITE_SCRIPT: &str = r"
if ARGV[3] ~= '' then
  local current = redis.call('GET', KEYS[3]) or '0'
  if current ~= ARGV[3] then
    return {0, tonumber(current)}
  end
end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[2] == '' then
  redis.call('DEL', KEYS[2])
else
  redis.call('SET', KEYS[2], ARGV[2])
end
local revision = redis.call('INCR', KEYS[3])
if ARGV[4] ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'revision', revision, 'record', ARGV[4])
end
redis.call('PUBLISH', ARGV[6], revision)
return {1, revision}
";

/// The document as stored, with the push counter it was read at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    pub document: Option<Vec<u8>>,
    pub signature: Option<Vec<u8>>,
    /// The push counter (0 before the first push).
    pub revision: i64,
}

/// A connection for writing one document's keys.
#[derive(Debug)]
pub struct Publisher {
    url: RedisUrl,
    keys: KeySpace,
    connection: RedisConnection,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The push counter after the write.
    pub revision: i64,
    /// The document's own `revision`.
    pub document_revision: String,
}

/// What writing an autopilot decision did.
#[derive(Debug, Clone, PartialEq)]
pub struct RampWrite {
    /// `false` for a hold, or when the ramp moved since the look (nothing was written).
    pub changed: bool,
    pub old_revision: String,
    pub new_revision: String,
    /// The push counter after the write (the read one when nothing changed).
    pub redis_revision: i64,
    /// The ramp fields written.
    pub fields: RampFields,
    pub warnings: Vec<String>,
    /// The record appended to the audit stream.
    pub record: Option<Value>,
}

/// What a kill or unkill did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillOutcome {
    /// `false` when the switch was already in the requested state: nothing was written.
    pub changed: bool,
    pub old_revision: String,
    pub new_revision: String,
    /// The push counter after the write (the read one when nothing changed).
    pub redis_revision: i64,
    pub before: SwitchState,
    pub warnings: Vec<String>,
    /// The record appended to the audit stream (and, by the CLI, to the local audit log).
    pub record: Option<Value>,
}

impl Publisher {
    /// Connects (a cluster connection for `redis+cluster://`).
    pub fn open(url: &str, key: &str, timeouts: Timeouts) -> Result<Publisher> {
        let url = RedisUrl::parse(url)?;
        let keys = KeySpace::new(key)?;
        let connection = connect(&url, timeouts)?;
        Ok(Publisher {
            url,
            keys,
            connection,
        })
    }

    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// `redis://host:port/db#key`, for messages and audit records (no password).
    pub fn shown(&self) -> String {
        format!("{}#{}", self.url, self.keys.document())
    }

    fn fail(&self, error: &redis::RedisError) -> FleetError {
        FleetError::from_redis(&self.url.to_string(), error)
    }

    /// The document, its signature and the push counter, read atomically (one `MGET`).
    pub fn read(&mut self) -> Result<Stored> {
        let (document, signature, revision): (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>) =
            redis::cmd("MGET")
                .arg(self.keys.document())
                .arg(self.keys.signature())
                .arg(self.keys.revision())
                .query(&mut self.connection)
                .map_err(|error| self.fail(&error))?;
        Ok(Stored {
            document,
            signature,
            revision: revision.unwrap_or(0),
        })
    }

    /// Writes document and signature, bumps the counter, appends `audit` to the stream and
    /// publishes, in one script. With `expected`, only if the counter is still that value:
    /// `Ok(None)` when it moved.
    pub fn write(
        &mut self,
        document: &[u8],
        signature: Option<&[u8]>,
        expected: Option<i64>,
        audit: Option<&Value>,
    ) -> Result<Option<i64>> {
        let audit = audit.map(Value::to_string).unwrap_or_default();
        let (written, revision): (i64, i64) = Script::new(WRITE_SCRIPT)
            .key(self.keys.document())
            .key(self.keys.signature())
            .key(self.keys.revision())
            .key(self.keys.audit())
            .arg(document)
            .arg(signature.unwrap_or_default())
            .arg(expected.map(|e| e.to_string()).unwrap_or_default())
            .arg(audit)
            .arg(AUDIT_STREAM_LENGTH)
            .arg(self.keys.channel())
            .invoke(&mut self.connection)
            .map_err(|error| self.fail(&error))?;
        Ok((written == 1).then_some(revision))
    }

    /// Validates `document` with the core (and its signature, with `verify_key`), then
    /// writes it unconditionally with its audit record.
    pub fn push(
        &mut self,
        document: &[u8],
        signature: Option<&[u8]>,
        verify_key: Option<&VerifyKey>,
        actor: &str,
        at: flagrail_core::time::Millis,
    ) -> Result<(Pushed, Value)> {
        if let Some(key) = verify_key {
            key.verify(&self.shown(), document, signature)?;
        }
        let parsed = Document::from_slice(document)?;
        let before = self.read()?.revision;
        let record = json!({
            "time": format_timestamp(at),
            "action": "push",
            "actor": actor,
            "new_revision": parsed.revision(),
            "document": self.shown(),
            "redis_revision_before": before,
            "signed": signature.is_some(),
        });
        let revision = self
            .write(document, signature, None, Some(&record))?
            .ok_or_else(|| FleetError::Conflict {
                key: self.keys.document().to_string(),
                attempts: 1,
            })?;
        Ok((
            Pushed {
                revision,
                document_revision: parsed.revision().to_string(),
            },
            record,
        ))
    }

    /// Kills or unkills in the document at the key (read-modify-write with compare-and-set;
    /// see the module docs). A signed document needs `signer` to be re-signed: without it the
    /// kill is refused (writing it unsigned would make every verifying process reject it).
    pub fn kill(
        &mut self,
        change: &KillChange<'_>,
        signer: Option<&PrivateKey>,
        verify_key: Option<&VerifyKey>,
    ) -> Result<KillOutcome> {
        for _ in 0..MAX_KILL_ATTEMPTS {
            let stored = self.read()?;
            let Some(bytes) = stored.document else {
                return Err(FleetError::Core(Error::SourceUnreachable {
                    source: self.shown(),
                    detail:
                        "no document at this key: push one first (flagrail push FILE --redis URL)"
                            .to_string(),
                }));
            };
            if let Some(key) = verify_key {
                key.verify(&self.shown(), &bytes, stored.signature.as_deref())?;
            }
            if stored.signature.is_some() && signer.is_none() {
                return Err(FleetError::Core(Error::InvalidArgument {
                    message: format!(
                        "the document at {} is signed: pass the private key (--key flagrail.key on the command line) to re-sign it after the change (unsigned, verifying processes would reject it)",
                        self.shown()
                    ),
                }));
            }
            let text = String::from_utf8(bytes).map_err(|_| {
                FleetError::Core(Error::InvalidArgument {
                    message: format!("the document at {} is not UTF-8", self.shown()),
                })
            })?;
            let edit = edit_kill(&text, change)?;
            if !edit.changed {
                return Ok(KillOutcome {
                    changed: false,
                    old_revision: edit.old_revision,
                    new_revision: edit.new_revision,
                    redis_revision: stored.revision,
                    before: edit.before,
                    warnings: edit.warnings,
                    record: None,
                });
            }
            let signature = signer.map(|key| key.sign(edit.text.as_bytes()));
            let record = json!({
                "time": format_timestamp(change.at),
                "action": if change.active { "kill" } else { "unkill" },
                "flag": match change.target { Target::Flag(key) => key, Target::All => "*" },
                "actor": change.actor,
                "reason": change.reason,
                "old_revision": edit.old_revision,
                "new_revision": edit.new_revision,
                "document": self.shown(),
            });
            let written = self.write(
                edit.text.as_bytes(),
                signature.as_deref().map(str::as_bytes),
                Some(stored.revision),
                Some(&record),
            )?;
            if let Some(redis_revision) = written {
                return Ok(KillOutcome {
                    changed: true,
                    old_revision: edit.old_revision,
                    new_revision: edit.new_revision,
                    redis_revision,
                    before: edit.before,
                    warnings: edit.warnings,
                    record: Some(record),
                });
            }
        }
        Err(FleetError::Conflict {
            key: self.keys.document().to_string(),
            attempts: MAX_KILL_ATTEMPTS,
        })
    }

    /// Writes an autopilot decision into the document at the key: the same read-modify-write
    /// with compare-and-set as [`Publisher::kill`], with the core's [`edit_ramp`] (the same
    /// edit as `flagrail autopilot` makes to a file: the ramp's `start`, `paused_at`,
    /// `rolled_back`, its `decided` record and the revision). The audit record carries the
    /// decision, its reason and the whole evidence. Nothing is written when the ramp is no
    /// longer governed at the verdict's step (the document wins).
    pub fn ramp(
        &mut self,
        change: &RampChange<'_>,
        signer: Option<&PrivateKey>,
        verify_key: Option<&VerifyKey>,
    ) -> Result<RampWrite> {
        for _ in 0..MAX_KILL_ATTEMPTS {
            let stored = self.read()?;
            let text = self.stored_text(&stored, signer, verify_key)?;
            let (edit, fields) = edit_ramp(&text, change)?;
            if !edit.changed {
                return Ok(RampWrite {
                    changed: false,
                    old_revision: edit.old_revision,
                    new_revision: edit.new_revision,
                    redis_revision: stored.revision,
                    fields,
                    warnings: edit.warnings,
                    record: None,
                });
            }
            let signature = signer.map(|key| key.sign(edit.text.as_bytes()));
            let record = json!({
                "time": format_timestamp(change.at),
                "action": "autopilot",
                "flag": change.flag,
                "rule_id": change.rule_id,
                "decision": change.verdict.decision,
                "reason": change.verdict.reason,
                "step": change.verdict.step,
                "percent": change.verdict.percent,
                "actor": change.actor,
                "old_revision": edit.old_revision,
                "new_revision": edit.new_revision,
                "document": self.shown(),
                "signed": signature.is_some(),
                "evidence": change.verdict,
            });
            let written = self.write(
                edit.text.as_bytes(),
                signature.as_deref().map(str::as_bytes),
                Some(stored.revision),
                Some(&record),
            )?;
            if let Some(redis_revision) = written {
                return Ok(RampWrite {
                    changed: true,
                    old_revision: edit.old_revision,
                    new_revision: edit.new_revision,
                    redis_revision,
                    fields,
                    warnings: edit.warnings,
                    record: Some(record),
                });
            }
        }
        Err(FleetError::Conflict {
            key: self.keys.document().to_string(),
            attempts: MAX_KILL_ATTEMPTS,
        })
    }

    /// The stored document's text, checked: present, verified with `verify_key`, re-signable
    /// when signed, UTF-8.
    fn stored_text(
        &self,
        stored: &Stored,
        signer: Option<&PrivateKey>,
        verify_key: Option<&VerifyKey>,
    ) -> Result<String> {
        let Some(bytes) = stored.document.clone() else {
            return Err(FleetError::Core(Error::SourceUnreachable {
                source: self.shown(),
                detail: "no document at this key: push one first (flagrail push FILE --redis URL)"
                    .to_string(),
            }));
        };
        if let Some(key) = verify_key {
            key.verify(&self.shown(), &bytes, stored.signature.as_deref())?;
        }
        if stored.signature.is_some() && signer.is_none() {
            return Err(FleetError::Core(Error::InvalidArgument {
                message: format!(
                    "the document at {} is signed: pass the private key (--key flagrail.key on the command line) to re-sign it after the change (unsigned, verifying processes would reject it)",
                    self.shown()
                ),
            }));
        }
        String::from_utf8(bytes).map_err(|_| {
            FleetError::Core(Error::InvalidArgument {
                message: format!("the document at {} is not UTF-8", self.shown()),
            })
        })
    }

    /// One ramp step's per-unit evidence as the fleet wrote it
    /// ([`crate::shared::evidence`]).
    pub fn read_evidence(
        &mut self,
        flag: &str,
        rule_id: &str,
        step_began: flagrail_core::time::Millis,
    ) -> Result<crate::shared::evidence::StoredStep> {
        let target = self.url.to_string();
        crate::shared::evidence::read_step(
            &mut self.connection,
            &target,
            &self.keys,
            flag,
            rule_id,
            step_began,
        )
    }

    /// One flag's autopilot metrics over time as the fleet wrote them
    /// ([`crate::shared::series`]): the points with minutes in `from..=until`.
    pub fn read_series(
        &mut self,
        flag: &str,
        from: flagrail_core::time::Millis,
        until: flagrail_core::time::Millis,
    ) -> Result<Vec<crate::shared::series::StoredPoint>> {
        let target = self.url.to_string();
        crate::shared::series::read_points(
            &mut self.connection,
            &target,
            &self.keys,
            flag,
            from,
            until,
        )
    }

    /// The whole audit stream, oldest first (for reports; the stream is capped at about
    /// [`AUDIT_STREAM_LENGTH`] records).
    pub fn audit_all(&mut self) -> Result<Vec<Value>> {
        let mut records = self.audit(AUDIT_STREAM_LENGTH as usize * 2)?;
        records.reverse();
        Ok(records)
    }

    /// The newest `count` audit records, newest first (`XREVRANGE`).
    pub fn audit(&mut self, count: usize) -> Result<Vec<Value>> {
        let reply: RedisValue = redis::cmd("XREVRANGE")
            .arg(self.keys.audit())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count)
            .query(&mut self.connection)
            .map_err(|error| self.fail(&error))?;
        let entries: Vec<(String, Vec<(String, String)>)> =
            redis::from_redis_value(reply).map_err(|error| self.fail(&error.into()))?;
        Ok(entries
            .into_iter()
            .map(|(id, fields)| {
                let mut entry = json!({ "id": id });
                for (name, value) in fields {
                    let value = match name.as_str() {
                        "record" => serde_json::from_str(&value).unwrap_or(Value::String(value)),
                        "revision" => value
                            .parse::<i64>()
                            .map_or(Value::String(value), Value::from),
                        _ => Value::String(value),
                    };
                    entry[name] = value;
                }
                entry
            })
            .collect())
    }

    /// What `flagrail status --redis` prints: the key, the push counter, the document's
    /// revision, signature, size and validity, the subscribers on the first reachable node,
    /// and the newest audit records.
    pub fn status(&mut self, timeouts: Timeouts) -> Result<Value> {
        let stored = self.read()?;
        let document = stored
            .document
            .as_deref()
            .map(|bytes| match Document::from_slice(bytes) {
                Ok(document) => json!({
                    "bytes": bytes.len(),
                    "revision": document.revision(),
                    "valid": true,
                    "flags": document.flags().len(),
                    "killed_all": document.kill().active,
                }),
                Err(error) => json!({
                    "bytes": bytes.len(),
                    "valid": false,
                    "code": error.code(),
                    "error": error.to_string(),
                }),
            });
        let subscribers = connect_one_node(&self.url, timeouts)
            .and_then(|mut node| {
                redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(self.keys.channel())
                    .query::<(String, i64)>(&mut node)
                    .map(|(_, count)| count)
                    .map_err(|error| self.fail(&error))
            })
            .ok();
        Ok(json!({
            "source": format!("redis:{}", self.shown()),
            "key": self.keys.document(),
            "channel": self.keys.channel(),
            "redis_revision": stored.revision,
            "document": document,
            "signed": stored.signature.is_some(),
            "subscribers_on_first_node": subscribers,
            "audit": self.audit(5)?,
        }))
    }
}
