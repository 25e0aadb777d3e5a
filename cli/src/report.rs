//! `flagrail report`: one self-contained HTML file (inline SVG and a few lines of inline script,
//! nothing fetched) showing, per flag, the ramp timeline with the autopilot's decisions, each
//! variant's metrics over time with their intervals against the autopilot's limits, guardrail
//! trips, kills and budget events.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use flagrail_core::autopilot::events::{EventLog, Run};
use flagrail_core::autopilot::{Limit, Verdict};
use flagrail_core::document::Action;
use flagrail_core::time::{format_timestamp, Millis};
use flagrail_core::Document;
use flagrail_fleet::shared::series::{SeriesMetric, StoredPoint, SERIES_TTL_MS};
use serde_json::Value;

use crate::args::Args;
use crate::autopilot::{decide_all, line, read_events, RampDecision};
use crate::{load, parse_at, Failure, Outcome};

pub const USAGE: &str =
    "report FILE --events EVENTS… | [FILE] --redis URL [--redis-key K] [--events EVENTS…]
                --out report.html [--at TIME]";

pub const DETAILS: &str = "  --events EVENTS…  events JSON-lines files
  --redis URL       the document at the Redis key, the autopilot's current look from the
                    fleet's per-unit evidence there, its ramps' metrics over time (per minute,
                    the last 8 days), and decisions and kills from its audit stream (with
                    --events as well: the metric charts are drawn from those events instead)
  --redis-key K     the key of the document (default flagrail:document)
  --out PATH        the HTML file to write (self-contained: no network, no external library)
  --at TIME         the end of the report and the instant of the autopilot's current look
                    (default: the last event or audit record, or now without either)
The autopilot's written decisions and the kills come from <name>.audit.jsonl beside FILE
(with --redis: from the document's audit stream).";

/// Time bins of the metric charts.
const BINS: usize = 24;

const PALETTE: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// One time bin: its middle, the mean and the interval's ends.
type Bin = (Millis, f64, f64, f64);

const METRICS: &[(&str, &str)] = &[
    ("quality", "quality (feedback)"),
    ("error_rate", "error rate"),
    ("latency_ms", "latency (ms)"),
    ("cost", "cost per request"),
];

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One record of the audit log beside the document.
struct AuditRecord {
    time_ms: Millis,
    value: Value,
}

fn read_audit(file: &str) -> Vec<AuditRecord> {
    let Ok(real) = std::fs::canonicalize(file) else {
        return Vec::new();
    };
    let path = flagrail_core::admin::audit_log_path(&real);
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|value| {
            let time_ms = flagrail_core::time::parse_timestamp(value.get("time")?.as_str()?)?;
            Some(AuditRecord { time_ms, value })
        })
        .collect()
}

/// A chart's drawing area and scales.
struct Frame {
    t0: Millis,
    t1: Millis,
    y0: f64,
    y1: f64,
}

const W: f64 = 760.0;
const H: f64 = 220.0;
const LEFT: f64 = 60.0;
const TOP: f64 = 16.0;
const PLOT_W: f64 = W - LEFT - 16.0;
const PLOT_H: f64 = H - TOP - 34.0;

impl Frame {
    fn x(&self, t: Millis) -> f64 {
        let span = (self.t1 - self.t0).max(1) as f64;
        LEFT + PLOT_W * ((t - self.t0) as f64 / span).clamp(0.0, 1.0)
    }
    fn y(&self, v: f64) -> f64 {
        let span = if self.y1 > self.y0 {
            self.y1 - self.y0
        } else {
            1.0
        };
        TOP + PLOT_H * (1.0 - ((v - self.y0) / span).clamp(0.0, 1.0))
    }
    fn axes(&self, out: &mut String, label: &str) {
        let _ = write!(
            out,
            r##"<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="#fbfbfd" stroke="#ccc"/>"##
        );
        for k in 0..=4 {
            let v = self.y0 + (self.y1 - self.y0) * k as f64 / 4.0;
            let y = self.y(v);
            let _ = write!(
                out,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end" font-size="10">{}</text>"##,
                LEFT + PLOT_W,
                LEFT - 4.0,
                y + 3.0,
                short(v)
            );
        }
        for (t, anchor) in [(self.t0, "start"), (self.t1, "end")] {
            let _ = write!(
                out,
                r##"<text x="{:.1}" y="{}" text-anchor="{anchor}" font-size="10">{}</text>"##,
                self.x(t),
                TOP + PLOT_H + 14.0,
                format_timestamp(t)
            );
        }
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" font-size="11" fill="#444">{}</text>"##,
            LEFT + PLOT_W / 2.0 - 40.0,
            TOP + PLOT_H + 28.0,
            esc(label)
        );
    }
}

