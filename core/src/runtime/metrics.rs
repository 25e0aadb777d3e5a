//! In-memory aggregates per flag × variant (× segment label): what `metrics()` returns and
//! what `metrics_text()` exposes in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::runtime::classify::ErrorKind;
use crate::runtime::stats::LatencyHistogram;

/// Distinct segment labels kept per flag × variant; further labels are counted under
/// [`OTHER_SEGMENT`] so that a context attribute with unbounded values cannot grow memory.
pub(crate) const MAX_SEGMENTS: usize = 32;
pub(crate) const OTHER_SEGMENT: &str = "_other";
/// The `segment` label of the Prometheus series counting calls whose context had no segment.
pub(crate) const NO_SEGMENT: &str = "_none";

/// Counters of one series.
#[derive(Debug, Clone, Default)]
pub(crate) struct Series {
    /// Attempts (model calls) plus serves of non-AI variants.
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) errors_by_kind: [u64; ErrorKind::ALL.len()],
    /// Non-AI serves (no latency, no tokens).
    pub(crate) served_static: u64,
    pub(crate) shadow_requests: u64,
    pub(crate) latency: LatencyHistogram,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) cost: f64,
    pub(crate) quality_count: u64,
    pub(crate) quality_sum: f64,
    pub(crate) feedback_count: u64,
    pub(crate) feedback_sum: f64,
}

/// One attempt as the aggregates see it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AttemptSample {
    pub(crate) error: Option<ErrorKind>,
    pub(crate) latency_ms: f64,
    pub(crate) input_tokens: Option<u64>,
    pub(crate) output_tokens: Option<u64>,
    pub(crate) cost: Option<f64>,
    pub(crate) shadow: bool,
}

impl Series {
    fn record(&mut self, sample: &AttemptSample) {
        self.requests += 1;
        if sample.shadow {
            self.shadow_requests += 1;
        }
        if let Some(kind) = sample.error {
            self.errors += 1;
            if let Some(slot) = self.errors_by_kind.get_mut(kind.index()) {
                *slot += 1;
            }
        }
        self.latency.record(sample.latency_ms);
        self.input_tokens += sample.input_tokens.unwrap_or(0);
        self.output_tokens += sample.output_tokens.unwrap_or(0);
        self.cost += sample.cost.unwrap_or(0.0);
    }

    fn to_json(&self) -> Value {
        serde_json::to_value(self.report()).unwrap_or(Value::Null)
    }

    fn report(&self) -> SeriesReport {
        let rate = |n: u64| {
            if self.requests == 0 {
                0.0
            } else {
                n as f64 / self.requests as f64
            }
        };
        let mean = |sum: f64, n: u64| (n > 0).then(|| sum / n as f64);
        SeriesReport {
            requests: self.requests,
            errors: self.errors,
            error_rate: rate(self.errors),
            errors_by_kind: KindCounts(self.errors_by_kind),
            served_static: self.served_static,
            shadow_requests: self.shadow_requests,
            latency_ms: LatencyReport {
                p50: self.latency.quantile(0.5),
                p95: self.latency.quantile(0.95),
                p99: self.latency.quantile(0.99),
                mean: mean(self.latency.sum_ms(), self.latency.count()),
                count: self.latency.count(),
            },
            tokens: TokensReport {
                input: self.input_tokens,
                output: self.output_tokens,
            },
            cost: self.cost,
            cost_per_request: mean(self.cost, self.requests.saturating_sub(self.served_static)),
            quality: MeanReport {
                mean: mean(self.quality_sum, self.quality_count),
                count: self.quality_count,
            },
            feedback: MeanReport {
                mean: mean(self.feedback_sum, self.feedback_count),
                count: self.feedback_count,
            },
        }
    }
}

/// One series in `metrics()` (a variant's total or one segment), in the order it is written.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SeriesReport {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) error_rate: f64,
    pub(crate) errors_by_kind: KindCounts,
    pub(crate) served_static: u64,
    pub(crate) shadow_requests: u64,
    pub(crate) latency_ms: LatencyReport,
    pub(crate) tokens: TokensReport,
    pub(crate) cost: f64,
    pub(crate) cost_per_request: Option<f64>,
    pub(crate) quality: MeanReport,
    pub(crate) feedback: MeanReport,
}

/// Failed attempts per error kind: an object with every kind, in code order, zero included.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KindCounts(pub [u64; ErrorKind::ALL.len()]);

