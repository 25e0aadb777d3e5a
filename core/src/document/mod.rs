//! The compiled flag document: what evaluation reads.
//!
//! A JSON document is validated and compiled once, at load ([`crate::load`]): variant references
//! become indices, split weights become cumulative ranges, percentages become weights over
//! 100 000, regexes are compiled, segments are resolved, and payloads are interned behind `Arc`s.
//! Evaluation then only walks these structures and allocates nothing it does not return.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::condition::{Condition, Segment};
use crate::hash::SaltedHasher;
use crate::ramp::Ramp;

pub mod budget;
pub mod guardrail;
pub mod sticky;

use crate::time::Millis;
use budget::Budget;
use guardrail::Guardrail;
use sticky::Sticky;

/// A validated, compiled flag document. Immutable; shared behind an `Arc`.
#[derive(Debug)]
pub struct Document {
    pub(crate) revision: Arc<str>,
    pub(crate) kill: KillSwitch,
    pub(crate) flags: Vec<Flag>,
    pub(crate) flag_index: FxHashMap<Box<str>, usize>,
    pub(crate) segments: Vec<Segment>,
    /// Document-wide budgets (`budgets` at the top): they watch every flag.
    pub(crate) budgets: Vec<Budget>,
    /// Every attribute any flag reads: the union of each flag's `run_attributes` (its
    /// `attributes`, the unit and the segment label), in document order then first-use order
    /// (see [`Flag::attribute_slots`]).
    pub(crate) attributes: Vec<Box<str>>,
    /// The document as loaded (for tooling that rewrites it, such as `flagrail kill`).
    pub(crate) source: Arc<serde_json::Value>,
}

impl Document {
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

    /// Every context attribute any flag of the document reads, each once: what a binding
    /// converts to evaluate all flags (or several) for one context.
    pub fn attributes(&self) -> &[Box<str>] {
        &self.attributes
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

    /// The document-wide budgets.
    pub fn budgets(&self) -> &[Budget] {
        &self.budgets
    }

    /// The JSON the document was compiled from.
    pub(crate) fn source(&self) -> &serde_json::Value {
        &self.source
    }
}

/// A kill switch: the flag's own, or the document-wide one.
#[derive(Debug, Clone, Default)]
pub struct KillSwitch {
    pub active: bool,
    /// The variant served while killed (flag kill switches only); `None` serves the default.
    pub(crate) serve: Option<usize>,
    pub reason: Option<String>,
    pub(crate) actor: Option<String>,
    pub(crate) at: Option<Millis>,
}

/// One flag: its variants, its rules and how it buckets units.
#[derive(Debug)]
pub struct Flag {
    pub key: Arc<str>,
    pub description: Option<String>,
    pub(crate) owner: Option<String>,
    pub(crate) expires: Option<Millis>,
    pub tags: Vec<String>,
    pub bucket_by: Box<str>,
    pub(crate) salt: Box<str>,
    pub variants: Vec<Variant>,
    pub(crate) default: usize,
    pub kill: KillSwitch,
    pub rules: Vec<Rule>,
    /// Every context attribute evaluation of this flag can read (bucketing units, condition
    /// attributes, segments expanded), in first-use order. Bindings use it to convert only
    /// these attributes from a host-language context.
    pub attributes: Vec<Box<str>>,
    /// `attributes` plus what a `call` reads for telemetry: the unit (`bucket_by`) and the
    /// `segment` label.
    pub run_attributes: Vec<Box<str>>,
    /// Where each of `attributes` sits in [`Document::attributes`]: a binding that evaluates
    /// several flags for one context converts the union once and reads each flag's share.
    pub attribute_slots: Vec<usize>,
    /// Where each of `run_attributes` sits in [`Document::attributes`] (starts with
    /// `attribute_slots`): for reads that also take the unit and the segment label (exposures).
    pub run_attribute_slots: Vec<usize>,
    /// Variants tried, in order, after the assigned one fails (`fallback`).
    pub(crate) fallback: Vec<usize>,
    /// Bound on model calls (AI attempts) per `call`, the assigned one included.
    pub(crate) max_attempts: Option<u32>,
    /// Bound on the wall time of one `call`, every attempt included.
    pub(crate) max_total_ms: Option<u64>,
    /// Automatic kill switches watching this flag's variants.
    pub guardrails: Vec<Guardrail>,
    /// Conversation pinning (`sticky`).
    pub sticky: Option<Sticky>,
    /// Cost circuit breakers of this flag.
    pub budgets: Vec<Budget>,
    /// A candidate variant run beside the served one on a share of traffic (`shadow`).
    pub shadow: Option<Shadow>,
    /// Whether any variant calls a model (a document-wide `kill` budget stops these flags).
    pub(crate) has_ai: bool,
    /// The autopilots of this flag's ramps, in rule order (`Ramp::autopilot` points here).
    pub(crate) autopilots: Vec<crate::autopilot::AutopilotSpec>,
}

/// A flag's `shadow` section.
#[derive(Debug, Clone)]
pub struct Shadow {
    pub variant: usize,
    /// Share of units shadowed, in thousandths of a percent (over 100 000 buckets).
    pub(crate) milli_percent: u32,
    /// The shadow's own salt (default `<flag salt>/shadow`), so that which units are shadowed
    /// is independent of which units a split serves.
    pub salt: Box<str>,
    pub(crate) hasher: SaltedHasher,
    /// `max_cost_per_hour`, kept as an internal one-hour cost budget of the flag.
    pub(crate) cap: Option<Budget>,
}

impl Flag {
    /// The autopilot of one of this flag's ramps, if it has one.
    pub fn autopilot_of(
        &self,
        ramp: &crate::ramp::Ramp,
    ) -> Option<&crate::autopilot::AutopilotSpec> {
        let place = ramp.autopilot?.get() as usize - 1;
        self.autopilots.get(place)
    }

