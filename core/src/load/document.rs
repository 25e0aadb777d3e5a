//! The top level of a document (`revision`, `hash_version`, `kill`, `segments`, `flags`,
//! `budgets`) and kill switches, the document's and each flag's.

use std::sync::Arc;

use serde_json::Value;

use super::flag::VariantNames;
use super::read::Field;
use super::segments::share_segments;
use super::{Loader, Parts};
use crate::document::KillSwitch;
use crate::error::ProblemKind;
use crate::hash::{murmur3_32, HASH_VERSION};

const DOCUMENT_FIELDS: &[&str] = &[
    "$schema",
    "revision",
    "description",
    "hash_version",
    "kill",
    "segments",
    "flags",
    "budgets",
];

impl Loader {
    pub(super) fn document(&mut self, value: &Value) -> Option<Parts> {
        let document = self.open("", value, DOCUMENT_FIELDS)?;
        let revision: Arc<str> = match self.field(&document, "revision", Self::non_empty_string) {
            Field::Valid(text) => Arc::from(text),
            Field::Invalid => Arc::from(""),
            Field::Absent => {
                // A document without a revision still needs an identity for telemetry: a hash
                // of its canonical text.
                let text = value.to_string();
                Arc::from(format!("auto-{:08x}", murmur3_32(text.as_bytes(), 0)))
            }
        };
        self.field(&document, "hash_version", Self::hash_version);
        self.field(&document, "description", Self::string);
        let kill = self
            .field(&document, "kill", |l, path, v| {
                Some(l.kill_switch(path, v, None, ""))
            })
            .ok()
            .unwrap_or_default();
        let segments = self
            .field(&document, "segments", |l, _, v| Some(l.segments(v)))
            .ok()
            .unwrap_or_default();
        let mut segments = segments;
        let mut flags = self
            .required(&document, "flags", |l, _, v| Some(l.flags(v, &segments)))
            .unwrap_or_default();
        share_segments(&mut segments, &mut flags);
        let budgets = self
            .field(&document, "budgets", |l, path, v| {
                Some(l.budgets(path, v, None, None))
            })
            .ok()
            .unwrap_or_default();
        Some(Parts {
            revision,
            kill,
            flags,
            segments,
            budgets,
        })
    }

    /// The integer 1, as written: `1.0` and `"1"` are other values, not another spelling.
    fn hash_version(&mut self, path: &str, value: &Value) -> Option<()> {
        if value.as_u64() != Some(u64::from(HASH_VERSION)) {
            self.report(
                path,
                ProblemKind::UnsupportedHashVersion,
                format!(
                    "this build implements bucketing hash_version {HASH_VERSION} only, found {value}"
                ),
            );
            return None;
        }
        Some(())
    }

    /// The document's kill switch (`variants` is `None`) or a flag's.
    pub(super) fn kill_switch(
        &mut self,
        path: &str,
        value: &Value,
        variants: Option<&VariantNames<'_>>,
        flag: &str,
    ) -> KillSwitch {
        let mut kill = KillSwitch::default();
        let allowed: &[&str] = if variants.is_some() {
            &["active", "serve", "reason", "actor", "at"]
        } else {
            &["active", "reason", "actor", "at"]
        };
        let Some(object) = self.open(path, value, allowed) else {
            return kill;
        };
        kill.active = self
            .required(&object, "active", Self::boolean)
            .unwrap_or(false);
        if let Some(variants) = variants {
            kill.serve = self
                .field(&object, "serve", |l, path, v| {
                    l.variant_ref(path, v, variants, flag)
                })
                .ok();
        }
        kill.reason = self.field(&object, "reason", Self::owned_string).ok();
        kill.actor = self.field(&object, "actor", Self::owned_string).ok();
        kill.at = self.field(&object, "at", Self::timestamp).ok();
        kill
    }
}