impl Serialize for KindCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(ErrorKind::ALL.len()))?;
        for (kind, count) in ErrorKind::ALL.iter().zip(self.0) {
            map.serialize_entry(kind.as_str(), &count)?;
        }
        map.end()
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LatencyReport {
    pub(crate) p50: Option<f64>,
    pub(crate) p95: Option<f64>,
    pub(crate) p99: Option<f64>,
    pub(crate) mean: Option<f64>,
    pub(crate) count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TokensReport {
    pub(crate) input: u64,
    pub(crate) output: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct MeanReport {
    pub(crate) mean: Option<f64>,
    pub(crate) count: u64,
}

/// The aggregates of one flag × variant: the total, and a partition of it by segment label
/// (`segments`, plus `unsegmented` for calls whose context had none). Every observation goes to
/// the total and to exactly one part, so the parts add up to the total.
#[derive(Debug, Clone, Default)]
pub(crate) struct VariantMetrics {
    pub(crate) all: Series,
    pub(crate) segments: FxHashMap<Box<str>, Series>,
    pub(crate) unsegmented: Series,
}

impl VariantMetrics {
    fn series(&mut self, segment: Option<&str>) -> (&mut Series, &mut Series) {
        let VariantMetrics {
            all,
            segments,
            unsegmented,
        } = self;
        let part = match segment {
            Some(label) => {
                let key: &str = if segments.contains_key(label) || segments.len() < MAX_SEGMENTS {
                    label
                } else {
                    OTHER_SEGMENT
                };
                if !segments.contains_key(key) {
                    segments.insert(key.into(), Series::default());
                }
                // Just inserted when missing; the fallback is never taken.
                match segments.get_mut(key) {
                    Some(series) => series,
                    None => unsegmented,
                }
            }
            None => unsegmented,
        };
        (all, part)
    }
}

impl Series {
    /// Whether anything was counted (an unused part is not exported).
    fn is_empty(&self) -> bool {
        self.requests == 0 && self.feedback_count == 0 && self.quality_count == 0
    }
}

/// One guardrail of one variant in `metrics()`: its state and the window's reading.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GuardrailReport {
    pub(crate) metric: &'static str,
    pub(crate) threshold: f64,
    pub(crate) action: &'static str,
    /// `closed`, `tripped` or `half_open`.
    pub(crate) state: &'static str,
    pub(crate) since: Option<String>,
    pub(crate) probe_from: Option<String>,
    pub(crate) samples: u64,
    pub(crate) observed: f64,
    pub(crate) bound: f64,
}

impl GuardrailReport {
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// `(flag, variant, guardrail id, state)`: state 0 closed, 1 tripped, 2 half-open.
pub(crate) type GuardrailGauge = (Arc<str>, Arc<str>, Arc<str>, u8);

/// Every aggregate of a handle, keyed by flag then variant.
#[derive(Debug, Default)]
pub(crate) struct MetricsStore {
    flags: FxHashMap<Arc<str>, FxHashMap<Arc<str>, VariantMetrics>>,
}

impl MetricsStore {
    fn entry(&mut self, flag: &Arc<str>, variant: &Arc<str>) -> &mut VariantMetrics {
        self.flags
            .entry(Arc::clone(flag))
            .or_default()
            .entry(Arc::clone(variant))
            .or_default()
    }

    pub(crate) fn record_attempt(
        &mut self,
        flag: &Arc<str>,
        variant: &Arc<str>,
        segment: Option<&str>,
        sample: &AttemptSample,
    ) {
        let (all, part) = self.entry(flag, variant).series(segment);
        all.record(sample);
        part.record(sample);
    }

    pub(crate) fn record_static(
        &mut self,
        flag: &Arc<str>,
        variant: &Arc<str>,
        segment: Option<&str>,
    ) {
        let (all, part) = self.entry(flag, variant).series(segment);
        for series in [all, part] {
            series.requests += 1;
            series.served_static += 1;
        }
    }

    pub(crate) fn record_feedback(
        &mut self,
        flag: &Arc<str>,
        variant: &Arc<str>,
        segment: Option<&str>,
        score: Option<f64>,
        quality: Option<f64>,
    ) {
        let (all, part) = self.entry(flag, variant).series(segment);
        for series in [all, part] {
            if let Some(score) = score {
                series.feedback_count += 1;
                series.feedback_sum += score;
            }
            if let Some(quality) = quality {
                series.quality_count += 1;
                series.quality_sum += quality;
            }
        }
    }

    /// `{flag: {variant: {...series, "segments": {label: {...series}}}}}`, keys sorted.
    pub fn to_json(&self) -> Value {
        let mut flags: Vec<_> = self.flags.iter().collect();
        flags.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = Map::new();
        for (flag, variants) in flags {
            let mut variants: Vec<_> = variants.iter().collect();
            variants.sort_by(|a, b| a.0.cmp(b.0));
            let mut per_variant = Map::new();
            for (variant, metrics) in variants {
                let mut body = metrics.all.to_json();
                let mut segments: Vec<_> = metrics.segments.iter().collect();
                segments.sort_by(|a, b| a.0.cmp(b.0));
                let segments: Map<String, Value> = segments
                    .into_iter()
                    .map(|(label, series)| (label.to_string(), series.to_json()))
                    .collect();
                if let Value::Object(map) = &mut body {
                    map.insert("segments".into(), Value::Object(segments));
                }
                per_variant.insert(variant.to_string(), body);
            }
            out.insert(flag.to_string(), Value::Object(per_variant));
        }
        Value::Object(out)
    }

    /// The Prometheus text exposition (format 0.0.4) of every series, plus the guardrail
    /// states given as `(flag, variant, guardrail, state)` with state 0 closed, 1 tripped,
    /// 2 half-open.
    pub(crate) fn to_prometheus(&self, guardrails: &[GuardrailGauge]) -> String {
        // One series per part of the segment partition (never the variant's total beside
        // them): `sum by (flag, variant)` gives the total, nothing is counted twice.
        let mut rows: Vec<(&str, &str, &str, &Series)> = Vec::new();
        for (flag, variants) in &self.flags {
            for (variant, metrics) in variants {
                if !metrics.unsegmented.is_empty() {
                    rows.push((flag, variant, NO_SEGMENT, &metrics.unsegmented));
                }
                for (label, series) in &metrics.segments {
                    rows.push((flag, variant, label, series));
                }
            }
        }
        rows.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        let mut out = String::new();
        let labels = |flag: &str, variant: &str, segment: &str| {
            format!(
                "flag=\"{}\",variant=\"{}\",segment=\"{}\"",
                escape(flag),
                escape(variant),
                escape(segment)
            )
        };
        let mut family = |name: &str, kind: &str, help: &str, body: &mut dyn FnMut(&mut String)| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            body(&mut out);
        };
        family(
            "flagrail_requests_total",
            "counter",
            "Attempts and non-AI serves per flag and variant.",
            &mut |out| {
                for (f, v, s, series) in &rows {
                    let _ = writeln!(
                        out,
                        "flagrail_requests_total{{{}}} {}",
                        labels(f, v, s),
                        series.requests
                    );
                }
            },
        );
        family(
            "flagrail_errors_total",
            "counter",
            "Failed attempts by error kind.",
            &mut |out| {
                for (f, v, s, series) in &rows {
                    for kind in ErrorKind::ALL {
                        let _ = writeln!(
                            out,
                            "flagrail_errors_total{{{},kind=\"{}\"}} {}",
                            labels(f, v, s),
                            kind.as_str(),
                            series.errors_by_kind[kind.index()]
                        );
                    }
                }
            },
        );
        family(
            "flagrail_latency_ms",
            "summary",
            "Attempt latency in milliseconds.",
            &mut |out| {
                for (f, v, s, series) in &rows {
                    let l = labels(f, v, s);
                    for q in [0.5, 0.95, 0.99] {
                        let value = series
                            .latency
                            .quantile(q)
                            .map_or("NaN".to_string(), format_float);
                        let _ =
                            writeln!(out, "flagrail_latency_ms{{{l},quantile=\"{q}\"}} {value}");
                    }
                    let _ = writeln!(
                        out,
                        "flagrail_latency_ms_sum{{{l}}} {}",
                        format_float(series.latency.sum_ms())
                    );
                    let _ = writeln!(
                        out,
                        "flagrail_latency_ms_count{{{l}}} {}",
                        series.latency.count()
                    );
                }
            },
        );
        family(
            "flagrail_tokens_total",
            "counter",
            "Tokens by direction.",
            &mut |out| {
                for (f, v, s, series) in &rows {
                    let l = labels(f, v, s);
                    let _ = writeln!(
                        out,
                        "flagrail_tokens_total{{{l},direction=\"input\"}} {}",
                        series.input_tokens
                    );
                    let _ = writeln!(
                        out,
                        "flagrail_tokens_total{{{l},direction=\"output\"}} {}",
                        series.output_tokens
                    );
                }
            },
        );
        family(
            "flagrail_cost_total",
            "counter",
            "Cost of attempts, in the currency of the variant prices.",
            &mut |out| {
                for (f, v, s, series) in &rows {
                    let _ = writeln!(
                        out,
                        "flagrail_cost_total{{{}}} {}",
                        labels(f, v, s),
                        format_float(series.cost)
                    );
                }
            },
        );
        family(
            "flagrail_quality",
            "summary",
            "Quality scores attached with feedback().",
            &mut |out| {
                for (f, v, s, series) in &rows {
                    let l = labels(f, v, s);
                    let _ = writeln!(
                        out,
                        "flagrail_quality_sum{{{l}}} {}",
                        format_float(series.quality_sum)
                    );
                    let _ = writeln!(
                        out,
                        "flagrail_quality_count{{{l}}} {}",
                        series.quality_count
                    );
                }
            },
        );
        family(
            "flagrail_feedback",
            "summary",
            "User feedback scores attached with feedback().",
            &mut |out| {
                for (f, v, s, series) in &rows {
                    let l = labels(f, v, s);
                    let _ = writeln!(
                        out,
                        "flagrail_feedback_sum{{{l}}} {}",
                        format_float(series.feedback_sum)
                    );
                    let _ = writeln!(
                        out,
                        "flagrail_feedback_count{{{l}}} {}",
                        series.feedback_count
                    );
                }
            },
        );
        family(
            "flagrail_guardrail_state",
            "gauge",
            "Guardrail state per flag, variant and guardrail: 0 closed, 1 tripped, 2 half-open.",
            &mut |out| {
                for (f, v, g, state) in guardrails {
                    let _ = writeln!(out, "flagrail_guardrail_state{{flag=\"{}\",variant=\"{}\",guardrail=\"{}\"}} {state}", escape(f), escape(v), escape(g));
                }
            },
        );
        out
    }
}

/// Escapes a label value (backslash, double quote, newline) per the text format.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn format_float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{x}")
    }
}

