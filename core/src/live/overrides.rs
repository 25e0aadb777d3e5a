//! What this process lays over the document without touching it: local kills and tripped
//! guardrails. Budgets and pins are runtime state, read through the snapshot's overlay.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::document::budget::Budget;
use crate::document::Flag;
use crate::evaluate::{Overlay, PinLookup, Trip};
use crate::time::Millis;

/// One local kill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalKill {
    pub(crate) reason: Option<String>,
    pub(crate) at: Millis,
}

/// What this process overlays on the document: kills applied with [`crate::Flags::kill`] and
/// tripped guardrails. Neither touches the document.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub(crate) all: Option<LocalKill>,
    pub flags: FxHashMap<Box<str>, LocalKill>,
    /// Tripped (or half-open) guardrails by flag key.
    pub(crate) trips: FxHashMap<Arc<str>, Vec<Trip>>,
}

impl Overrides {
    pub(super) fn is_empty(&self) -> bool {
        self.all.is_none() && self.flags.is_empty() && self.trips.is_empty()
    }
}

impl Overlay for Overrides {
    #[inline]
    fn all_killed(&self) -> bool {
        self.all.is_some()
    }
    #[inline]
    fn flag_killed(&self, flag: &str) -> bool {
        !self.flags.is_empty() && self.flags.contains_key(flag)
    }
    #[inline]
    fn trips(&self, flag: &str) -> &[Trip] {
        if self.trips.is_empty() {
            return &[];
        }
        self.trips.get(flag).map_or(&[], Vec::as_slice)
    }
    /// Budgets and pins are runtime state, not overrides: see [`crate::live::snapshot::LiveOverlay`].
    fn budget_exhausted(&self, _budget: &Budget, _scope: &str) -> bool {
        false
    }
    fn pin(&self, _flag: &Flag, _conversation: &str) -> PinLookup {
        PinLookup::Absent
    }
}

/// Test overrides: a variant forced for a flag inside one scope of the user's tests
/// (`flags.override(flag, variant)` in Python, `flags.override(flag, variant, fn)` in Node).
///
/// The bindings keep the scopes (a `contextvars.ContextVar` in Python, an `AsyncLocalStorage`
/// in Node, so two threads or tasks never see each other's overrides) and pass the variant in
/// force for the flag being evaluated as [`crate::EvalOptions::forced`]; what a forced
/// variant *means* is decided here:
///
/// - it replaces the whole decision of that flag, like a flag whose only answer is that
///   variant: reason `DEFAULT`, no rule, no bucket, no pin written, no budget, no shadow; kill
///   switches (the document's or local) and guardrails do not apply inside the scope, because
///   the test said which variant it wants;
/// - a forced variant the live document no longer has (a reload removed it) is ignored, and the
///   flag is evaluated as usual.
///
/// [`check_forced`](crate::live::overrides::forced::check_forced) is what the bindings call when a scope opens, so that a typo fails the
/// test at once instead of silently evaluating as usual.
pub mod forced {
    use crate::document::Document;
    use crate::error::{Error, Result};
    use crate::evaluate::{Choice, Decision, FlagRef, Reason};

    /// Checks that `document` has `flag` and that the flag has `variant`: `INVALID_ARGUMENT`
    /// naming both, and the variants it does have, otherwise.
    pub fn check_forced(document: &Document, flag: &str, variant: &str) -> Result<()> {
        let Some(index) = document.flag_position(flag) else {
            return Err(Error::InvalidArgument {
                message: format!(
                    "override of flag {flag:?}: the document (revision {}) has no such flag",
                    document.revision()
                ),
            });
        };
        let def = &document.flags()[index];
        if def.variant_position(variant).is_none() {
            let known: Vec<&str> = def.variants.iter().map(|v| &*v.id).collect();
            return Err(Error::InvalidArgument {
                message: format!(
                    "override of flag {flag:?}: no variant {variant:?} (variants: {})",
                    known.join(", ")
                ),
            });
        }
        Ok(())
    }

    /// The decision of `flag` when `variant` is forced, or `None` when the document lacks
    /// either (the caller then evaluates as usual).
    #[inline]
    pub(crate) fn decide<'d>(
        document: &'d Document,
        flag: FlagRef<'_>,
        variant: &str,
    ) -> Option<Decision<'d>> {
        let index = match flag {
            FlagRef::Key(key) => document.flag_position(key)?,
            FlagRef::Index(index) => index,
        };
        let def = document.flags().get(index)?;
        let variant_index = def.variant_position(variant)?;
        Some(Decision {
            flag: Some(def),
            choice: Choice {
                flag_index: Some(index),
                variant_index: Some(variant_index),
                reason: Reason::Default,
                ..Choice::NOT_FOUND
            },
        })
    }
}