fn short(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn polyline(frame: &Frame, points: &[(Millis, f64)]) -> String {
    let mut d = String::new();
    for (i, (t, v)) in points.iter().enumerate() {
        let _ = write!(
            d,
            "{}{:.1},{:.1} ",
            if i == 0 { "M" } else { "L" },
            frame.x(*t),
            frame.y(*v)
        );
    }
    d
}

/// Values at a time: one run's `(time, 1, v, v²)`, or a stored minute's moments from Redis
/// `(minute, n, Σv, Σv²)`.
type Sample = (Millis, u64, f64, f64);

/// Per-bin mean and a 95 % normal interval of one value.
fn binned(samples: impl Iterator<Item = Sample>, t0: Millis, t1: Millis) -> Vec<Bin> {
    let width = ((t1 - t0) / BINS as i64).max(1);
    let mut sums = vec![(0u64, 0.0f64, 0.0f64); BINS];
    for (time, count, sum, sum_of_squares) in samples {
        if !(sum.is_finite() && sum_of_squares.is_finite()) || time > t1 {
            continue;
        }
        let bin = (((time - t0) / width).max(0) as usize).min(BINS - 1);
        sums[bin].0 += count;
        sums[bin].1 += sum;
        sums[bin].2 += sum_of_squares;
    }
    sums.iter()
        .enumerate()
        .filter(|(_, s)| s.0 >= 2)
        .map(|(i, &(n, sum, sq))| {
            let n_f = n as f64;
            let mean = sum / n_f;
            let var = ((sq - sum * sum / n_f) / (n_f - 1.0)).max(0.0);
            let half = 1.96 * (var / n_f).sqrt();
            (
                t0 + width * i as i64 + width / 2,
                mean,
                mean - half,
                mean + half,
            )
        })
        .collect()
}

fn metric_of(run: &Run, metric: &str) -> Option<f64> {
    match metric {
        "quality" => run.quality,
        "error_rate" => run.outcome.as_deref().map(|o| f64::from(o == "error")),
        "latency_ms" => run.latency_ms,
        "cost" => run.cost,
        _ => None,
    }
}

/// Everything shown for one flag.
struct FlagView<'a> {
    key: &'a str,
    runs: Vec<&'a Run>,
    /// Its autopilot ramps' metrics over time from Redis (`report --redis`).
    series: &'a [StoredPoint],
    decisions: Vec<&'a RampDecision>,
    audit: Vec<&'a AuditRecord>,
    notices: Vec<(Millis, String, String)>,
    /// (metric, limit, candidate, control) of the flag's autopilot ramps.
    limits: Vec<(String, Limit, String, String)>,
}

fn markers(out: &mut String, frame: &Frame, view: &FlagView<'_>) {
    for record in &view.audit {
        let action = record.value["action"].as_str().unwrap_or("");
        let (series, color, label) = match action {
            "autopilot" => {
                let decision = record.value["decision"].as_str().unwrap_or("");
                let color = match decision {
                    "promote" => "#2ca02c",
                    "roll_back" | "revert" => "#d62728",
                    _ => "#ff7f0e",
                };
                ("decision", color, format!("autopilot: {decision}"))
            }
            "kill" | "unkill" => ("kill", "#000", action.to_string()),
            _ => continue,
        };
        let x = frame.x(record.time_ms);
        let _ = write!(
            out,
            r##"<path data-series="{series}" d="M{x:.1},{TOP} L{x:.1},{}" stroke="{color}" stroke-width="2" stroke-dasharray="4 2"><title>{} {}</title></path>"##,
            TOP + PLOT_H,
            esc(&format_timestamp(record.time_ms)),
            esc(&label)
        );
    }
    for (t, kind, text) in &view.notices {
        let x = frame.x(*t);
        let color = if kind.starts_with("guardrail") {
            "#9467bd"
        } else {
            "#8c564b"
        };
        let _ = write!(
            out,
            r##"<path data-series="{}" d="M{x:.1},{TOP} L{x:.1},{}" stroke="{color}" stroke-width="1"><title>{} {}</title></path>"##,
            esc(kind),
            TOP + PLOT_H,
            esc(&format_timestamp(*t)),
            esc(text)
        );
    }
}

