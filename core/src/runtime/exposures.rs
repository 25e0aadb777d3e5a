//! Exposures of plain reads: which units were shown which variant by `variant()` (and
//! `variants`, `all`, `Flags::evaluate`), for handles that opt in at construction.
//!
//! A `call` already sends one `exposure` event per run. A plain read is different: an app may
//! read the same flag for the same user on every request, so the events are
//!
//! - **deduplicated**: at most one event per (unit, flag, revision) within `window`;
//! - **sampled**: a unit is sampled for a flag when `bucket("<flag>/exposure", unit, 100000)`
//!   is below `sample × 100000` — bucketing v1, so the draw is the same on every read, in
//!   every process and in every language, and independent of which variant the flag's own
//!   salt assigns;
//! - **bounded**: the keys remembered for deduplication are 64-bit fingerprints in two
//!   generations of `max_keys / 2` each. When the newer generation is full, the older one is
//!   forgotten at once: a forgotten key read again within its window sends its exposure again
//!   (a duplicate, never a lost exposure), and `forgotten` counts the keys dropped so.
//!
//! Counts per flag × variant are kept for *every* read while exposures are on (not sampled,
//! not deduplicated): they are what `status()["exposures"]` and `metrics_text()` report.
//!
//! With exposures off (the default) none of this exists: evaluation checks one `OnceLock`.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::sync::{Arc, Mutex, MutexGuard};

use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::Value;

use crate::document::{Flag, Variant};
use crate::error::{Error, Result};
use crate::hash::{scale, SaltedHasher, PERCENT_TOTAL};
use crate::time::Millis;

/// The window when none is given: one hour.
pub(crate) const DEFAULT_WINDOW_MS: u64 = 3_600_000;
/// Keys remembered for deduplication when no bound is given.
pub(crate) const DEFAULT_MAX_KEYS: u64 = 100_000;
/// The longest window accepted: 366 days.
pub(crate) const MAX_WINDOW_MS: u64 = 366 * 24 * 3_600_000;
/// The largest `max_keys` accepted (about 500 MB of fingerprints).
pub(crate) const MAX_KEYS_LIMIT: u64 = 10_000_000;
/// What a flag key is suffixed with to make its sampling salt.
pub(crate) const SAMPLE_SALT_SUFFIX: &str = "/exposure";

/// How exposures of plain reads are kept: validated once, when a handle opts in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExposureOptions {
    /// One event per (unit, flag, revision) per this many milliseconds.
    pub(crate) window_ms: u64,
    /// The share of units sampled, as given (0 to 1).
    pub(crate) sample: f64,
    /// `sample` over [`PERCENT_TOTAL`] buckets (0.001 % steps, rounded to the nearest).
    pub(crate) sample_buckets: u32,
    /// Keys remembered for deduplication (an even number: two generations of half each).
    pub(crate) max_keys: u64,
}

impl Default for ExposureOptions {
    fn default() -> Self {
        ExposureOptions {
            window_ms: DEFAULT_WINDOW_MS,
            sample: 1.0,
            sample_buckets: PERCENT_TOTAL,
            max_keys: DEFAULT_MAX_KEYS,
        }
    }
}

