//! Fleet metrics: every process publishes its `metrics()` to one hash in Redis
//! (`metrics`, a field per process: `{"at": ms, "metrics": {...}}`) every second, and any
//! process (or `flagrail metrics --redis URL`) merges the fields of the processes seen within
//! [`METRICS_MAX_AGE_MS`].
//!
//! Merging: counters add up (requests, errors, errors by kind, tokens, cost, counts);
//! rates and means are recomputed from the sums (`error_rate`, `cost_per_request`, mean
//! latency, quality and feedback means, weighted by their counts); latency quantiles cannot
//! be added, so the fleet's `p50` / `p95` / `p99` are the largest of the processes' (an upper
//! bound, said in docs/fleet.md). Guardrail readings of single processes are left out: the
//! fleet's own guardrail states are reported under `$fleet.guardrails`.

use serde_json::{json, Map, Value};

/// Processes whose metrics are older than this are left out of the fleet's (and their
/// fields removed by the next publisher).
pub const METRICS_MAX_AGE_MS: i64 = 10 * 60 * 1000;

const QUANTILES: [&str; 3] = ["p50", "p95", "p99"];

/// Merges the `metrics()` of several processes into the fleet's.
pub fn merge_metrics(processes: &[Value]) -> Value {
    let mut out = Map::new();
    for metrics in processes {
        let Value::Object(flags) = metrics else {
            continue;
        };
        for (flag, variants) in flags {
            if flag.starts_with('$') {
                continue;
            }
            let Value::Object(variants) = variants else {
                continue;
            };
            let into = out
                .entry(flag.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(into) = into else {
                continue;
            };
            for (variant, series) in variants {
                let mut series = series.clone();
                if let Value::Object(map) = &mut series {
                    map.remove("guardrails");
                }
                match into.get_mut(variant) {
                    Some(existing) => add_series(existing, &series),
                    None => {
                        into.insert(variant.clone(), series);
                    }
                }
            }
        }
    }
    let mut merged = Value::Object(out);
    finish(&mut merged);
    merged
}

/// Adds `other` into `into`, field by field (means carried as sums until [`finish`]).
fn add_series(into: &mut Value, other: &Value) {
    let (Value::Object(into), Value::Object(other)) = (into, other) else {
        return;
    };
    for (key, value) in other {
        match (into.get_mut(key), value) {
            (None, value) => {
                into.insert(key.clone(), value.clone());
            }
            (Some(Value::Object(_)), Value::Object(_)) if key == "latency_ms" => {
                if let Some(existing) = into.get_mut(key) {
                    add_latency(existing, value);
                }
            }
            (Some(Value::Object(_)), Value::Object(_)) if key == "quality" || key == "feedback" => {
                if let Some(existing) = into.get_mut(key) {
                    add_mean(existing, value);
                }
            }
            (Some(existing @ Value::Object(_)), Value::Object(_)) => add_series(existing, value),
            (Some(existing), Value::Number(n)) => {
                let sum = existing.as_f64().unwrap_or(0.0) + n.as_f64().unwrap_or(0.0);
                *existing = number_like(sum, existing.is_u64() && n.is_u64());
            }
            _ => {}
        }
    }
}

fn number_like(value: f64, integer: bool) -> Value {
    if integer && value >= 0.0 {
        json!(value as u64)
    } else {
        json!(value)
    }
}

fn count_of(v: &Value) -> f64 {
    v.get("count").and_then(Value::as_f64).unwrap_or(0.0)
}

fn mean_of(v: &Value) -> f64 {
    v.get("mean").and_then(Value::as_f64).unwrap_or(0.0)
}

fn add_mean(into: &mut Value, other: &Value) {
    let (a, b) = (count_of(into), count_of(other));
    let total = a + b;
    let mean = if total > 0.0 {
        Some((mean_of(into) * a + mean_of(other) * b) / total)
    } else {
        None
    };
    *into = json!({ "mean": mean, "count": total as u64 });
}

fn add_latency(into: &mut Value, other: &Value) {
    let (a, b) = (count_of(into), count_of(other));
    let total = a + b;
    let mut merged = Map::new();
    for q in QUANTILES {
        let x = into.get(q).and_then(Value::as_f64);
        let y = other.get(q).and_then(Value::as_f64);
        let worst = match (x, y) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        };
        merged.insert(q.into(), json!(worst));
    }
    let mean = (total > 0.0).then(|| (mean_of(into) * a + mean_of(other) * b) / total);
    merged.insert("mean".into(), json!(mean));
    merged.insert("count".into(), json!(total as u64));
    *into = Value::Object(merged);
}

/// Recomputes rates from the merged sums, in every series (and its segments).
fn finish(value: &mut Value) {
    let Value::Object(map) = value else {
        return;
    };
    if let (Some(requests), Some(errors)) = (
        map.get("requests").and_then(Value::as_f64),
        map.get("errors").and_then(Value::as_f64),
    ) {
        let rate = if requests > 0.0 {
            errors / requests
        } else {
            0.0
        };
        map.insert("error_rate".into(), json!(rate));
        if let Some(cost) = map.get("cost").and_then(Value::as_f64) {
            let per = (requests > 0.0).then(|| cost / requests);
            map.insert("cost_per_request".into(), json!(per));
        }
    }
    for (key, child) in map.iter_mut() {
        if key != "latency_ms" && key != "quality" && key != "feedback" {
            finish(child);
        }
    }
}

