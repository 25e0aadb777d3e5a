//! `rules`: the targeting rules of a flag, each serving, splitting or ramping; and splits.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::Value;

use super::flag::VariantNames;
use super::read::index;
use super::segments::SegmentNames;
use super::Loader;
use crate::document::{Action, Rule, Split};
use crate::error::ProblemKind;
use crate::hash::{SaltedHasher, PERCENT_TOTAL};

const RULE_FIELDS: &[&str] = &[
    "id",
    "description",
    "when",
    "serve",
    "split",
    "ramp",
    "bucket_by",
    "salt",
];

impl Loader {
    pub(super) fn rules(
        &mut self,
        path: &str,
        value: &Value,
        variants: &VariantNames<'_>,
        flag: &str,
        segments: &SegmentNames<'_>,
    ) -> Vec<Rule> {
        let Some(items) = self.array(path, value, "rules") else {
            return Vec::new();
        };
        let mut seen_ids: FxHashMap<String, usize> = FxHashMap::default();
        let mut rules = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let rule_path = index(path, i);
            let Some(rule) = self.rule(&rule_path, i, item, variants, flag, segments) else {
                continue;
            };
            if let Some(first) = seen_ids.insert(rule.id.to_string(), i) {
                self.report(
                    &super::read::join(&rule_path, "id"),
                    ProblemKind::DuplicateRuleId,
                    format!("rule id \"{}\" is already used by rules[{first}]", rule.id),
                );
            }
            rules.push(rule);
        }
        rules
    }

    fn rule(
        &mut self,
        path: &str,
        position: usize,
        value: &Value,
        variants: &VariantNames<'_>,
        flag: &str,
        segments: &SegmentNames<'_>,
    ) -> Option<Rule> {
        let rule = self.open(path, value, RULE_FIELDS)?;
        let id: Arc<str> = match self.field(&rule, "id", Self::non_empty_string).optional() {
            Some(Some(id)) => Arc::from(id),
            // Unnamed rules are named by position, the same way error paths name them.
            Some(None) => Arc::from(format!("rules[{position}]")),
            None => Arc::from(""),
        };
        let description = self.field(&rule, "description", Self::owned_string).ok();
        let when = self
            .field(&rule, "when", |l, path, v| {
                let when = l.condition(path, v, segments)?;
                l.check_depth(path, &when, None);
                Some(when)
            })
            .optional()?;
        let actions: Vec<&str> = ["serve", "split", "ramp"]
            .into_iter()
            .filter(|k| rule.has(k))
            .collect();
        let action = match actions.as_slice() {
            ["serve"] => Action::Serve(self.required(&rule, "serve", |l, path, v| {
                l.variant_ref(path, v, variants, flag)
            })?),
            ["split"] => Action::Split(self.required(&rule, "split", |l, path, v| {
                l.split(path, v, variants, flag)
            })?),
            ["ramp"] => Action::Ramp(
                self.required(&rule, "ramp", |l, path, v| l.ramp(path, v, variants, flag))?,
            ),
            [] => {
                self.report(
                    path,
                    ProblemKind::MissingField,
                    "a rule needs one of \"serve\", \"split\" or \"ramp\"",
                );
                return None;
            }
            _ => {
                self.report(
                    path,
                    ProblemKind::InvalidValue,
                    format!(
                        "a rule has exactly one of serve/split/ramp, found {}",
                        actions.join(", ")
                    ),
                );
                return None;
            }
        };
        let is_bucketed = !matches!(action, Action::Serve(_));
        let mut bucket_by = None;
        let mut salt = None;
        for key in ["bucket_by", "salt"] {
            if !rule.has(key) {
                continue;
            }
            if !is_bucketed {
                self.report(
                    &rule.path_of(key),
                    ProblemKind::InvalidValue,
                    format!("\"{key}\" only applies to rules with a split or a ramp"),
                );
                continue;
            }
            if key == "bucket_by" {
                bucket_by = self
                    .field(&rule, key, Self::non_empty_string)
                    .ok()
                    .map(Box::from);
            } else {
                salt = self.field(&rule, key, Self::string).ok().map(Box::from);
            }
        }
        Some(Rule {
            id,
            description,
            when,
            action,
            bucket_by,
            salt,
            // Filled in by `Loader::flag` once the flag's own salt is known.
            hasher: SaltedHasher::default(),
        })
    }

    fn split(
        &mut self,
        path: &str,
        value: &Value,
        variants: &VariantNames<'_>,
        flag: &str,
    ) -> Option<Split> {
        let items = self.array(path, value, "{\"variant\", \"weight\" | \"percent\"}")?;
        if items.is_empty() {
            self.report(
                path,
                ProblemKind::InvalidValue,
                "a split needs at least one variant",
            );
            return None;
        }
        let mut uses_percent = None;
        let mut entries = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let Some(entry) = self.open(index(path, i), item, &["variant", "weight", "percent"])
            else {
                ok = false;
                continue;
            };
            let variant = self.required(&entry, "variant", |l, path, v| {
                l.variant_ref(path, v, variants, flag)
            });
            let weight = match (entry.has("weight"), entry.has("percent")) {
                (true, false) => {
                    if uses_percent == Some(true) {
                        self.report(
                            &entry.path,
                            ProblemKind::InvalidWeights,
                            "mixes \"weight\" and \"percent\" in one split",
                        );
                    }
                    uses_percent = Some(false);
                    self.field(&entry, "weight", Self::weight).ok()
                }
                (false, true) => {
                    if uses_percent == Some(false) {
                        self.report(
                            &entry.path,
                            ProblemKind::InvalidWeights,
                            "mixes \"weight\" and \"percent\" in one split",
                        );
                    }
                    uses_percent = Some(true);
                    self.field(&entry, "percent", |l, path, v| l.percent(path, v, true))
                        .ok()
                }
                (true, true) => {
                    self.report(
                        &entry.path,
                        ProblemKind::InvalidValue,
                        "give either \"weight\" or \"percent\", not both",
                    );
                    None
                }
                (false, false) => {
                    self.report(
                        &entry.path,
                        ProblemKind::MissingField,
                        "each split entry needs a \"weight\" or a \"percent\"",
                    );
                    None
                }
            };
            match (variant, weight) {
                (Some(v), Some(w)) => {
                    if entries.iter().any(|(_, existing)| *existing == v) {
                        self.report(
                            &entry.path_of("variant"),
                            ProblemKind::InvalidValue,
                            format!(
                                "variant \"{}\" appears twice in this split",
                                variants.ids[v]
                            ),
                        );
                        ok = false;
                    }
                    entries.push((w, v));
                }
                _ => ok = false,
            }
        }
        if !ok {
            return None;
        }
        let total: u64 = entries.iter().map(|(w, _)| u64::from(*w)).sum();
        if uses_percent == Some(true) && total != u64::from(PERCENT_TOTAL) {
            self.report(
                path,
                ProblemKind::InvalidWeights,
                format!(
                    "percentages add up to {} %, not 100 %",
                    total as f64 / 1000.0
                ),
            );
            return None;
        }
        if total == 0 || total > u64::from(u32::MAX) {
            self.report(
                path,
                ProblemKind::InvalidWeights,
                format!(
                    "weights must add up to between 1 and {}, found {total}",
                    u32::MAX
                ),
            );
            return None;
        }
        let mut upper = 0u32;
        let ranges = entries
            .into_iter()
            .map(|(weight, variant)| {
                upper += weight;
                (upper, variant)
            })
            .collect();
        Some(Split {
            ranges,
            total: total as u32,
        })
    }

    /// A split weight: a whole number from 0 to `u32::MAX`, judged by its value (`-0` and
    /// `1.0` are the weights 0 and 1, as a JavaScript or Python caller's numbers are).
    fn weight(&mut self, path: &str, value: &Value) -> Option<u32> {
        self.whole_number(path, value, 0, u64::from(u32::MAX))
            .map(|n| n as u32)
    }
}
