//! The compiled flag document: what evaluation reads.
//!
//! A JSON document is validated and compiled once, at load ([`crate::load`]): variant references
//! become indices, split weights become cumulative ranges, percentages become weights over
//! 100 000, regexes are compiled, segments are resolved, and payloads are interned behind `Arc`s.
//! Evaluation then only walks these structures and allocates nothing it does not return.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::condition::Condition;
use crate::error::Result;
use crate::hash::SaltedHasher;
use crate::ramp::Ramp;
use crate::time::Millis;

/// A validated, compiled flag document. Immutable; shared behind an `Arc`.
#[derive(Debug)]
pub struct Document {
    pub(crate) revision: Arc<str>,
    pub(crate) kill: KillSwitch,
    pub(crate) flags: Vec<Flag>,
    pub(crate) flag_index: FxHashMap<Box<str>, usize>,
    pub(crate) segments: Vec<Segment>,
    /// The document as loaded (for tooling that rewrites it, such as `flagrail kill`).
    pub(crate) source: Arc<serde_json::Value>,
}

impl Document {
    /// Parses, validates and compiles a document from JSON bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Document> {
        crate::load::from_slice(bytes)
    }

    /// Parses, validates and compiles a document from JSON text.
    pub fn from_json(text: &str) -> Result<Document> {
        crate::load::from_slice(text.as_bytes())
    }

    /// Validates and compiles an already-parsed JSON value.
    pub fn from_value(value: serde_json::Value) -> Result<Document> {
        crate::load::from_value(value)
    }

    /// The document's `revision` (or a content hash when it declares none).
    pub fn revision(&self) -> &str {
        &self.revision
    }

    pub(crate) fn revision_arc(&self) -> &Arc<str> {
        &self.revision
    }

    /// The document-wide kill switch.
    pub fn kill(&self) -> &KillSwitch {
        &self.kill
    }

    /// All flags in document order.
    pub fn flags(&self) -> &[Flag] {
        &self.flags
    }

    /// A flag by key.
    pub fn flag(&self, key: &str) -> Option<&Flag> {
        self.flag_index.get(key).map(|&index| &self.flags[index])
    }

    /// The index of a flag by key (stable for the life of this document).
    pub fn flag_position(&self, key: &str) -> Option<usize> {
        self.flag_index.get(key).copied()
    }

    /// The segments in document order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The JSON the document was compiled from.
    pub fn source(&self) -> &serde_json::Value {
        &self.source
    }
}

/// A named, reusable condition.
#[derive(Debug)]
pub struct Segment {
    pub name: Box<str>,
    pub condition: Condition,
}

/// A kill switch: the flag's own, or the document-wide one.
#[derive(Debug, Clone, Default)]
pub struct KillSwitch {
    pub active: bool,
    /// The variant served while killed (flag kill switches only); `None` serves the default.
    pub serve: Option<usize>,
    pub reason: Option<String>,
    pub actor: Option<String>,
    pub at: Option<Millis>,
}

/// One flag: its variants, its rules and how it buckets units.
#[derive(Debug)]
pub struct Flag {
    pub key: Arc<str>,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub expires: Option<Millis>,
    pub tags: Vec<String>,
    pub bucket_by: Box<str>,
    pub salt: Box<str>,
    pub variants: Vec<Variant>,
    pub default: usize,
    pub kill: KillSwitch,
    pub rules: Vec<Rule>,
    /// Every context attribute evaluation of this flag can read (bucketing units, condition
    /// attributes, segments expanded), in first-use order. Bindings use it to convert only
    /// these attributes from a host-language context.
    pub attributes: Vec<Box<str>>,
}

impl Flag {
    pub fn variant(&self, id: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| &*v.id == id)
    }

    pub fn variant_position(&self, id: &str) -> Option<usize> {
        self.variants.iter().position(|v| &*v.id == id)
    }

    /// The variant served while this flag is killed.
    pub fn kill_variant(&self) -> usize {
        self.kill.serve.unwrap_or(self.default)
    }
}

/// A variant: an id and its payload (model, prompt, parameters … any JSON).
#[derive(Debug)]
pub struct Variant {
    pub id: Arc<str>,
    pub payload: Arc<serde_json::Value>,
}

/// One rule of a flag, tried in order.
#[derive(Debug)]
pub struct Rule {
    pub id: Arc<str>,
    pub description: Option<String>,
    /// The targeting condition; `None` matches every context.
    pub when: Option<Condition>,
    pub action: Action,
    /// Overrides the flag's `bucket_by` for this rule's split or ramp.
    pub bucket_by: Option<Box<str>>,
    /// Overrides the flag's `salt` for this rule's split or ramp.
    pub salt: Option<Box<str>>,
    /// The effective salt (rule's or flag's) pre-absorbed into the hash state.
    pub hasher: SaltedHasher,
}

/// What a matching rule does.
#[derive(Debug)]
pub enum Action {
    /// Serve one variant (`serve`): reason TARGETING_MATCH.
    Serve(usize),
    /// Split units over variants by weight (`split`): reason SPLIT.
    Split(Split),
    /// Ramp one variant up over scheduled steps (`ramp`): reason SPLIT.
    Ramp(Ramp),
}

/// Weighted split compiled to cumulative upper bounds over `total`.
#[derive(Debug)]
pub struct Split {
    /// `(upper, variant)`: the variant wins buckets in `[previous upper, upper)`.
    pub ranges: Vec<(u32, usize)>,
    pub total: u32,
}

impl Split {
    /// The variant that wins bucket `bucket` (first cumulative weight that exceeds it).
    pub fn pick(&self, bucket: u32) -> Option<usize> {
        self.ranges
            .iter()
            .find(|(upper, _)| bucket < *upper)
            .map(|(_, variant)| *variant)
    }
}