/// `Flags.for_tests({...})` / `Flags.forTests({...})`: a whole, valid flag document from the
/// short mapping a test writes. Each entry of the mapping is one flag:
///
/// - `"support-bot": "v2.2"`: a flag with the single variant `v2.2` (empty payload), served
///   to everyone;
/// - `"support-bot": {"stable": {"model": "m-1"}, "v2.2": {"model": "m-2"}, "default": "v2.2"}`:
///   the variants with their payloads; `default` names the one served (the first variant
///   when absent);
/// - `"support-bot": {"variants": {...}, "default": ..., "rules": [...]}`: a flag written in
///   full (any field of docs/flag-document.md), kept as is, with `default` filled in with the
///   first variant when absent.
///
/// The result is validated like any document by whoever loads it, so a mistake in the mapping
/// is reported with its path (`flags.support-bot.default: ...`).
pub mod for_tests {
    use serde_json::{Map, Value};

    use crate::error::{Error, Result};

    /// The revision of every document built by [`document`].
    pub(crate) const REVISION: &str = "for-tests";

    /// The document for `mapping` (see the module docs).
    pub fn document(mapping: &Value) -> Result<Value> {
        let Value::Object(entries) = mapping else {
            return Err(invalid(
                "the mapping must be an object of flag key -> variant id or variants".into(),
            ));
        };
        let mut flags = Map::new();
        for (key, spec) in entries {
            flags.insert(key.clone(), flag(key, spec)?);
        }
        let mut document = Map::new();
        document.insert("revision".into(), Value::from(REVISION));
        document.insert("flags".into(), Value::Object(flags));
        Ok(Value::Object(document))
    }

    fn flag(key: &str, spec: &Value) -> Result<Value> {
        match spec {
            Value::String(variant) => {
                let mut variants = Map::new();
                variants.insert(variant.clone(), Value::Object(Map::new()));
                Ok(flag_of(variants, variant.clone()))
            }
            Value::Object(fields) if fields.contains_key("variants") => {
                let mut full = fields.clone();
                if !full.contains_key("default") {
                    let first = full
                        .get("variants")
                        .and_then(Value::as_object)
                        .and_then(|v| v.keys().next().cloned());
                    if let Some(first) = first {
                        full.insert("default".into(), Value::from(first));
                    }
                }
                Ok(Value::Object(full))
            }
            Value::Object(fields) => {
                let mut variants = Map::new();
                let mut default = None;
                for (id, payload) in fields {
                    if id == "default" {
                        default = Some(payload.as_str().map(str::to_owned).ok_or_else(|| {
                            invalid(format!("flag {key:?}: \"default\" must be a variant id"))
                        })?);
                    } else {
                        variants.insert(id.clone(), payload.clone());
                    }
                }
                let Some(default) = default.or_else(|| variants.keys().next().cloned()) else {
                    return Err(invalid(format!("flag {key:?}: no variants")));
                };
                Ok(flag_of(variants, default))
            }
            _ => Err(invalid(format!(
                "flag {key:?}: expected a variant id or an object of variants"
            ))),
        }
    }

    fn flag_of(variants: Map<String, Value>, default: String) -> Value {
        let mut flag = Map::new();
        flag.insert("variants".into(), Value::Object(variants));
        flag.insert("default".into(), Value::from(default));
        Value::Object(flag)
    }

