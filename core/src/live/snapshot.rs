//! A consistent view of the live flags for one or several evaluations, and the owned result of
//! one evaluation.

use std::sync::Arc;

use arc_swap::Guard;
use serde_json::Value;

use crate::context::Context;
use crate::document::budget::{Budget, BudgetRef};
use crate::document::sticky::conversation_of;
use crate::document::Document;
use crate::evaluate::overlay::{PinEffect, PinLookup, Trip};
use crate::evaluate::{decision_json, At, Decision, KillSource, Now, Overlay, Reason};
use crate::live::clock::{Clock, ClockNow};
use crate::live::overrides::Overrides;
use crate::runtime::budget::BudgetBook;
use crate::runtime::Runtime;
use crate::time::Millis;

/// A consistent view of the live flags (see [`crate::Flags::snapshot`]).
pub struct Snapshot<'a> {
    pub(super) document: Guard<Arc<Document>>,
    /// `None` when no local kill was in force at the snapshot.
    pub(super) overrides: Option<Guard<Arc<Overrides>>>,
    pub(super) clock: &'a dyn Clock,
    pub(super) runtime: &'a Runtime,
}

/// Where the pin of a sticky flag comes from for one evaluation.
#[derive(Clone, Copy)]
pub enum PinSource<'a> {
    /// The handle's in-memory store (the default).
    Memory,
    /// A binding read the pin from its shared store: the stored variant id, if any.
    Given(Option<&'a str>),
}

/// How an evaluation reads budgets: locking the book per look (plain evaluation), or through a
/// book the caller already holds (a call that checks and reserves atomically).
pub(crate) enum BudgetAccess<'a> {
    Lock,
    Held(std::cell::RefCell<&'a mut BudgetBook>),
}

/// What a live evaluation overlays on the document: the snapshot's local kills and trips, the
/// runtime's budgets and the conversation pins.
pub struct LiveOverlay<'s> {
    overrides: Option<&'s Overrides>,
    runtime: &'s Runtime,
    clock: &'s dyn Clock,
    pins: PinSource<'s>,
    budgets: BudgetAccess<'s>,
}

impl Overlay for LiveOverlay<'_> {
    #[inline]
    fn all_killed(&self) -> bool {
        self.overrides.is_some_and(Overrides::all_killed)
    }
    #[inline]
    fn flag_killed(&self, flag: &str) -> bool {
        self.overrides.is_some_and(|o| o.flag_killed(flag))
    }
    #[inline]
    fn trips(&self, flag: &str) -> &[Trip] {
        self.overrides.map_or(&[], |o| o.trips(flag))
    }
    fn budget_exhausted(&self, budget: &Budget, scope: &str) -> bool {
        let now = self.clock.now_millis();
        match &self.budgets {
            BudgetAccess::Held(book) => book.borrow_mut().is_exhausted(budget, scope, now),
            BudgetAccess::Lock => self
                .runtime
                .with_budgets(now, |book| book.is_exhausted(budget, scope, now)),
        }
    }
    fn pin(&self, flag: &crate::document::Flag, conversation: &str) -> PinLookup {
        match self.pins {
            PinSource::Given(stored) => PinLookup::of(flag, stored),
            PinSource::Memory => {
                let stored =
                    self.runtime
                        .pins
                        .get(&flag.key, conversation, self.clock.now_millis());
                PinLookup::of(flag, stored.as_deref())
            }
        }
    }
}

impl<'a> Snapshot<'a> {
    pub fn document(&self) -> &Document {
        &self.document
    }

