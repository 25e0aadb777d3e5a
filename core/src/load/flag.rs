//! `flags.<key>`: a flag's own fields, its variants (and the payload fields the runtime reads)
//! and its `fallback` list; the other sections are read by their own files.

use std::sync::Arc;

use serde_json::Value;

use super::read::{index, Object};
use super::segments::SegmentNames;
use super::{Loader, MAX_FALLBACK_STEPS, MAX_TIMEOUT_MS, NOT_YET_SUPPORTED_FLAG_FIELDS};
use crate::condition::Segment;
use crate::document::{Flag, Variant};
use crate::error::ProblemKind;
use crate::hash::SaltedHasher;

const FLAG_FIELDS: &[&str] = &[
    "description",
    "owner",
    "expires",
    "tags",
    "bucket_by",
    "salt",
    "variants",
    "default",
    "kill",
    "rules",
    "fallback",
    "max_attempts",
    "max_total_ms",
    "guardrails",
    "sticky",
    "budgets",
    "shadow",
];

/// The variants of the flag being compiled, for resolving references.
pub(super) struct VariantNames<'a> {
    pub(crate) ids: Vec<&'a str>,
}

impl VariantNames<'_> {
    pub(crate) fn find(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|v| *v == id)
    }
}

impl Loader {
    pub(super) fn flags(&mut self, value: &Value, segments: &[Segment]) -> Vec<Flag> {
        let Some(object) = self.object("flags", value) else {
            return Vec::new();
        };
        let segment_names: SegmentNames<'_> = segments
            .iter()
            .enumerate()
            .map(|(i, s)| (&*s.name, i))
            .collect();
        let mut flags = Vec::with_capacity(object.map.len());
        for (key, body) in object.map {
            let path = object.path_of(key);
            if let Some(flag) = self.flag(&path, key, body, &segment_names) {
                self.check_cost(&path, &flag, segments);
                flags.push(flag);
            }
        }
        flags
    }

    fn flag(
        &mut self,
        path: &str,
        key: &str,
        value: &Value,
        segments: &SegmentNames<'_>,
    ) -> Option<Flag> {
        // The autopilots of this flag's ramps collect here (a flag that failed to load may
        // have left some behind).
        self.autopilots.clear();
        if key.is_empty() {
            self.report(
                path,
                ProblemKind::InvalidValue,
                "flag keys must not be empty",
            );
        }
        if key.starts_with('$') {
            // `metrics()` keeps its own entries (such as "$budgets") beside the flags.
            self.report(
                path,
                ProblemKind::InvalidValue,
                "flag keys must not start with \"$\" (reserved)",
            );
        }
        let flag = self.object(path, value)?;
        self.check_fields(&flag, FLAG_FIELDS, NOT_YET_SUPPORTED_FLAG_FIELDS);
        let description = self.field(&flag, "description", Self::owned_string).ok();
        let owner = self.field(&flag, "owner", Self::owned_string).ok();
        let expires = self.field(&flag, "expires", Self::timestamp).ok();
        let tags = self
            .field(&flag, "tags", Self::tags)
            .ok()
            .unwrap_or_default();
        let bucket_by: Box<str> = self
            .field(&flag, "bucket_by", Self::non_empty_string)
            .ok()
            .unwrap_or("user_id")
            .into();
        let salt: Box<str> = self
            .field(&flag, "salt", Self::string)
            .ok()
            .unwrap_or(key)
            .into();

        let variants = self.variants(&flag);
        let names = VariantNames {
            ids: variants.iter().map(|v| &*v.id).collect(),
        };
        let default = self.required(&flag, "default", |l, path, v| {
            l.variant_ref(path, v, &names, key)
        });
        let kill = self
            .field(&flag, "kill", |l, path, v| {
                Some(l.kill_switch(path, v, Some(&names), key))
            })
            .ok()
            .unwrap_or_default();
        let mut rules = self
            .field(&flag, "rules", |l, path, v| {
                Some(l.rules(path, v, &names, key, segments))
            })
            .ok()
            .unwrap_or_default();
        for rule in &mut rules {
            rule.hasher = SaltedHasher::new(rule.salt.as_deref().unwrap_or(&salt));
        }
        let fallback = self
            .field(&flag, "fallback", |l, path, v| {
                Some(l.fallback(path, v, &names, key))
            })
            .ok()
            .unwrap_or_default();
        let max_attempts = self
            .field(&flag, "max_attempts", |l, path, v| {
                l.positive_integer(path, v, MAX_FALLBACK_STEPS as u64 + 1)
                    .map(|n| n as u32)
            })
            .ok();
        let max_total_ms = self
            .field(&flag, "max_total_ms", |l, path, v| {
                l.positive_integer(path, v, MAX_TIMEOUT_MS)
            })
            .ok();
        let guardrails = self
            .field(&flag, "guardrails", |l, path, v| {
                Some(l.guardrails(path, v, &variants, &fallback, &rules, key))
            })
            .ok()
            .unwrap_or_default();
        let sticky = self.field(&flag, "sticky", Self::sticky).ok();
        let budgets = self
            .field(&flag, "budgets", |l, path, v| {
                Some(l.budgets(path, v, Some(&names), Some(key)))
            })
            .ok()
            .unwrap_or_default();
        let shadow = self
            .field(&flag, "shadow", |l, path, v| {
                l.shadow(path, v, &variants, &names, key, &salt)
            })
            .ok();
        let has_ai = variants.iter().any(|v| v.ai);
        Some(Flag {
            key: Arc::from(key),
            description,
            owner,
            expires,
            tags,
            bucket_by,
            salt,
            default: default?,
            kill,
            rules,
            variants,
            attributes: Vec::new(),
            run_attributes: Vec::new(),
            attribute_slots: Vec::new(),
            run_attribute_slots: Vec::new(),
            fallback,
            max_attempts,
            max_total_ms,
            guardrails,
            sticky,
            budgets,
            shadow,
            has_ai,
            autopilots: std::mem::take(&mut self.autopilots),
        })
    }