fn timeline(view: &FlagView<'_>, frame: &Frame, doc: &Document) -> String {
    let mut out = String::new();
    let mut frame = Frame {
        y0: 0.0,
        y1: 100.0,
        ..*frame
    };
    frame.y1 = 100.0;
    let _ = write!(
        out,
        r#"<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">"#
    );
    frame.axes(&mut out, "share of the runs on the candidate (%)");
    let flag = doc.flag(view.key);
    let mut colour = 0;
    for rule in flag.iter().flat_map(|f| f.rules.iter()) {
        let Action::Ramp(ramp) = &rule.action else {
            continue;
        };
        let Some(candidate) = flag.and_then(|f| f.variants.get(ramp.variant)) else {
            continue;
        };
        // With a baseline, the ramp decides for both arms; without one, the units outside
        // the ramp fall through to other rules, so the share is of all the flag's runs.
        let ramp_runs: Vec<&Run> = view
            .runs
            .iter()
            .copied()
            .filter(|r| ramp.baseline.is_none() || r.rule_id.as_deref() == Some(&*rule.id))
            .collect();
        let percent = |on_candidate: bool| if on_candidate { 100.0 } else { 0.0 };
        let from_runs = ramp_runs.iter().map(|r| {
            let v = percent(r.variant.as_deref() == Some(&*candidate.id));
            (r.time_ms, 1, v, v * v)
        });
        // From Redis: every run of the ramp's two arms has an `error_rate` value, so its
        // counts are the runs per arm and minute.
        let from_redis = view
            .series
            .iter()
            .filter(|p| p.metric == SeriesMetric::ErrorRate)
            .map(|p| {
                let v = percent(p.variant == *candidate.id);
                let n = p.moments.count;
                (p.minute, n, v * n as f64, v * v * n as f64)
            });
        let share = binned(from_runs.chain(from_redis), frame.t0, frame.t1);
        let points: Vec<(Millis, f64)> = share.iter().map(|p| (p.0, p.1)).collect();
        if !points.is_empty() {
            let _ = write!(
                out,
                r##"<path data-series="ramp:{}" d="{}" fill="none" stroke="{}" stroke-width="2"/>"##,
                esc(&rule.id),
                polyline(&frame, &points),
                PALETTE[colour % PALETTE.len()]
            );
            colour += 1;
        }
    }
    markers(&mut out, &frame, view);
    out.push_str("</svg>");
    out
}

