//! What a decision is: why ([`Reason`], [`KillSource`]), what was chosen ([`Choice`]), the
//! borrowed [`Decision`], how a flag is named ([`FlagRef`]) and where "now" comes from.

use serde_json::Value;

use crate::document::budget::{Budget, BudgetRef};
use crate::document::{Document, Flag, Rule, Variant};
use crate::evaluate::overlay::PinEffect;
use crate::time::Millis;

/// Why a variant was chosen. The string forms are stable across languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    FlagNotFound,
    Killed,
    Guardrail,
    Sticky,
    Budget,
    TargetingMatch,
    Split,
    Default,
}

impl Reason {
    pub const ALL: [Reason; 8] = [
        Reason::FlagNotFound,
        Reason::Killed,
        Reason::Guardrail,
        Reason::Sticky,
        Reason::Budget,
        Reason::TargetingMatch,
        Reason::Split,
        Reason::Default,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FlagNotFound => "FLAG_NOT_FOUND",
            Reason::Killed => "KILLED",
            Reason::Guardrail => "GUARDRAIL",
            Reason::Sticky => "STICKY",
            Reason::Budget => "BUDGET",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Default => "DEFAULT",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which kill switch is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillSource {
    /// `kill.active` at the top of the document.
    Document,
    /// The flag's own `kill.active`.
    Flag,
    /// `kill()` for every flag in this process.
    LocalAll,
    /// `kill(flag)` in this process.
    LocalFlag,
    /// A tripped guardrail whose action is `kill`.
    Guardrail,
    /// An exhausted budget whose action is `kill`.
    Budget,
}

impl KillSource {
    pub const ALL: [KillSource; 6] = [
        KillSource::Document,
        KillSource::Flag,
        KillSource::LocalAll,
        KillSource::LocalFlag,
        KillSource::Guardrail,
        KillSource::Budget,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KillSource::Document => "document",
            KillSource::Flag => "flag",
            KillSource::LocalAll => "local-all",
            KillSource::LocalFlag => "local-flag",
            KillSource::Guardrail => "guardrail",
            KillSource::Budget => "budget",
        }
    }
}

/// What a decision chose, as indices into the document that made it: the one small, `Copy`
/// record that [`Decision`] (borrowed), [`crate::live::Evaluation`] (owned), the CLI and both
/// bindings share. Names are resolved through the document ([`Decision`]'s accessors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Index of the flag in the document, `None` when it does not exist (`FLAG_NOT_FOUND`).
    pub flag_index: Option<usize>,
    /// Index into `flag.variants` of the chosen variant.
    pub variant_index: Option<usize>,
    pub reason: Reason,
    /// Index into `flag.rules` of the rule that decided, if any.
    pub rule_index: Option<usize>,
    /// The unit's bucket, when a split or ramp decided (over the split's total or 100 000).
    pub bucket: Option<u32>,
    pub kill_source: Option<KillSource>,
    /// Index into `flag.guardrails` of the tripped guardrail that changed this decision.
    pub guardrail: Option<usize>,
    /// The variant a `fallback` guardrail replaced (reason `GUARDRAIL`).
    pub replaced_variant: Option<usize>,
    /// The budget that decided (reason `BUDGET`, or `KILLED` by a budget).
    pub budget: Option<BudgetRef>,
    /// The shadow variant drawn for this decision, if any.
    pub shadow: Option<usize>,
    /// What the caller does with the conversation's pin.
    pub pin: PinEffect,
}

impl Choice {
    /// The choice for a flag the document does not have.
    pub(crate) const NOT_FOUND: Choice = Choice {
        flag_index: None,
        variant_index: None,
        reason: Reason::FlagNotFound,
        rule_index: None,
        bucket: None,
        kill_source: None,
        guardrail: None,
        replaced_variant: None,
        budget: None,
        shadow: None,
        pin: PinEffect::None,
    };
}

/// A decision borrowed from the document that made it: the flag and the [`Choice`] (whose
/// fields read through, `decision.reason`).
#[derive(Debug, Clone, Copy)]
pub struct Decision<'d> {
    /// The flag, `None` when it does not exist (reason `FLAG_NOT_FOUND`).
    pub flag: Option<&'d Flag>,
    pub choice: Choice,
}

impl std::ops::Deref for Decision<'_> {
    type Target = Choice;
    #[inline]
    fn deref(&self) -> &Choice {
        &self.choice
    }
}

/// A flag named by key, or by its index in the document (bindings that looked it up once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagRef<'k> {
    Key(&'k str),
    Index(usize),
}

impl<'k> From<&'k str> for FlagRef<'k> {
    #[inline]
    fn from(key: &'k str) -> Self {
        FlagRef::Key(key)
    }
}

impl<'k> From<&'k String> for FlagRef<'k> {
    #[inline]
    fn from(key: &'k String) -> Self {
        FlagRef::Key(key)
    }
}

impl From<usize> for FlagRef<'_> {
    #[inline]
    fn from(index: usize) -> Self {
        FlagRef::Index(index)
    }
}

impl<'d> Decision<'d> {
    pub(crate) fn not_found() -> Self {
        Decision {
            flag: None,
            choice: Choice::NOT_FOUND,
        }
    }

    pub fn variant(&self) -> Option<&'d Variant> {
        Some(&self.flag?.variants[self.variant_index?])
    }

    pub fn variant_id(&self) -> Option<&'d str> {
        self.variant().map(|v| &*v.id)
    }

    pub fn payload(&self) -> Option<&'d Value> {
        self.variant().map(|v| &*v.payload)
    }

    pub(crate) fn rule(&self) -> Option<&'d Rule> {
        Some(&self.flag?.rules[self.rule_index?])
    }

    pub fn rule_id(&self) -> Option<&'d str> {
        self.rule().map(|r| &*r.id)
    }

    /// The shadow variant's id, if one was drawn.
    pub(crate) fn shadow_id(&self) -> Option<&'d str> {
        Some(&*self.flag?.variants.get(self.shadow?)?.id)
    }
}

/// The budget a [`BudgetRef`] names in `doc` (its flag's, or the document's).
pub fn budget_of<'d>(
    doc: &'d Document,
    flag: Option<&'d Flag>,
    at: BudgetRef,
) -> Option<&'d Budget> {
    match at {
        BudgetRef::Flag(i) => flag?.budgets.get(i as usize),
        BudgetRef::Document(i) => doc.budgets.get(i as usize),
    }
}

/// Where "now" comes from: read lazily, only when a ramp needs it.
pub trait Now {
    fn now(&self) -> Millis;
}

impl<F: Fn() -> Millis> Now for F {
    fn now(&self) -> Millis {
        self()
    }
}

/// A fixed instant (tests, `--at`).
#[derive(Debug, Clone, Copy)]
pub struct At(pub Millis);

impl Now for At {
    fn now(&self) -> Millis {
        self.0
    }
}