/// The fleet's metrics in the Prometheus text format: one series per flag × variant (the
/// segments are summed into it), plus the fleet's size and guardrail states.
pub fn fleet_prometheus(
    merged: &Value,
    processes: usize,
    guardrails: &[(String, String, String, u8)],
) -> String {
    let mut text = String::new();
    let mut rows: Vec<(&str, &str, &Value)> = Vec::new();
    if let Value::Object(flags) = merged {
        for (flag, variants) in flags {
            if let Value::Object(variants) = variants {
                for (variant, series) in variants {
                    rows.push((flag, variant, series));
                }
            }
        }
    }
    let counter =
        |text: &mut String, name: &str, help: &str, pick: &dyn Fn(&Value) -> Option<f64>| {
            text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for (flag, variant, series) in &rows {
                let value = pick(series).unwrap_or(0.0);
                text.push_str(&format!(
                    "{name}{{flag=\"{}\",variant=\"{}\"}} {}\n",
                    escape(flag),
                    escape(variant),
                    value
                ));
            }
        };
    counter(
        &mut text,
        "flagrail_fleet_requests_total",
        "Attempts made by every process of the fleet.",
        &|s| s.get("requests")?.as_f64(),
    );
    counter(
        &mut text,
        "flagrail_fleet_errors_total",
        "Failed attempts across the fleet.",
        &|s| s.get("errors")?.as_f64(),
    );
    counter(
        &mut text,
        "flagrail_fleet_cost_total",
        "Cost reported across the fleet.",
        &|s| s.get("cost")?.as_f64(),
    );
    counter(
        &mut text,
        "flagrail_fleet_input_tokens_total",
        "Input tokens across the fleet.",
        &|s| s.get("tokens")?.get("input")?.as_f64(),
    );
    counter(
        &mut text,
        "flagrail_fleet_output_tokens_total",
        "Output tokens across the fleet.",
        &|s| s.get("tokens")?.get("output")?.as_f64(),
    );
    text.push_str("# HELP flagrail_fleet_latency_p95_ms The largest p95 latency of any process (an upper bound of the fleet's).\n# TYPE flagrail_fleet_latency_p95_ms gauge\n");
    for (flag, variant, series) in &rows {
        if let Some(p95) = series
            .get("latency_ms")
            .and_then(|l| l.get("p95"))
            .and_then(Value::as_f64)
        {
            text.push_str(&format!(
                "flagrail_fleet_latency_p95_ms{{flag=\"{}\",variant=\"{}\"}} {p95}\n",
                escape(flag),
                escape(variant)
            ));
        }
    }
    text.push_str("# HELP flagrail_fleet_guardrail_state Fleet state of a guardrail: 0 closed, 1 tripped, 2 half-open.\n# TYPE flagrail_fleet_guardrail_state gauge\n");
    for (flag, variant, guardrail, state) in guardrails {
        text.push_str(&format!(
            "flagrail_fleet_guardrail_state{{flag=\"{}\",variant=\"{}\",guardrail=\"{}\"}} {state}\n",
            escape(flag),
            escape(variant),
            escape(guardrail)
        ));
    }
    text.push_str(&format!(
        "# HELP flagrail_fleet_processes Processes that published metrics recently.\n# TYPE flagrail_fleet_processes gauge\nflagrail_fleet_processes {processes}\n"
    ));
    text
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(requests: u64, errors: u64, p95: f64) -> Value {
        json!({"f": {"v": {
            "requests": requests, "errors": errors, "error_rate": 0.0,
            "errors_by_kind": {"timeout": errors},
            "latency_ms": {"p50": 1.0, "p95": p95, "p99": p95, "mean": 2.0, "count": requests},
            "tokens": {"input": 1, "output": 2}, "cost": 0.5, "cost_per_request": null,
            "quality": {"mean": null, "count": 0}, "feedback": {"mean": null, "count": 0},
            "segments": {}, "guardrails": {"g": {"state": "closed"}}
        }}, "$budgets": []})
    }

    #[test]
    fn counters_add_rates_are_recomputed_quantiles_take_the_worst() {
        let merged = merge_metrics(&[process(10, 1, 50.0), process(30, 3, 80.0)]);
        let v = &merged["f"]["v"];
        assert_eq!(v["requests"], 40);
        assert_eq!(v["errors_by_kind"]["timeout"], 4);
        assert_eq!(v["error_rate"], 0.1);
        assert_eq!(v["latency_ms"]["p95"], 80.0);
        assert_eq!(v["latency_ms"]["count"], 40);
        assert_eq!(v["cost"], 1.0);
        assert!(v.get("guardrails").is_none());
        let text = fleet_prometheus(&merged, 2, &[]);
        assert!(text.contains("flagrail_fleet_requests_total{flag=\"f\",variant=\"v\"} 40"));
        assert!(text.contains("flagrail_fleet_processes 2"));
    }
}