    pub fn variant(&self, id: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| &*v.id == id)
    }

    pub fn variant_position(&self, id: &str) -> Option<usize> {
        self.variants.iter().position(|v| &*v.id == id)
    }

    /// The variant served while this flag is killed.
    pub(crate) fn kill_variant(&self) -> usize {
        self.kill.serve.unwrap_or(self.default)
    }
}

/// A variant: an id and its payload (model, prompt, parameters … any JSON).
///
/// A few payload fields mean something to the runtime around the call and are validated and
/// read once at load: `ai`, `timeout_ms`, `model`, `max_tokens` and the per-1k-token prices.
#[derive(Debug)]
pub struct Variant {
    pub id: Arc<str>,
    pub payload: Arc<serde_json::Value>,
    /// `false` for a variant that calls no model (a static message, "talk to a person"): a
    /// fallback chain serves it without calling the user's function.
    pub(crate) ai: bool,
    /// Time limit of one attempt on this variant.
    pub(crate) timeout_ms: Option<u64>,
    /// The payload's `model`, for telemetry labels.
    pub(crate) model: Option<Arc<str>>,
    /// The payload's `max_tokens` (output tokens), for cost estimates.
    pub(crate) max_tokens: Option<u64>,
    /// Price of 1,000 input tokens (`cost_per_1k_input_tokens`).
    pub(crate) cost_per_1k_input_tokens: Option<f64>,
    /// Price of 1,000 output tokens (`cost_per_1k_output_tokens`).
    pub(crate) cost_per_1k_output_tokens: Option<f64>,
    /// The payload's `max_input_tokens`, when the app bounds its prompts (cost estimates).
    pub(crate) max_input_tokens: Option<u64>,
    /// Hash of the payload's canonical JSON (16 hex digits): the variant's revision in cache
    /// keys, so that an edited prompt never reads answers cached for the old one.
    pub payload_hash: Box<str>,
}

impl Variant {
    /// A variant with a payload and no runtime fields (tests, tools).
    pub(crate) fn plain(id: &str, payload: serde_json::Value) -> Variant {
        Variant {
            id: Arc::from(id),
            ai: true,
            timeout_ms: None,
            model: None,
            max_tokens: None,
            cost_per_1k_input_tokens: None,
            cost_per_1k_output_tokens: None,
            max_input_tokens: None,
            payload_hash: crate::cache_key::payload_hash(&payload),
            payload: Arc::new(payload),
        }
    }

    /// What a call of this variant reserves against a cost budget before it runs: its
    /// [`Variant::max_cost`], or 0 when it has none or calls no model.
    pub(crate) fn reserved_cost(&self) -> f64 {
        if self.ai {
            self.max_cost().unwrap_or(0.0)
        } else {
            0.0
        }
    }

    /// The most one call of this variant can cost: `max_tokens` output tokens (and
    /// `max_input_tokens` input tokens, when given) at the variant's prices. `None` without
    /// `max_tokens` or an output price: such a call cannot be reserved against a cost budget.
    pub(crate) fn max_cost(&self) -> Option<f64> {
        let output = self.max_tokens? as f64 / 1000.0 * self.cost_per_1k_output_tokens?;
        let input = match (self.max_input_tokens, self.cost_per_1k_input_tokens) {
            (Some(tokens), Some(price)) => tokens as f64 / 1000.0 * price,
            _ => 0.0,
        };
        Some(output + input)
    }

    /// The cost of a call from its token counts and this variant's prices; `None` when a
    /// needed count or price is missing.
    pub(crate) fn cost_of(
        &self,
        input_tokens: Option<u64>,
        output_tokens: Option<u64>,
    ) -> Option<f64> {
        let mut total = 0.0;
        let mut priced = false;
        if let Some(tokens) = input_tokens {
            total += tokens as f64 / 1000.0 * self.cost_per_1k_input_tokens?;
            priced = true;
        }
        if let Some(tokens) = output_tokens {
            total += tokens as f64 / 1000.0 * self.cost_per_1k_output_tokens?;
            priced = true;
        }
        priced.then_some(total)
    }
}

/// One rule of a flag, tried in order.
#[derive(Debug)]
pub struct Rule {
    pub id: Arc<str>,
    pub description: Option<String>,
    /// The targeting condition; `None` matches every context.
    pub(crate) when: Option<Condition>,
    pub action: Action,
    /// Overrides the flag's `bucket_by` for this rule's split or ramp.
    pub(crate) bucket_by: Option<Box<str>>,
    /// Overrides the flag's `salt` for this rule's split or ramp.
    pub(crate) salt: Option<Box<str>>,
    /// The effective salt (rule's or flag's) pre-absorbed into the hash state.
    pub(crate) hasher: SaltedHasher,
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
    pub(crate) ranges: Vec<(u32, usize)>,
    pub(crate) total: u32,
}

impl Split {
    /// The variant that wins bucket `bucket` (first cumulative weight that exceeds it).
    pub(crate) fn pick(&self, bucket: u32) -> Option<usize> {
        self.ranges
            .iter()
            .find(|(upper, _)| bucket < *upper)
            .map(|(_, variant)| *variant)
    }
}