impl ExposureOptions {
    /// Validates the options a binding read (`None`: the default). Each problem is an
    /// `INVALID_ARGUMENT` naming the option the way `names` spells it in the caller's language
    /// (`[window, sample, max_keys]`), its value and the accepted range.
    pub fn new(
        window_ms: Option<f64>,
        sample: Option<f64>,
        max_keys: Option<f64>,
        names: [&str; 3],
    ) -> Result<ExposureOptions> {
        let invalid = |message: String| Error::InvalidArgument {
            message: format!("exposures: {message}"),
        };
        let defaults = ExposureOptions::default();
        let window_ms = match window_ms {
            None => defaults.window_ms,
            Some(ms) if ms.is_finite() && ms >= 1.0 && ms <= MAX_WINDOW_MS as f64 => ms as u64,
            Some(ms) => {
                return Err(invalid(format!(
                    "{} must be a duration from 1 ms to 366 days, got {ms} ms",
                    names[0]
                )))
            }
        };
        let sample = match sample {
            None => defaults.sample,
            Some(share) if (0.0..=1.0).contains(&share) => share,
            Some(share) => {
                return Err(invalid(format!(
                    "{} must be a share from 0 to 1, got {share}",
                    names[1]
                )))
            }
        };
        let max_keys = match max_keys {
            None => defaults.max_keys,
            Some(n) if n.fract() == 0.0 && (2.0..=MAX_KEYS_LIMIT as f64).contains(&n) => n as u64,
            Some(n) => {
                return Err(invalid(format!(
                    "{} must be a whole number from 2 to {MAX_KEYS_LIMIT}, got {n}",
                    names[2]
                )))
            }
        };
        Ok(ExposureOptions {
            window_ms,
            sample,
            sample_buckets: (sample * f64::from(PERCENT_TOTAL)).round() as u32,
            // Two generations of equal size.
            max_keys: max_keys + max_keys % 2,
        })
    }

    fn generation_size(&self) -> usize {
        (self.max_keys / 2) as usize
    }
}

/// The sampling salt of a flag: its key followed by [`SAMPLE_SALT_SUFFIX`].
pub(crate) fn sample_salt(flag_key: &str) -> String {
    format!("{flag_key}{SAMPLE_SALT_SUFFIX}")
}

/// What one read does with its exposure (see [`ExposureLog::record`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposed {
    /// The first of its (unit, flag, revision) in the window: send the event.
    Send,
    /// Already sent within the window.
    Duplicate,
    /// The unit is outside the sample for this flag.
    NotSampled,
    /// The context had no unit (the flag's `bucket_by` is missing, or neither a string nor an
    /// integer): counted, but there is no one to attribute an event to.
    NoUnit,
}

/// Counters of one flag.
struct FlagTally {
    /// The flag's sampling draw (`<flag>/exposure`), hashed once.
    sampler: SaltedHasher,
    /// Reads per variant id (a reload may add variants: ids, not indices).
    variants: Vec<(Arc<str>, u64)>,
}

#[derive(Default)]
pub(crate) struct LogState {
    flags: FxHashMap<Arc<str>, FlagTally>,
    /// Fingerprint of (unit, flag, revision) -> when its event was sent: the newer generation.
    current: FxHashMap<u64, Millis>,
    /// The older generation, forgotten when `current` fills up.
    previous: FxHashMap<u64, Millis>,
    reads: u64,
    events: u64,
    duplicates: u64,
    not_sampled: u64,
    no_unit: u64,
    forgotten: u64,
}

/// The exposures of one handle's plain reads: counts, the deduplication window and the sample.
pub struct ExposureLog {
    options: ExposureOptions,
    state: Mutex<LogState>,
}

/// The `exposures` entry of `status()`.
#[derive(Debug, Clone, Serialize)]
pub struct ExposureReport {
    pub(crate) window_ms: u64,
    pub(crate) sample: f64,
    pub(crate) max_keys: u64,
    /// Reads of a known flag since exposures were turned on.
    pub(crate) reads: u64,
    /// `exposure` events sent for reads.
    pub(crate) events: u64,
    /// Reads not sent because their key was sent within the window.
    pub(crate) duplicates: u64,
    /// Reads of units outside the sample.
    pub(crate) not_sampled: u64,
    /// Reads whose context had no unit.
    pub(crate) no_unit: u64,
    /// Keys remembered now.
    pub(crate) remembered: u64,
    /// Keys forgotten at the bound before their window ended.
    pub(crate) forgotten: u64,
    /// Reads per flag, then per variant id.
    pub(crate) flags: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
}

impl ExposureLog {
    pub fn new(options: ExposureOptions) -> ExposureLog {
        ExposureLog {
            options,
            state: Mutex::new(LogState::default()),
        }
    }

    pub fn options(&self) -> &ExposureOptions {
        &self.options
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // Every update is a few counters and one map entry: consistent after a panic elsewhere.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The log's lock if no other thread holds it (see [`super::ForkHold`]).
    pub(crate) fn try_hold(&self) -> Option<MutexGuard<'_, LogState>> {
        super::try_hold(&self.state)
    }