    /// A string or a non-empty array of strings (`[]` is a wrong type: leave the field out).
    fn tags(&mut self, path: &str, value: &Value) -> Option<Vec<String>> {
        let tags = self.strings(path, value)?;
        Some(tags.into_iter().map(String::from).collect())
    }

    fn variants(&mut self, flag: &Object<'_>) -> Vec<Variant> {
        let mut variants = Vec::new();
        let Some(object) = self.required(flag, "variants", |l, path, v| l.object(path, v)) else {
            return variants;
        };
        if object.map.is_empty() {
            self.report(
                &object.path,
                ProblemKind::InvalidValue,
                "a flag needs at least one variant",
            );
        }
        for (id, payload) in object.map {
            if id.is_empty() {
                self.report(
                    &object.path,
                    ProblemKind::InvalidValue,
                    "variant ids must not be empty",
                );
            }
            let mut variant = Variant::plain(id, payload.clone());
            self.variant_runtime(&object.path_of(id), payload, &mut variant);
            variants.push(variant);
        }
        variants
    }

    /// The payload fields the runtime reads: validated here so that a typo'd price or a
    /// string timeout is a load error, not a silently ignored setting.
    fn variant_runtime(&mut self, path: &str, payload: &Value, variant: &mut Variant) {
        let Value::Object(map) = payload else {
            return;
        };
        let payload = Object {
            path: path.to_string(),
            map,
        };
        variant.ai = self
            .field(&payload, "ai", Self::boolean)
            .ok()
            .unwrap_or(true);
        variant.timeout_ms = self
            .field(&payload, "timeout_ms", |l, path, v| {
                l.positive_integer(path, v, MAX_TIMEOUT_MS)
            })
            .ok();
        variant.max_tokens = self
            .field(&payload, "max_tokens", |l, path, v| {
                l.positive_integer(path, v, u32::MAX as u64)
            })
            .ok();
        variant.max_input_tokens = self
            .field(&payload, "max_input_tokens", |l, path, v| {
                l.positive_integer(path, v, u32::MAX as u64)
            })
            .ok();
        if let Some(Value::String(model)) = payload.get("model") {
            variant.model = Some(Arc::from(model.as_str()));
        }
        variant.cost_per_1k_input_tokens = self
            .field(&payload, "cost_per_1k_input_tokens", Self::price)
            .ok();
        variant.cost_per_1k_output_tokens = self
            .field(&payload, "cost_per_1k_output_tokens", Self::price)
            .ok();
    }

    fn price(&mut self, path: &str, value: &Value) -> Option<f64> {
        let price = self.number(path, value)?;
        if price >= 0.0 && price.is_finite() {
            return Some(price);
        }
        self.report(
            path,
            ProblemKind::InvalidValue,
            format!("a price must be 0 or more, found {price}"),
        );
        None
    }

    /// A reference to one of the flag's variants, as its index.
    pub(super) fn variant_ref(
        &mut self,
        path: &str,
        value: &Value,
        variants: &VariantNames<'_>,
        flag: &str,
    ) -> Option<usize> {
        let id = self.string(path, value)?;
        let found = variants.find(id);
        if found.is_none() {
            self.report(
                path,
                ProblemKind::UnknownVariant,
                format!(
                    "flag \"{flag}\" has no variant \"{id}\" (variants: {})",
                    variants.ids.join(", ")
                ),
            );
        }
        found
    }

    fn fallback(
        &mut self,
        path: &str,
        value: &Value,
        variants: &VariantNames<'_>,
        flag: &str,
    ) -> Vec<usize> {
        let Some(items) = self.array(path, value, "variant ids") else {
            return Vec::new();
        };
        if items.len() > MAX_FALLBACK_STEPS {
            self.report(
                path,
                ProblemKind::InvalidValue,
                format!(
                    "at most {MAX_FALLBACK_STEPS} fallback steps, found {}",
                    items.len()
                ),
            );
        }
        let mut out: Vec<usize> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_path = index(path, i);
            if let Some(v) = self.variant_ref(&item_path, item, variants, flag) {
                if out.contains(&v) {
                    self.report(
                        &item_path,
                        ProblemKind::InvalidValue,
                        format!("variant \"{}\" is already in the fallback list (a chain tries each variant once)", variants.ids[v]),
                    );
                } else {
                    out.push(v);
                }
            }
        }
        out
    }
}