    /// The overlay of this snapshot: local kills, trips, budgets, pins.
    pub fn overlay(&self, pins: PinSource<'a>) -> LiveOverlay<'_> {
        LiveOverlay {
            overrides: self.overrides.as_deref().map(|o| &**o),
            runtime: self.runtime,
            clock: self.clock,
            pins,
            budgets: BudgetAccess::Lock,
        }
    }

    pub(crate) fn overlay_holding<'b>(
        &'b self,
        book: &'b mut BudgetBook,
        pins: PinSource<'b>,
    ) -> LiveOverlay<'b> {
        LiveOverlay {
            overrides: self.overrides.as_deref().map(|o| &**o),
            runtime: self.runtime,
            clock: self.clock,
            pins,
            budgets: BudgetAccess::Held(std::cell::RefCell::new(book)),
        }
    }

    /// Carries out a decision's pin effect on the in-memory store.
    #[inline]
    pub(crate) fn keep_pin<C: Context + ?Sized>(&self, decision: &Decision<'_>, ctx: &C) {
        if matches!(decision.pin, PinEffect::None | PinEffect::Keep) {
            return;
        }
        let (Some(flag), Some(sticky)) =
            (decision.flag, decision.flag.and_then(|f| f.sticky.as_ref()))
        else {
            return;
        };
        let Some(conversation) = conversation_of(sticky, ctx) else {
            return;
        };
        let pins = &self.runtime.pins;
        match (decision.pin, decision.variant()) {
            (PinEffect::Write, Some(variant)) => pins.set(
                &flag.key,
                &conversation,
                &variant.id,
                self.clock.now_millis().saturating_add(sticky.ttl),
            ),
            (PinEffect::Delete, _) => pins.delete(&flag.key, &conversation),
            _ => {}
        }
    }

    /// Evaluates with the in-memory pins (written or removed as the decision says).
    #[inline]
    fn decide<C: Context + ?Sized>(
        &self,
        flag: FlagAt<'_>,
        ctx: &C,
        now: &impl Now,
    ) -> Decision<'_> {
        let overlay = self.overlay(PinSource::Memory);
        let decision = match flag {
            FlagAt::Key(key) => self.document.evaluate(key, ctx, now, &overlay),
            FlagAt::Index(index) => self.document.evaluate_index(index, ctx, now, &overlay),
        };
        self.keep_pin(&decision, ctx);
        decision
    }

    /// Evaluates with a pin a binding read from its own store: nothing is written; the caller
    /// carries out `decision.pin` on that store.
    #[inline]
    pub fn evaluate_index_pinned<C: Context + ?Sized>(
        &self,
        flag_index: usize,
        ctx: &C,
        pin: Option<&str>,
        at: Option<Millis>,
    ) -> Decision<'_> {
        let overlay = self.overlay(PinSource::Given(pin));
        match at {
            None => self
                .document
                .evaluate_index(flag_index, ctx, &ClockNow(self.clock), &overlay),
            Some(at) => self
                .document
                .evaluate_index(flag_index, ctx, &At(at), &overlay),
        }
    }

    /// Evaluates as of instant `at`; the decision borrows from the snapshot.
    #[inline]
    pub fn evaluate_at<C: Context + ?Sized>(
        &self,
        flag: &str,
        ctx: &C,
        at: Millis,
    ) -> Decision<'_> {
        self.decide(FlagAt::Key(flag), ctx, &At(at))
    }

    /// `explain` against this snapshot's document (the one whose attributes a binding read).
    /// Reads pins and budgets; writes nothing.
    pub fn explain<C: Context + ?Sized>(&self, flag: &str, ctx: &C) -> Value {
        self.document.explain(
            flag,
            ctx,
            &ClockNow(self.clock),
            &self.overlay(PinSource::Memory),
        )
    }

    /// `explain` as of instant `at`.
    pub fn explain_at<C: Context + ?Sized>(&self, flag: &str, ctx: &C, at: Millis) -> Value {
        self.document
            .explain(flag, ctx, &At(at), &self.overlay(PinSource::Memory))
    }

    /// `explain` with a pin read from a binding's store.
    pub fn explain_pinned<C: Context + ?Sized>(
        &self,
        flag: &str,
        ctx: &C,
        pin: Option<&str>,
        at: Option<Millis>,
    ) -> Value {
        let overlay = self.overlay(PinSource::Given(pin));
        match at {
            None => self
                .document
                .explain(flag, ctx, &ClockNow(self.clock), &overlay),
            Some(at) => self.document.explain(flag, ctx, &At(at), &overlay),
        }
    }

    /// Evaluates the flag at `flag_index` of [`Snapshot::document`] (no second key lookup).
    #[inline]
    pub fn evaluate_index<C: Context + ?Sized>(&self, flag_index: usize, ctx: &C) -> Decision<'_> {
        self.decide(FlagAt::Index(flag_index), ctx, &ClockNow(self.clock))
    }

    /// `evaluate_index` as of instant `at`.
    #[inline]
    pub fn evaluate_index_at<C: Context + ?Sized>(
        &self,
        flag_index: usize,
        ctx: &C,
        at: Millis,
    ) -> Decision<'_> {
        self.decide(FlagAt::Index(flag_index), ctx, &At(at))
    }

    /// The snapshot's document, shared (for caches keyed by document).
    pub fn document_arc(&self) -> &Arc<Document> {
        &self.document
    }

    /// Evaluates a flag against this snapshot; the decision borrows from it.
    #[inline]
    pub fn evaluate<C: Context + ?Sized>(&self, flag: &str, ctx: &C) -> Decision<'_> {
        self.decide(FlagAt::Key(flag), ctx, &ClockNow(self.clock))
    }

    /// Evaluates a flag and keeps the document alive in the result.
    #[inline]
    pub fn evaluate_owned<C: Context + ?Sized>(&self, flag: &str, ctx: &C) -> Evaluation {
        self.evaluate_owned_at(flag, ctx, ClockNow(self.clock))
    }

    /// `evaluate_owned` with an explicit source of "now".
    #[inline]
    pub fn evaluate_owned_at<C: Context + ?Sized>(
        &self,
        flag: &str,
        ctx: &C,
        now: impl Now,
    ) -> Evaluation {
        let decision = self.decide(FlagAt::Key(flag), ctx, &now);
        Evaluation::of_decision(&decision, flag, &self.document)
    }

    /// Evaluates the flag at `flag_index` (named `flag`) into an owned result, with the pins of
    /// `pins`: the memory store is read and written, a given pin only read.
    pub(crate) fn evaluate_index_owned<C: Context + ?Sized>(
        &self,
        flag_index: usize,
        flag: &str,
        ctx: &C,
        pins: PinSource<'_>,
    ) -> Evaluation {
        let decision = match pins {
            PinSource::Memory => self.decide(FlagAt::Index(flag_index), ctx, &ClockNow(self.clock)),
            PinSource::Given(pin) => self.evaluate_index_pinned(flag_index, ctx, pin, None),
        };
        Evaluation::of_decision(&decision, flag, &self.document)
    }
}