    /// Zeroes the counts (reads, events, per-variant tallies) and keeps the deduplication
    /// window: a forked child counts its own reads, and does not send again what its parent
    /// sent (see [`crate::Flags::forget_parent_counts`]).
    pub(crate) fn reset_counts(&self) {
        let mut state = self.lock();
        state.flags.clear();
        state.reads = 0;
        state.events = 0;
        state.duplicates = 0;
        state.not_sampled = 0;
        state.no_unit = 0;
        state.forgotten = 0;
    }

    /// Counts one read of `flag` that served `variant` to `unit` under `revision` at `now`, and
    /// says whether its exposure event is to be sent.
    pub fn record(
        &self,
        flag: &Flag,
        variant: &Variant,
        unit: Option<&str>,
        revision: &str,
        now: Millis,
    ) -> Exposed {
        let mut state = self.lock();
        let state = &mut *state;
        state.reads += 1;
        let tally = match state.flags.get_mut(&*flag.key) {
            Some(tally) => tally,
            None => state
                .flags
                .entry(Arc::clone(&flag.key))
                .or_insert_with(|| FlagTally {
                    sampler: SaltedHasher::new(&sample_salt(&flag.key)),
                    variants: Vec::new(),
                }),
        };
        match tally.variants.iter_mut().find(|(id, _)| *id == variant.id) {
            Some((_, count)) => *count += 1,
            None => tally.variants.push((Arc::clone(&variant.id), 1)),
        }
        let Some(unit) = unit else {
            state.no_unit += 1;
            return Exposed::NoUnit;
        };
        if scale(tally.sampler.hash(unit), PERCENT_TOTAL) >= self.options.sample_buckets {
            state.not_sampled += 1;
            return Exposed::NotSampled;
        }
        let key = fingerprint(unit, &flag.key, revision);
        if first_in_window(state, key, now, &self.options) {
            state.events += 1;
            Exposed::Send
        } else {
            state.duplicates += 1;
            Exposed::Duplicate
        }
    }

    /// Whether `unit` is in the sample of `flag_key` (what [`ExposureLog::record`] decides).
    pub fn is_sampled(&self, flag_key: &str, unit: &str) -> bool {
        let sampler = SaltedHasher::new(&sample_salt(flag_key));
        scale(sampler.hash(unit), PERCENT_TOTAL) < self.options.sample_buckets
    }

    /// Counts and settings, for `status()`.
    pub(crate) fn report(&self) -> ExposureReport {
        let state = self.lock();
        ExposureReport {
            window_ms: self.options.window_ms,
            sample: self.options.sample,
            max_keys: self.options.max_keys,
            reads: state.reads,
            events: state.events,
            duplicates: state.duplicates,
            not_sampled: state.not_sampled,
            no_unit: state.no_unit,
            remembered: (state.current.len() + state.previous.len()) as u64,
            forgotten: state.forgotten,
            flags: state
                .flags
                .iter()
                .map(|(flag, tally)| {
                    let variants = tally
                        .variants
                        .iter()
                        .map(|(id, n)| (id.to_string(), *n))
                        .collect();
                    (flag.to_string(), variants)
                })
                .collect(),
        }
    }

    /// [`ExposureLog::report`] as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.report()).unwrap_or(Value::Null)
    }

    /// The counts in the Prometheus text format: reads per flag × variant, and events sent.
    pub(crate) fn to_prometheus(&self, text: &mut String) {
        use std::fmt::Write as _;
        let report = self.report();
        text.push_str(
            "# HELP flagrail_exposures_total Reads of a flag by variant while exposures are on (not sampled).\n\
             # TYPE flagrail_exposures_total counter\n",
        );
        for (flag, variants) in &report.flags {
            for (variant, count) in variants {
                let _ = writeln!(
                    text,
                    "flagrail_exposures_total{{flag=\"{}\",variant=\"{}\"}} {count}",
                    label(flag),
                    label(variant)
                );
            }
        }
        text.push_str(
            "# HELP flagrail_exposure_events_total Exposure events sent for reads (deduplicated, sampled).\n\
             # TYPE flagrail_exposure_events_total counter\n",
        );
        let _ = writeln!(text, "flagrail_exposure_events_total {}", report.events);
    }
}