    fn invalid(message: String) -> Error {
        Error::InvalidArgument {
            message: format!("for_tests: {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::for_tests;
    use super::forced::check_forced;
    use crate::live::{EvalOptions, Flags, PinSource};
    use crate::{Document, Reason};

    fn flags() -> Flags {
        let doc = for_tests::document(&json!({
            "bot": {"stable": {"model": "m-1"}, "v2.2": {"model": "m-2"}},
            "tone": "friendly",
        }))
        .unwrap();
        Flags::from_value(doc).unwrap()
    }

    #[test]
    fn short_mappings_build_valid_documents() {
        let flags = flags();
        let ctx = json!({"user_id": "u-1"});
        let ctx = ctx.as_object().unwrap();
        let bot = flags.evaluate("bot", ctx, EvalOptions::default());
        assert_eq!(bot.variant_id(), Some("stable"));
        assert_eq!(bot.reason, Reason::Default);
        let tone = flags.evaluate("tone", ctx, EvalOptions::default());
        assert_eq!(tone.variant_id(), Some("friendly"));
        assert_eq!(flags.document().revision(), for_tests::REVISION);
    }

    #[test]
    fn explicit_default_and_full_flags_are_kept() {
        let doc = for_tests::document(&json!({
            "a": {"x": {}, "y": {}, "default": "y"},
            "b": {"variants": {"p": {}, "q": {}},
                  "rules": [{"id": "r", "when": {"attr": "plan", "op": "eq", "value": "pro"}, "serve": "q"}]},
        }))
        .unwrap();
        let doc = Document::from_value(doc).unwrap();
        let a = &doc.flags()[doc.flag_position("a").unwrap()];
        assert_eq!(&*a.variants[a.default].id, "y");
        let b = &doc.flags()[doc.flag_position("b").unwrap()];
        assert_eq!(&*b.variants[b.default].id, "p");
        assert_eq!(b.rules.len(), 1);
    }

    #[test]
    fn bad_mappings_are_named() {
        let err = for_tests::document(&json!(["bot"])).unwrap_err();
        assert_eq!(err.code(), "INVALID_ARGUMENT");
        let err = for_tests::document(&json!({"bot": 3})).unwrap_err();
        assert!(err.to_string().contains("\"bot\""), "{err}");
        let err = for_tests::document(&json!({"bot": {"default": 1}})).unwrap_err();
        assert!(err.to_string().contains("default"), "{err}");
        // A default naming no variant is the document's own validation error, with its path.
        let doc = for_tests::document(&json!({"bot": {"x": {}, "default": "nope"}})).unwrap();
        let err = Document::from_value(doc).unwrap_err();
        assert!(err.to_string().contains("flags.bot.default"), "{err}");
    }

    #[test]
    fn a_forced_variant_replaces_the_decision() {
        let flags = flags();
        let ctx = json!({"user_id": "u-1"});
        let ctx = ctx.as_object().unwrap();
        let options = EvalOptions {
            forced: Some("v2.2"),
            ..EvalOptions::default()
        };
        let e = flags.evaluate("bot", ctx, options);
        assert_eq!(e.variant_id(), Some("v2.2"));
        assert_eq!(e.reason, Reason::Default);
        assert_eq!(e.rule_index, None);
        // Even a killed flag serves the forced variant: the test said which one it wants.
        flags.kill(Some("bot"), None);
        assert_eq!(
            flags.evaluate("bot", ctx, options).variant_id(),
            Some("v2.2")
        );
        assert_eq!(
            flags.evaluate("bot", ctx, EvalOptions::default()).reason,
            Reason::Killed
        );
    }

    #[test]
    fn a_forced_variant_the_document_lacks_is_ignored() {
        let flags = flags();
        let ctx = json!({});
        let ctx = ctx.as_object().unwrap();
        let options = EvalOptions {
            forced: Some("gone"),
            pin: PinSource::Memory,
            at: None,
        };
        assert_eq!(
            flags.evaluate("bot", ctx, options).variant_id(),
            Some("stable")
        );
        assert_eq!(
            flags.evaluate("missing", ctx, options).reason,
            Reason::FlagNotFound
        );
    }

    #[test]
    fn check_forced_names_the_typo() {
        let flags = flags();
        let doc = flags.document();
        assert!(check_forced(&doc, "bot", "v2.2").is_ok());
        let err = check_forced(&doc, "bott", "v2.2").unwrap_err();
        assert_eq!(err.code(), "INVALID_ARGUMENT");
        assert!(err.to_string().contains("\"bott\""), "{err}");
        let err = check_forced(&doc, "bot", "v9").unwrap_err();
        assert!(err.to_string().contains("stable, v2.2"), "{err}");
    }

    #[test]
    fn a_run_starts_at_the_forced_variant() {
        let flags = flags();
        let ctx = json!({"user_id": "u-1"});
        let ctx = ctx.as_object().unwrap();
        let snapshot = flags.snapshot();
        let run = flags
            .start_run_forced(&snapshot, "bot", ctx, PinSource::Memory, Some("v2.2"))
            .unwrap();
        assert_eq!(run.evaluation().variant_id(), Some("v2.2"));
    }
}