/// A flag named by key or by its index in the snapshot's document.
#[derive(Clone, Copy)]
enum FlagAt<'k> {
    Key(&'k str),
    Index(usize),
}

/// An owned evaluation result: compact indices into the document that made it.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub document: Arc<Document>,
    pub flag_index: Option<usize>,
    pub variant_index: Option<usize>,
    pub rule_index: Option<usize>,
    pub reason: Reason,
    pub bucket: Option<u32>,
    pub kill_source: Option<KillSource>,
    pub guardrail: Option<usize>,
    pub replaced_variant: Option<usize>,
    pub budget: Option<BudgetRef>,
    pub shadow: Option<usize>,
    pub pin: PinEffect,
    /// The requested key when the flag does not exist.
    missing_flag: Option<Box<str>>,
}

impl Evaluation {
    /// Rebuilds the evaluation of a found flag from the indices a binding kept in its result
    /// object (for trackers). Which guardrail re-routed it is not kept there: no tracker
    /// outcome depends on it.
    #[allow(clippy::too_many_arguments)]
    pub fn of_found(
        document: Arc<Document>,
        flag_index: usize,
        variant_index: Option<usize>,
        rule_index: Option<usize>,
        reason: Reason,
        bucket: Option<u32>,
        kill_source: Option<KillSource>,
    ) -> Evaluation {
        Evaluation {
            document,
            flag_index: Some(flag_index),
            variant_index,
            rule_index,
            reason,
            bucket,
            kill_source,
            guardrail: None,
            replaced_variant: None,
            budget: None,
            shadow: None,
            pin: PinEffect::None,
            missing_flag: None,
        }
    }

    /// The owned form of a decision of `document`.
    pub fn of_decision(
        decision: &Decision<'_>,
        flag: &str,
        document: &Arc<Document>,
    ) -> Evaluation {
        Evaluation {
            flag_index: decision.flag_index,
            variant_index: decision.variant_index,
            rule_index: decision.rule_index,
            reason: decision.reason,
            bucket: decision.bucket,
            kill_source: decision.kill_source,
            guardrail: decision.guardrail,
            replaced_variant: decision.replaced_variant,
            budget: decision.budget,
            shadow: decision.shadow,
            pin: decision.pin,
            missing_flag: match decision.flag_index {
                Some(_) => None,
                None => Some(flag.into()),
            },
            document: Arc::clone(document),
        }
    }

    pub fn flag_key(&self) -> &str {
        match self.flag_index {
            Some(i) => &self.document.flags[i].key,
            None => self.missing_flag.as_deref().unwrap_or(""),
        }
    }

    /// The same result as a borrowed [`Decision`] (whose accessors resolve the indices).
    pub fn decision(&self) -> Decision<'_> {
        Decision {
            flag: self.flag_index.map(|i| &self.document.flags[i]),
            flag_index: self.flag_index,
            variant_index: self.variant_index,
            reason: self.reason,
            rule_index: self.rule_index,
            bucket: self.bucket,
            kill_source: self.kill_source,
            guardrail: self.guardrail,
            replaced_variant: self.replaced_variant,
            budget: self.budget,
            shadow: self.shadow,
            pin: self.pin,
        }
    }

    /// The flag definition (`None` for an unknown flag).
    pub fn flag(&self) -> Option<&crate::document::Flag> {
        self.flag_index.and_then(|i| self.document.flags.get(i))
    }

    pub fn variant_id(&self) -> Option<&str> {
        self.decision().variant_id()
    }

    pub fn payload(&self) -> Option<&Value> {
        self.decision().payload()
    }

    pub fn payload_arc(&self) -> Option<&Arc<Value>> {
        self.decision().variant().map(|v| &v.payload)
    }

    pub fn rule_id(&self) -> Option<&str> {
        self.decision().rule_id()
    }

    pub fn revision(&self) -> &str {
        self.document.revision()
    }

    pub fn revision_arc(&self) -> &Arc<str> {
        self.document.revision_arc()
    }

    /// The cache key of the served variant with `parts` (see [`crate::cache_key`]); `None`
    /// for an unknown flag.
    pub fn cache_key(&self, parts: &[crate::cache_key::KeyPart<'_>]) -> Option<String> {
        let variant = self.decision().variant()?;
        Some(crate::cache_key::cache_key(
            self.flag_key(),
            &variant.id,
            &variant.payload_hash,
            parts,
        ))
    }

    /// The result as JSON (`variant` falls back to `caller_default` when the flag is unknown).
    pub fn to_json(&self, caller_default: Option<&str>) -> Value {
        decision_json(
            &self.document,
            self.flag_key(),
            &self.decision(),
            caller_default,
        )
    }
}