/// The live document and its loads: `flagrail_document_info{revision}` (1), the load time, and
/// counters of documents applied after the first (`reloads`) and rejected (`rejected`), as in
/// `status()`.
pub(crate) fn document_to_prometheus(
    revision: &str,
    loaded_at_ms: i64,
    reloads: u64,
    rejected: u64,
    out: &mut String,
) {
    let _ = writeln!(
        out,
        "# HELP flagrail_document_info The live document's revision (value 1)."
    );
    let _ = writeln!(out, "# TYPE flagrail_document_info gauge");
    let _ = writeln!(
        out,
        "flagrail_document_info{{revision=\"{}\"}} 1",
        escape(revision)
    );
    let _ = writeln!(
        out,
        "# HELP flagrail_document_loaded_timestamp_seconds When the live document was loaded."
    );
    let _ = writeln!(
        out,
        "# TYPE flagrail_document_loaded_timestamp_seconds gauge"
    );
    let _ = writeln!(
        out,
        "flagrail_document_loaded_timestamp_seconds {}",
        format_float(loaded_at_ms as f64 / 1000.0)
    );
    let _ = writeln!(
        out,
        "# HELP flagrail_reloads_total Documents that went live after the first."
    );
    let _ = writeln!(out, "# TYPE flagrail_reloads_total counter");
    let _ = writeln!(out, "flagrail_reloads_total {reloads}");
    let _ = writeln!(
        out,
        "# HELP flagrail_reloads_rejected_total Documents rejected (the live one stayed)."
    );
    let _ = writeln!(out, "# TYPE flagrail_reloads_rejected_total counter");
    let _ = writeln!(out, "flagrail_reloads_rejected_total {rejected}");
}