fn metric_chart(view: &FlagView<'_>, frame: &Frame, metric: &str, label: &str) -> Option<String> {
    let variants: std::collections::BTreeSet<&str> = view
        .runs
        .iter()
        .filter_map(|r| r.variant.as_deref())
        .chain(view.series.iter().map(|p| p.variant.as_str()))
        .collect();
    let mut series: Vec<(&str, Vec<Bin>)> = Vec::new();
    for variant in variants {
        let from_runs = view
            .runs
            .iter()
            .filter(|r| r.variant.as_deref() == Some(variant))
            .filter_map(|r| {
                let v = metric_of(r, metric)?;
                Some((r.time_ms, 1, v, v * v))
            });
        let from_redis = view
            .series
            .iter()
            .filter(|p| p.variant == variant && p.metric.as_str() == metric)
            .map(|p| {
                let m = &p.moments;
                (p.minute, m.count, m.sum, m.sum_of_squares)
            });
        let points = binned(from_runs.chain(from_redis), frame.t0, frame.t1);
        if !points.is_empty() {
            series.push((variant, points));
        }
    }
    if series.is_empty() {
        return None;
    }
    // The limit: the control's bin mean moved by the pre-committed limit.
    let mut limit_lines: Vec<(String, Vec<(Millis, f64)>)> = Vec::new();
    for (name, limit, _candidate, control) in &view.limits {
        if name != metric {
            continue;
        }
        let Some((_, control_points)) = series.iter().find(|(v, _)| *v == control.as_str()) else {
            continue;
        };
        let better_lower = !matches!(metric, "quality" | "score");
        let points = control_points
            .iter()
            .map(|&(t, mean, _, _)| {
                let v = match (limit, better_lower) {
                    (Limit::Difference(d), true) => mean + d,
                    (Limit::Difference(d), false) => mean - d,
                    (Limit::Ratio(r), true) => mean * r,
                    (Limit::Ratio(r), false) => mean / r,
                };
                (t, v)
            })
            .collect();
        limit_lines.push((format!("limit:{metric}"), points));
    }
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for (_, points) in &series {
        for &(_, _, l, h) in points {
            lo = lo.min(l);
            hi = hi.max(h);
        }
    }
    for (_, points) in &limit_lines {
        for &(_, v) in points {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if metric == "error_rate" {
        lo = lo.max(0.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let frame = Frame {
        y0: lo - pad,
        y1: hi + pad,
        ..*frame
    };
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">"#
    );
    frame.axes(
        &mut out,
        &format!("{label}: mean per run with 95 % interval, by variant"),
    );
    for (i, (variant, points)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut band = String::new();
        for (k, &(t, _, l, _)) in points.iter().enumerate() {
            let _ = write!(
                band,
                "{}{:.1},{:.1} ",
                if k == 0 { "M" } else { "L" },
                frame.x(t),
                frame.y(l)
            );
        }
        for &(t, _, _, h) in points.iter().rev() {
            let _ = write!(band, "L{:.1},{:.1} ", frame.x(t), frame.y(h));
        }
        band.push('Z');
        let _ = write!(
            out,
            r##"<path data-series="interval:{metric}:{v}" d="{band}" fill="{color}" fill-opacity="0.15" stroke="none"/>"##,
            v = esc(variant)
        );
        let line: Vec<(Millis, f64)> = points.iter().map(|p| (p.0, p.1)).collect();
        let _ = write!(
            out,
            r##"<path data-series="metric:{metric}:{v}" d="{}" fill="none" stroke="{color}" stroke-width="2"><title>{v}</title></path>"##,
            polyline(&frame, &line),
            v = esc(variant)
        );
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" font-size="11" fill="{color}">{}</text>"##,
            LEFT + 8.0 + 90.0 * i as f64,
            TOP + 12.0,
            esc(variant)
        );
    }
    for (name, points) in &limit_lines {
        let _ = write!(
            out,
            r##"<path data-series="{}" d="{}" fill="none" stroke="#555" stroke-width="1.5" stroke-dasharray="6 3"><title>the candidate's limit</title></path>"##,
            esc(name),
            polyline(&frame, points)
        );
    }
    markers(&mut out, &frame, view);
    out.push_str("</svg>");
    Some(out)
}

fn verdict_table(verdict: &Verdict) -> String {
    let mut out = String::from(
        "<table><tr><th>metric</th><th>control mean</th><th>candidate mean</th><th>estimate</th><th>interval</th><th>limit</th><th>status</th></tr>",
    );
    for m in &verdict.metrics {
        let opt = |v: Option<f64>| v.map_or("–".to_string(), short);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{} (n={})</td><td>{} (n={})</td><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td></tr>",
            esc(&m.metric),
            opt(m.control.mean),
            m.control.n,
            opt(m.candidate.mean),
            m.candidate.n,
            opt(m.estimate),
            m.interval
                .map_or("–".to_string(), |[a, b]| format!("[{}, {}]", short(a), short(b))),
            if matches!(m.must_stay, flagrail_core::autopilot::Side::Above) {
                "≥"
            } else {
                "≤"
            },
            short(m.limit),
            esc(&serde_json::to_value(m.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default())
        );
    }
    out.push_str("</table>");
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}
.state{font-family:monospace;font-size:12px;background:#f4f4f8;padding:6px}svg{display:block;margin:8px 0}";

/// Records errors into the page so a headless browser's DOM dump shows them, and counts the
/// series drawn (the test reads both).
const SCRIPT: &str = "window.__errors=[];window.addEventListener('error',function(e){window.__errors.push(String(e.message));});
document.addEventListener('DOMContentLoaded',function(){var s=document.querySelectorAll('svg path[data-series]');
document.body.setAttribute('data-series-count',String(s.length));
document.body.setAttribute('data-js-errors',String(window.__errors.length));
document.getElementById('js-errors').textContent=window.__errors.join('\\n');});";

pub fn run(args: &mut Args) -> Outcome {
    let events = args.values("--events");
    let out_path = args.required("--out")?;
    let at_text = args.option("--at");
    let redis = args.option("--redis");
    let redis_key = args
        .option("--redis-key")
        .unwrap_or_else(|| flagrail_fleet::connection::DEFAULT_DOCUMENT_KEY.to_string());
    let file = if redis.is_some() {
        args.next_positional()
    } else {
        Some(args.positional("FILE")?)
    };
    args.finish()?;
    if redis.is_none() && events.is_empty() {
        return Err(Failure::usage("report needs --events FILE… or --redis URL"));
    }
    let log = read_events(&events)?;
    let mut redis_input = match &redis {
        Some(url) => Some(crate::autopilot::open_redis(url, &redis_key)?),
        None => None,
    };
    let (doc, audit, shown) = match (&mut redis_input, &file) {
        (Some(input), _) => {
            let doc = input.document()?;
            let audit = input
                .publisher
                .audit_all()
                .map_err(crate::redis::fleet_failure)?
                .into_iter()
                .filter_map(|entry| {
                    let value = entry.get("record")?.clone();
                    let time_ms =
                        flagrail_core::time::parse_timestamp(value.get("time")?.as_str()?)?;
                    Some(AuditRecord { time_ms, value })
                })
                .collect::<Vec<_>>();
            (doc, audit, format!("redis:{}", input.publisher.shown()))
        }
        (None, Some(file)) => (load(file)?, read_audit(file), file.clone()),
        (None, None) => return Err(Failure::usage("missing FILE")),
    };
    let last_event = log
        .runs
        .iter()
        .map(|r| r.time_ms)
        .chain(log.notices.iter().map(|n| n.time_ms))
        .chain(audit.iter().map(|r| r.time_ms))
        .max();
    let at = match (at_text, &redis_input) {
        (Some(t), _) => parse_at(Some(t))?,
        // The fleet's evidence is live: its look is now.
        (None, Some(_)) => parse_at(None)?,
        (None, None) => last_event.map_or_else(|| parse_at(None), Ok)?,
    };
    let decisions = match &mut redis_input {
        Some(input) => input.decide(&doc, at, &HashSet::new())?,
        None => decide_all(&doc, &log, at, &HashSet::new()),
    };
    // The autopilot ramps' metrics over time that the fleet wrote (the last 8 days, what
    // Redis keeps), unless events files were given: they would chart the same runs twice.
    let mut series: BTreeMap<String, Vec<StoredPoint>> = BTreeMap::new();
    if let (Some(input), true) = (&mut redis_input, events.is_empty()) {
        for flag in doc.flags() {
            let points = input
                .publisher
                .read_series(&flag.key, at - SERIES_TTL_MS, at)
                .map_err(crate::redis::fleet_failure)?;
            if !points.is_empty() {
                series.insert(flag.key.to_string(), points);
            }
        }
    }
    let html = render(&doc, &log, &series, &decisions, &audit, at, &shown);
    std::fs::write(&out_path, html).map_err(|err| Failure::failed(format!("{out_path}: {err}")))?;
    outln!("wrote {out_path}");
    Ok(())
}

fn render(
    doc: &Document,
    log: &EventLog,
    series: &BTreeMap<String, Vec<StoredPoint>>,
    decisions: &[RampDecision],
    audit: &[AuditRecord],
    at: Millis,
    file: &str,
) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>flagrail report: {}</title><style>{STYLE}</style><script>{SCRIPT}</script></head><body>",
        esc(file)
    );
    let _ = write!(
        html,
        "<h1>flagrail report</h1><p>Document <code>{}</code>, revision <code>{}</code>; {} runs from the events{}; as of {}.</p><pre id=\"js-errors\"></pre>",
        esc(file),
        esc(doc.revision()),
        log.runs.len(),
        if series.is_empty() {
            String::new()
        } else {
            let minutes: usize = series.values().map(Vec::len).sum();
            format!("; {minutes} per-minute points of the fleet's autopilot ramps from Redis")
        },
        format_timestamp(at)
    );
    let mut by_flag: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for run in &log.runs {
        if run.time_ms <= at {
            by_flag.entry(&run.flag).or_default().push(run);
        }
    }
    for flag in doc.flags() {
        let key: &str = &flag.key;
        let runs = by_flag.remove(key).unwrap_or_default();
        let flag_series: &[StoredPoint] = series.get(key).map_or(&[], Vec::as_slice);
        let flag_decisions: Vec<&RampDecision> =
            decisions.iter().filter(|d| d.flag == key).collect();
        if runs.is_empty() && flag_decisions.is_empty() && flag_series.is_empty() {
            continue;
        }
        let flag_audit: Vec<&AuditRecord> = audit
            .iter()
            .filter(|r| {
                r.value["flag"]
                    .as_str()
                    .is_some_and(|f| f == key || f == "*")
                    && r.time_ms <= at
            })
            .collect();
        let notices: Vec<(Millis, String, String)> = log
            .notices
            .iter()
            .filter(|n| n.flag.as_deref() == Some(key) && n.time_ms <= at)
            .map(|n| {
                let e = &n.event;
                let text = match n.kind.as_str() {
                    k if k.starts_with("guardrail") => format!(
                        "{k} {} on {} ({}, {} {:?} bound {:?})",
                        e["guardrail"].as_str().unwrap_or(""),
                        e["variant"].as_str().unwrap_or(""),
                        e["action"].as_str().unwrap_or(""),
                        e["metric"].as_str().unwrap_or(""),
                        e["observed"].as_f64(),
                        e["bound"].as_f64()
                    ),
                    k => format!(
                        "{k} {} ({} of {})",
                        e["budget"].as_str().unwrap_or(""),
                        e["spent"],
                        e["limit"]
                    ),
                };
                (n.time_ms, n.kind.clone(), text)
            })
            .collect();
        let mut limits = Vec::new();
        for rule in &flag.rules {
            if let Action::Ramp(ramp) = &rule.action {
                if let Some(spec) = flag.autopilot_of(ramp) {
                    let candidate = flag.variants[ramp.variant].id.to_string();
                    for m in &spec.metrics {
                        limits.push((
                            m.metric.clone(),
                            m.limit,
                            candidate.clone(),
                            spec.control.clone(),
                        ));
                    }
                }
            }
        }
        let t0 = runs
            .iter()
            .map(|r| r.time_ms)
            .chain(flag_audit.iter().map(|r| r.time_ms))
            .chain(notices.iter().map(|n| n.0))
            .chain(flag_series.iter().map(|p| p.minute))
            .min()
            .unwrap_or(at - 3_600_000)
            .min(at - 1_000);
        let frame = Frame {
            t0,
            t1: at,
            y0: 0.0,
            y1: 1.0,
        };
        let view = FlagView {
            key,
            runs,
            series: flag_series,
            decisions: flag_decisions,
            audit: flag_audit,
            notices,
            limits,
        };
        let _ = write!(
            html,
            "<section data-flag=\"{}\"><h2>{}</h2>",
            esc(key),
            esc(key)
        );
        for d in &view.decisions {
            let _ = write!(
                html,
                "<p class=\"state\">autopilot now: {}</p>",
                esc(&line(d))
            );
            if let Some(verdict) = &d.verdict {
                html.push_str(&verdict_table(verdict));
            }
        }
        html.push_str("<h3>Ramp timeline</h3>");
        html.push_str(&timeline(&view, &frame, doc));
        for (metric, label) in METRICS {
            if let Some(svg) = metric_chart(&view, &frame, metric, label) {
                let _ = write!(html, "<h3>{}</h3>{svg}", esc(label));
            }
        }
        html.push_str("<h3>Events</h3><table><tr><th>time</th><th>what</th></tr>");
        let mut rows: Vec<(Millis, String)> = view
            .audit
            .iter()
            .map(|r| {
                let v = &r.value;
                let what = match v["action"].as_str() {
                    Some("autopilot") => format!(
                        "autopilot {} ({}) at step {} ({} %), revision {} → {}",
                        v["decision"].as_str().unwrap_or(""),
                        v["reason"].as_str().unwrap_or(""),
                        v["step"],
                        v["percent"],
                        v["old_revision"].as_str().unwrap_or(""),
                        v["new_revision"].as_str().unwrap_or("")
                    ),
                    Some(action) => format!(
                        "{action} by {}: {}",
                        v["actor"].as_str().unwrap_or("?"),
                        v["reason"].as_str().unwrap_or("")
                    ),
                    None => v.to_string(),
                };
                (r.time_ms, what)
            })
            .chain(view.notices.iter().map(|n| (n.0, n.2.clone())))
            .collect();
        rows.sort_by_key(|r| r.0);
        for (t, what) in rows {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td></tr>",
                format_timestamp(t),
                esc(&what)
            );
        }
        html.push_str("</table></section>");
    }
    html.push_str("</body></html>\n");
    html
}
