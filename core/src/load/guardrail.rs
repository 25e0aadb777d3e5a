//! `guardrails`: automatic kill switches, fallbacks and ramp halts on a metric's threshold.

use std::sync::Arc;

use serde_json::Value;

use super::flag::VariantNames;
use super::read::{index, Field};
use super::suggest::did_you_mean;
use super::Loader;
use crate::document::guardrail::{self, GuardAction, Guardrail, Metric};
use crate::document::{Action, Rule, Variant};
use crate::error::ProblemKind;

const GUARDRAIL_FIELDS: &[&str] = &[
    "id",
    "metric",
    "max",
    "min",
    "window",
    "min_samples",
    "action",
    "cooldown",
    "probe_percent",
    "variants",
];

/// What a guardrail's checks need to know about its flag.
struct Watched<'a> {
    variants: &'a [Variant],
    names: VariantNames<'a>,
    fallback: &'a [usize],
    rules: &'a [Rule],
    flag: &'a str,
}

impl Loader {
    pub(super) fn guardrails(
        &mut self,
        path: &str,
        value: &Value,
        variants: &[Variant],
        fallback: &[usize],
        rules: &[Rule],
        flag: &str,
    ) -> Vec<Guardrail> {
        let Some(items) = self.array(path, value, "guardrails") else {
            return Vec::new();
        };
        let context = Watched {
            variants,
            names: VariantNames {
                ids: variants.iter().map(|v| &*v.id).collect(),
            },
            fallback,
            rules,
            flag,
        };
        let mut out: Vec<Guardrail> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_path = index(path, i);
            let Some(g) = self.guardrail(&item_path, item, &context) else {
                continue;
            };
            if let Some(first) = out.iter().position(|other| other.id == g.id) {
                self.report(
                    &item_path,
                    ProblemKind::DuplicateGuardrailId,
                    format!("guardrail id \"{}\" is already used by guardrails[{first}] (give each an \"id\")", g.id),
                );
                continue;
            }
            out.push(g);
        }
        out
    }

    fn guardrail(&mut self, path: &str, value: &Value, flag: &Watched<'_>) -> Option<Guardrail> {
        let object = self.open(path, value, GUARDRAIL_FIELDS)?;
        let metric_text = self.required(&object, "metric", Self::string);
        let metric = metric_text.and_then(|text| {
            let parsed = Metric::parse(text);
            if parsed.is_none() {
                let all: Vec<&str> = Metric::ALL.iter().map(|m| m.as_str()).collect();
                self.report(
                    &object.path_of("metric"),
                    ProblemKind::InvalidValue,
                    format!(
                        "unknown metric \"{text}\"{}; expected one of: {}",
                        did_you_mean(text, &all),
                        all.join(", ")
                    ),
                );
            }
            parsed
        });
        let id: Option<Arc<str>> = match self.field(&object, "id", Self::non_empty_string) {
            Field::Valid(id) => Some(Arc::from(id)),
            Field::Absent => Some(Arc::from(metric_text.unwrap_or("guardrail"))),
            Field::Invalid => None,
        };
        // An unknown metric does not hide the guardrail's other problems: without it, the
        // threshold is only read as a number.
        let (wanted, unwanted) = match metric {
            Some(metric) if metric.is_floor() => ("min", "max"),
            Some(_) => ("max", "min"),
            None if object.has("min") && !object.has("max") => ("min", "max"),
            None => ("max", "min"),
        };
        if let Some(metric) = metric.filter(|_| object.has(unwanted)) {
            self.report(
                &object.path_of(unwanted),
                ProblemKind::InvalidValue,
                format!(
                    "metric \"{}\" takes \"{wanted}\", not \"{unwanted}\"",
                    metric.as_str()
                ),
            );
        }
        let threshold = self.required(&object, wanted, |l, path, v| {
            let t = l.number(path, v)?;
            let ok = match metric {
                Some(Metric::ErrorRate) => (0.0..1.0).contains(&t),
                _ => t >= 0.0 && t.is_finite(),
            };
            if !ok {
                let range = if metric == Some(Metric::ErrorRate) {
                    "a rate from 0 up to (not including) 1"
                } else {
                    "0 or more"
                };
                l.report(
                    path,
                    ProblemKind::InvalidValue,
                    format!("must be {range}, found {t}"),
                );
            }
            ok.then_some(t)
        });
        let window = self
            .field(&object, "window", Self::duration_of_a_second_or_more)
            .or(guardrail::DEFAULT_WINDOW);
        let cooldown = self
            .field(&object, "cooldown", Self::duration_of_a_second_or_more)
            .or(guardrail::DEFAULT_COOLDOWN);
        let min_samples = self
            .field(&object, "min_samples", |l, path, v| {
                l.positive_integer(path, v, 1_000_000)
            })
            .or(guardrail::DEFAULT_MIN_SAMPLES);
        let probe_share = self
            .field(&object, "probe_percent", |l, path, v| {
                l.percent(path, v, false)
            })
            .or(guardrail::DEFAULT_PROBE_PERCENT * 1000);
        let action_path = object.path_of("action");
        let action = self.required(&object, "action", |l, path, v| {
            let text = l.string(path, v)?;
            let parsed = GuardAction::parse(text);
            if parsed.is_none() {
                let all: Vec<&str> = GuardAction::ALL.iter().map(|a| a.as_str()).collect();
                l.report(
                    path,
                    ProblemKind::InvalidValue,
                    format!(
                        "unknown action \"{text}\"{}; expected one of: {}",
                        did_you_mean(text, &all),
                        all.join(", ")
                    ),
                );
            }
            parsed
        });
        let watched: Vec<usize> = self
            .field(&object, "variants", |l, path, v| match v {
                Value::Array(items) if !items.is_empty() => Some(
                    items
                        .iter()
                        .enumerate()
                        .filter_map(|(i, item)| {
                            l.variant_ref(&index(path, i), item, &flag.names, flag.flag)
                        })
                        .collect(),
                ),
                other => {
                    l.wrong_type(path, "a non-empty array of variant ids", other);
                    Some(Vec::new())
                }
            })
            .or_else(|| {
                (0..flag.variants.len())
                    .filter(|&v| flag.variants[v].ai)
                    .collect()
            })
            .unwrap_or_default();
        let action = action?;
        match action {
            GuardAction::Fallback if flag.fallback.is_empty() => {
                self.report(
                    &action_path,
                    ProblemKind::InvalidValue,
                    "action \"fallback\" needs the flag's \"fallback\" list",
                );
            }
            GuardAction::Halt | GuardAction::Rollback => {
                let ramps_watched = flag.rules.iter().any(
                    |r| matches!(&r.action, Action::Ramp(ramp) if watched.contains(&ramp.variant)),
                );
                if !ramps_watched {
                    self.report(
                        &action_path,
                        ProblemKind::InvalidValue,
                        format!(
                            "action \"{}\" needs a ramp rule whose variant this guardrail watches",
                            action.as_str()
                        ),
                    );
                }
            }
            _ => {}
        }
        Some(Guardrail {
            id: id?,
            metric: metric?,
            threshold: threshold?,
            window: window?,
            min_samples: min_samples?,
            action,
            cooldown: cooldown?,
            probe_share: probe_share?,
            variants: watched,
        })
    }
}