/// Budget gauges (from [`crate::live::Flags::budget_states`]) in the text format: limit,
/// spent and reserved in the window, and exhausted scopes (0 or 1 for a single-scope budget).
pub(crate) fn budgets_to_prometheus(budgets: &[Value], out: &mut String) {
    if budgets.is_empty() {
        return;
    }
    let labels = |b: &Value| {
        format!(
            "flag=\"{}\",budget=\"{}\",measure=\"{}\"",
            escape(b["flag"].as_str().unwrap_or("")),
            escape(b["budget"].as_str().unwrap_or("")),
            escape(b["measure"].as_str().unwrap_or("")),
        )
    };
    type Gauge<'a> = (&'a str, &'a str, &'a dyn Fn(&Value) -> f64);
    let families: [Gauge<'_>; 4] = [
        (
            "flagrail_budget_limit",
            "Budget limit (requests or cost) per window; flag=\"\" is document-wide.",
            &|b| b["limit"].as_f64().unwrap_or(0.0),
        ),
        (
            "flagrail_budget_spent",
            "Spent in the rolling window (all scopes of a per-unit budget).",
            &|b| {
                b["spent"]
                    .as_f64()
                    .or_else(|| b["spent_total"].as_f64())
                    .unwrap_or(0.0)
            },
        ),
        (
            "flagrail_budget_reserved",
            "Reserved by calls in flight (single-scope budgets).",
            &|b| b["reserved"].as_f64().unwrap_or(0.0),
        ),
        (
            "flagrail_budget_exhausted_scopes",
            "Scopes whose budget is exhausted (0 or 1 for a single-scope budget).",
            &|b| {
                b["exhausted_scopes"].as_f64().unwrap_or(
                    if b["exhausted"].as_bool() == Some(true) {
                        1.0
                    } else {
                        0.0
                    },
                )
            },
        ),
    ];
    for (name, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for b in budgets {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(b), format_float(value(b)));
        }
    }
}