/// A Prometheus label value, escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A 64-bit fingerprint of (unit, flag, revision), each length-prefixed so that no two
/// different triples run together. Two triples share one with probability about 2^-64 per pair
/// (a shared one makes the second a duplicate), negligible at any `max_keys` allowed.
fn fingerprint(unit: &str, flag: &str, revision: &str) -> u64 {
    // SipHash with fixed keys: deterministic, and good on short strings.
    let mut hasher = DefaultHasher::new();
    for part in [unit, flag, revision] {
        hasher.write_usize(part.len());
        hasher.write(part.as_bytes());
    }
    hasher.finish()
}

/// Whether `key` starts a new window at `now` (and remembers it if so). An instant before the
/// one recorded (an `at` in the past) counts as within the window.
fn first_in_window(state: &mut LogState, key: u64, now: Millis, options: &ExposureOptions) -> bool {
    let window = i64::try_from(options.window_ms).unwrap_or(i64::MAX);
    let expired = |sent: Millis| now.saturating_sub(sent) >= window;
    if let Some(sent) = state.current.get_mut(&key) {
        if !expired(*sent) {
            return false;
        }
        *sent = now;
        return true;
    }
    let (fresh, sent) = match state.previous.remove(&key) {
        // Seen recently: moved to the newer generation, so it outlives the next rotation.
        Some(sent) if !expired(sent) => (false, sent),
        _ => (true, now),
    };
    if state.current.len() >= options.generation_size() {
        state.forgotten += state.previous.len() as u64;
        state.previous = std::mem::take(&mut state.current);
    }
    state.current.insert(key, sent);
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Document;

    const NAMES: [&str; 3] = ["window", "sample", "max_keys"];

    fn document(revision: &str) -> Document {
        Document::from_json(&format!(
            r#"{{"revision": "{revision}", "flags": {{"bot": {{"variants": {{"a": {{}}, "b": {{}}}},
                "default": "a", "rules": [{{"id": "s", "split": [{{"variant": "a", "percent": 50}},
                {{"variant": "b", "percent": 50}}]}}]}}}}}}"#
        ))
        .unwrap()
    }

    fn options(window_ms: f64, sample: f64, max_keys: f64) -> ExposureOptions {
        ExposureOptions::new(Some(window_ms), Some(sample), Some(max_keys), NAMES).unwrap()
    }

    fn read(log: &ExposureLog, doc: &Document, unit: &str, now: Millis) -> Exposed {
        let flag = doc.flag("bot").unwrap();
        log.record(flag, &flag.variants[0], Some(unit), doc.revision(), now)
    }

    #[test]
    fn one_event_per_unit_flag_and_revision_per_window() {
        let log = ExposureLog::new(options(1000.0, 1.0, 100.0));
        let r1 = document("r1");
        assert_eq!(read(&log, &r1, "u1", 0), Exposed::Send);
        assert_eq!(read(&log, &r1, "u1", 999), Exposed::Duplicate);
        assert_eq!(read(&log, &r1, "u2", 999), Exposed::Send);
        // The window ends 1000 ms after the event that opened it.
        assert_eq!(read(&log, &r1, "u1", 1000), Exposed::Send);
        assert_eq!(read(&log, &r1, "u1", 1500), Exposed::Duplicate);
        // A new revision is a new key.
        let r2 = document("r2");
        assert_eq!(read(&log, &r2, "u1", 1500), Exposed::Send);
        // An instant before the recorded one is within the window.
        assert_eq!(read(&log, &r1, "u1", 10), Exposed::Duplicate);
        let report = log.report();
        assert_eq!((report.reads, report.events, report.duplicates), (7, 4, 3));
        assert_eq!(report.flags["bot"]["a"], 7);
    }

    #[test]
    fn sampling_is_the_bucketing_of_flag_exposure_and_repeats() {
        let log = ExposureLog::new(options(1.0, 0.25, 1000.0));
        let doc = document("r1");
        let mut sampled = 0;
        for i in 0..2000 {
            let unit = format!("user-{i}");
            let expected =
                crate::hash::bucket("bot/exposure", &unit, PERCENT_TOTAL).unwrap() < 25_000;
            assert_eq!(log.is_sampled("bot", &unit), expected, "{unit}");
            // Twice, past the window: the same answer both times.
            for now in [0, 10] {
                let outcome = read(&log, &doc, &unit, now);
                assert_eq!(outcome == Exposed::Send, expected, "{unit} at {now}");
                assert_eq!(outcome == Exposed::NotSampled, !expected, "{unit} at {now}");
            }
            sampled += usize::from(expected);
        }
        // 25 % of 2000, within a wide margin.
        assert!((400..600).contains(&sampled), "{sampled}");
        // Sample 0 sends nothing and still counts every read.
        let none = ExposureLog::new(options(1.0, 0.0, 10.0));
        assert_eq!(read(&none, &doc, "user-1", 0), Exposed::NotSampled);
        assert_eq!(none.report().flags["bot"]["a"], 1);
    }

    #[test]
    fn remembered_keys_stay_bounded_and_forgotten_ones_send_again() {
        let log = ExposureLog::new(options(1_000_000.0, 1.0, 4.0));
        let doc = document("r1");
        for unit in ["u1", "u2", "u3", "u4"] {
            assert_eq!(read(&log, &doc, unit, 0), Exposed::Send);
        }
        // Generations of 2: u1, u2 were rotated into the older one, u3, u4 are the newer.
        assert_eq!(log.report().remembered, 4);
        // u5 fills past the bound: the older generation (u1, u2) is forgotten.
        assert_eq!(read(&log, &doc, "u5", 1), Exposed::Send);
        let report = log.report();
        assert!(report.remembered <= 4, "{}", report.remembered);
        assert_eq!(report.forgotten, 2);
        // A forgotten key sends again within its window (a duplicate event, never a lost one);
        // a remembered one does not.
        assert_eq!(read(&log, &doc, "u1", 2), Exposed::Send);
        assert_eq!(read(&log, &doc, "u5", 2), Exposed::Duplicate);
        for i in 0..1000 {
            read(&log, &doc, &format!("many-{i}"), 3);
            assert!(log.report().remembered <= 4);
        }
    }

    #[test]
    fn a_key_read_again_moves_to_the_newer_generation() {
        let log = ExposureLog::new(options(1_000_000.0, 1.0, 4.0));
        let doc = document("r1");
        for unit in ["u1", "u2", "u3"] {
            read(&log, &doc, unit, 0);
        }
        // u1 is in the older generation; reading it keeps it (no event) in the newer one.
        assert_eq!(read(&log, &doc, "u1", 1), Exposed::Duplicate);
        read(&log, &doc, "u4", 1);
        read(&log, &doc, "u5", 1);
        assert_eq!(read(&log, &doc, "u1", 2), Exposed::Duplicate);
    }

    #[test]
    fn reads_without_a_unit_are_counted_and_send_nothing() {
        let log = ExposureLog::new(ExposureOptions::default());
        let doc = document("r1");
        let flag = doc.flag("bot").unwrap();
        assert_eq!(
            log.record(flag, &flag.variants[1], None, "r1", 0),
            Exposed::NoUnit
        );
        let report = log.report();
        assert_eq!((report.reads, report.no_unit, report.events), (1, 1, 0));
        assert_eq!(report.flags["bot"]["b"], 1);
    }

    #[test]
    fn options_are_validated_with_the_callers_names() {
        let names = ["windowMs", "sample", "maxKeys"];
        let err = |w, s, m| ExposureOptions::new(w, s, m, names).unwrap_err();
        for (error, needle) in [
            (err(Some(0.0), None, None), "windowMs must be a duration"),
            (err(Some(f64::NAN), None, None), "windowMs"),
            (
                err(None, Some(1.5), None),
                "sample must be a share from 0 to 1, got 1.5",
            ),
            (err(None, Some(f64::NAN), None), "sample"),
            (
                err(None, None, Some(1.0)),
                "maxKeys must be a whole number from 2",
            ),
            (err(None, None, Some(10.5)), "maxKeys"),
        ] {
            assert_eq!(error.code(), "INVALID_ARGUMENT");
            assert!(error.to_string().contains(needle), "{error}");
        }
        let defaults = ExposureOptions::new(None, None, None, names).unwrap();
        assert_eq!(defaults, ExposureOptions::default());
        let odd = ExposureOptions::new(None, Some(0.123456), Some(5.0), names).unwrap();
        assert_eq!((odd.max_keys, odd.sample_buckets), (6, 12_346));
    }

    #[test]
    fn prometheus_text_has_per_variant_counts() {
        let log = ExposureLog::new(ExposureOptions::default());
        let doc = document("r1");
        read(&log, &doc, "u1", 0);
        read(&log, &doc, "u1", 1);
        let mut text = String::new();
        log.to_prometheus(&mut text);
        assert!(
            text.contains("flagrail_exposures_total{flag=\"bot\",variant=\"a\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("flagrail_exposure_events_total 1\n"),
            "{text}"
        );
    }

    #[test]
    fn reads_send_deduplicated_events_and_calls_do_not_count() {
        use crate::runtime::events::CallbackSink;
        use crate::{EvalOptions, Flags};
        use std::collections::HashMap;
        let flags = Flags::from_document(document("r1"));
        let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = Arc::clone(&seen);
        flags.add_event_sink(Arc::new(CallbackSink(move |e: &Value| {
            sink.lock().unwrap().push(e.clone())
        })));
        // Off: reads send nothing and status says null.
        let user = |id: &'static str| HashMap::from([("user_id", id), ("segment", "s")]);
        flags.evaluate("bot", &user("u1"), EvalOptions::at(0));
        assert!(seen.lock().unwrap().is_empty());
        assert!(flags.status().to_json()["exposures"].is_null());
        flags
            .enable_exposures(options(60_000.0, 1.0, 100.0))
            .unwrap();
        assert_eq!(
            flags
                .enable_exposures(ExposureOptions::default())
                .unwrap_err()
                .code(),
            "INVALID_ARGUMENT"
        );
        for at in [0, 1000, 59_999, 60_000] {
            flags.evaluate("bot", &user("u1"), EvalOptions::at(at));
        }
        // A call is a run: its own exposure (source "run"), not a read.
        let run = flags.start_run("bot", &user("u1")).unwrap();
        drop(run);
        // A test override is not a read either.
        let forced = EvalOptions {
            forced: Some("b"),
            ..EvalOptions::at(0)
        };
        flags.evaluate("bot", &user("u9"), forced);
        // An unknown flag is not counted.
        flags.evaluate("nope", &user("u1"), EvalOptions::at(0));
        let events = seen.lock().unwrap().clone();
        let reads: Vec<&Value> = events.iter().filter(|e| e["source"] == "read").collect();
        assert_eq!(reads.len(), 2, "{events:?}");
        assert_eq!(reads[0]["type"], "exposure");
        assert!(reads[0]["run_id"].is_null());
        assert_eq!(reads[0]["unit"], "u1");
        assert_eq!(reads[0]["segment"], "s");
        assert_eq!(reads[0]["revision"], "r1");
        assert_eq!(reads[0]["time"], "1970-01-01T00:00:00Z");
        assert_eq!(reads[1]["time"], "1970-01-01T00:01:00Z");
        assert_eq!(events.iter().filter(|e| e["source"] == "run").count(), 1);
        let status = flags.status().to_json();
        let counted: u64 = status["exposures"]["flags"]["bot"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert_eq!(counted, 4);
        assert_eq!(status["exposures"]["events"], 2);
        assert_eq!(status["exposures"]["duplicates"], 2);
        assert!(flags
            .metrics_text()
            .contains("flagrail_exposures_total{flag=\"bot\""));
    }
}
