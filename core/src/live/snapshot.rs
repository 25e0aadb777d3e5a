//! A consistent view of the live flags for one or several evaluations, and the owned result of
//! one evaluation.

use std::ops::Deref;
use std::rc::Rc;
use std::sync::Arc;

use arc_swap::Guard;

use serde_json::Value;

use crate::context::{Attr, Context};
use crate::document::budget::Budget;
use crate::document::sticky::conversation_of;
use crate::document::{Document, Flag};
use crate::evaluate::overlay::{PinEffect, PinLookup, Trip};
use crate::evaluate::{
    decision_json, At, Choice, Decision, Explanation, FlagRef, KillSource, Overlay, Reason,
};
use crate::hash::IntUnit;
use crate::live::clock::{Clock, ClockNow};
use crate::live::overrides::{forced, Overrides};
use crate::runtime::budget::BudgetBook;
use crate::runtime::events::{EventBody, Exposure, EXPOSURE_OF_READ};
use crate::runtime::exposures::{Exposed, ExposureLog};
use crate::runtime::{Runtime, SEGMENT_ATTRIBUTE};
use crate::time::{format_timestamp, Millis};

/// A consistent view of the live flags (see [`crate::Flags::snapshot`]).
///
/// `D` holds the document: this thread's counted reference to the live one
/// ([`crate::Flags::snapshot`]), or a reference to one the caller keeps
/// ([`crate::Flags::snapshot_of`]). A type parameter rather
/// than an enum, so that neither kind pays a branch on every use of the document.
pub struct Snapshot<'a, D = Rc<Arc<Document>>> {
    pub(super) document: D,
    /// `None` when no local kill was in force at the snapshot.
    pub(super) overrides: Option<Guard<Arc<Overrides>>>,
    pub(super) clock: &'a dyn Clock,
    pub(super) runtime: &'a Runtime,
}

/// What an exposed read hands to [`Snapshot::expose`]: the decision's fields it needs, by
/// value (see [`Snapshot::evaluate`]). Only reads that served a variant of the document.
#[derive(Clone, Copy)]
struct Read<'d> {
    flag: &'d Flag,
    variant_index: usize,
    reason: Reason,
    rule_index: Option<usize>,
    bucket: Option<u32>,
}

/// Where the pin of a sticky flag comes from for one evaluation.
#[derive(Debug, Clone, Copy, Default)]
pub enum PinSource<'a> {
    /// The handle's in-memory store (the default).
    #[default]
    Memory,
    /// A binding read the pin from its shared store: the stored variant id, if any.
    Given(Option<&'a str>),
}

/// How one evaluation runs: the options of [`Snapshot::evaluate`], [`Snapshot::explain`],
/// [`crate::Flags::evaluate`] and [`crate::Flags::explain`]. The default reads the handle's
/// clock and its in-memory pins.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvalOptions<'p> {
    /// Evaluate as of this instant (tests, `--at`); `None` reads the handle's clock, and only
    /// when a ramp needs it.
    pub at: Option<Millis>,
    /// Where a sticky flag's pin comes from. With [`PinSource::Memory`], `evaluate` writes or
    /// removes the pin as the decision says; with [`PinSource::Given`] nothing is written and
    /// the caller carries out `decision.pin` on its own store. `explain` never writes.
    pub pin: PinSource<'p>,
    /// A test override in force for this flag (see [`crate::live::overrides::forced`]): the
    /// variant to serve instead of deciding. `None` (the default) decides as usual.
    pub forced: Option<&'p str>,
}

impl EvalOptions<'_> {
    /// Evaluate as of instant `at`.
    pub fn at(at: Millis) -> Self {
        EvalOptions {
            at: Some(at),
            ..EvalOptions::default()
        }
    }
}

/// How an evaluation reads budgets: locking the book per look (plain evaluation), or through a
/// book the caller already holds (a call that checks and reserves atomically).
pub(crate) enum BudgetAccess<'a> {
    Lock,
    Held(std::cell::RefCell<&'a mut BudgetBook>),
}

/// What a live evaluation overlays on the document: the snapshot's local kills and trips, the
/// runtime's budgets and the conversation pins.
pub(crate) struct LiveOverlay<'s> {
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

impl<'a, D: Deref<Target = Arc<Document>>> Snapshot<'a, D> {
    pub fn document(&self) -> &Document {
        &self.document
    }

    /// The overlay of this snapshot: local kills, trips, budgets, pins.
    pub(crate) fn overlay<'s>(&'s self, pins: PinSource<'s>) -> LiveOverlay<'s> {
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

    /// The snapshot's document, shared (for caches keyed by document).
    pub fn document_arc(&self) -> &Arc<Document> {
        &self.document
    }

    /// Evaluates `flag` (a key, or an index into [`Snapshot::document`]) for `ctx`: the one
    /// evaluation entry point of the live handle for reads (`variant`, `variants`, `all`). The
    /// decision borrows from the snapshot. On a handle with exposures on, the read is counted
    /// and may send an `exposure` event (see [`crate::runtime::exposures`]); a test override
    /// (`options.forced`) is neither.
    #[inline(always)]
    pub fn evaluate<'k, C: Context + ?Sized>(
        &self,
        flag: impl Into<FlagRef<'k>>,
        ctx: &C,
        options: EvalOptions<'_>,
    ) -> Decision<'_> {
        let decision = self.decide(flag, ctx, options);
        // Exposures off (the default): one load and one branch, nothing else. The cold call
        // takes a few fields by value, not `&decision`: a decision whose address escapes is
        // written out whole on the default path too (~60 instructions per read, callgrind).
        if let Some(log) = self.runtime.exposures.get() {
            if let (None, Some(flag), Some(variant_index)) =
                (options.forced, decision.flag, decision.variant_index)
            {
                let read = Read {
                    flag,
                    variant_index,
                    reason: decision.reason,
                    rule_index: decision.rule_index,
                    bucket: decision.bucket,
                };
                self.expose(log, read, ctx, options.at);
            }
        }
        decision
    }

    /// [`Snapshot::evaluate`] without exposures: the decision of a `call` (which sends its own
    /// exposure, per run).
    #[inline(always)]
    pub(crate) fn decide<'k, C: Context + ?Sized>(
        &self,
        flag: impl Into<FlagRef<'k>>,
        ctx: &C,
        options: EvalOptions<'_>,
    ) -> Decision<'_> {
        let flag = flag.into();
        if let Some(variant) = options.forced {
            if let Some(decision) = forced::decide(&self.document, flag, variant) {
                return decision;
            }
        }
        let overlay = self.overlay(options.pin);
        let decision = match options.at {
            None => self
                .document
                .evaluate(flag, ctx, &ClockNow(self.clock), &overlay),
            Some(at) => self.document.evaluate(flag, ctx, &At(at), &overlay),
        };
        if matches!(options.pin, PinSource::Memory) {
            self.keep_pin(&decision, ctx);
        }
        decision
    }

    /// Counts a read on a handle with exposures on and sends its `exposure` event when it is
    /// the first of its unit, flag and revision in the window and its unit is sampled. The
    /// window's clock is the evaluation's: `at` when given, else the handle's clock.
    #[cold]
    #[inline(never)]
    fn expose<C: Context + ?Sized>(
        &self,
        log: &ExposureLog,
        read: Read<'_>,
        ctx: &C,
        at: Option<Millis>,
    ) {
        let flag = read.flag;
        let Some(variant) = flag.variants.get(read.variant_index) else {
            return;
        };
        let now = at.unwrap_or_else(|| self.clock.now_millis());
        let attr = ctx.attr(&flag.bucket_by);
        let int_unit;
        let unit = match attr {
            Attr::Str(text) if !text.is_empty() => Some(text),
            Attr::Int(number) => {
                int_unit = IntUnit::new(number);
                Some(int_unit.as_str())
            }
            _ => None,
        };
        let revision = self.document.revision();
        if log.record(flag, variant, unit, revision, now) != Exposed::Send
            || !self.runtime.wants_events()
        {
            return;
        }
        let body = EventBody::Exposure(Exposure {
            time: format_timestamp(now),
            run_id: None,
            flag: &flag.key,
            variant: Some(&variant.id),
            revision,
            reason: read.reason.as_str(),
            rule_id: read
                .rule_index
                .and_then(|index| flag.rules.get(index))
                .map(|rule| &*rule.id),
            bucket: read.bucket,
            model: variant.model.as_deref(),
            shadow: false,
            unit: self.runtime.unit_label(unit),
            segment: ctx.str_attr(SEGMENT_ATTRIBUTE),
            source: EXPOSURE_OF_READ,
        });
        self.runtime.emit(&[body.to_event()]);
    }

    /// [`Snapshot::evaluate`] with every step that led to the decision. Reads pins and
    /// budgets; writes nothing.
    pub fn explain<'k, C: Context + ?Sized>(
        &self,
        flag: impl Into<FlagRef<'k>>,
        ctx: &C,
        options: EvalOptions<'_>,
    ) -> Explanation {
        let overlay = self.overlay(options.pin);
        match options.at {
            None => self
                .document
                .explain(flag, ctx, &ClockNow(self.clock), &overlay),
            Some(at) => self.document.explain(flag, ctx, &At(at), &overlay),
        }
    }

    /// [`Snapshot::decide`] into an owned result that keeps the document alive (for a `call`:
    /// no read exposure).
    #[inline]
    pub(crate) fn evaluate_owned<'k, C: Context + ?Sized>(
        &self,
        flag: impl Into<FlagRef<'k>>,
        ctx: &C,
        options: EvalOptions<'_>,
    ) -> Evaluation {
        let flag = flag.into();
        let decision = self.decide(flag, ctx, options);
        Evaluation::of_decision(&decision, flag, &self.document)
    }
}

/// An owned evaluation result: the [`Choice`] (indices) and the document they index into.
/// Its fields read through (`evaluation.reason`).
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub document: Arc<Document>,
    pub(crate) choice: Choice,
    /// The requested key when the flag does not exist.
    missing_flag: Option<Box<str>>,
}

impl std::ops::Deref for Evaluation {
    type Target = Choice;
    #[inline]
    fn deref(&self) -> &Choice {
        &self.choice
    }
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
            choice: Choice {
                flag_index: Some(flag_index),
                variant_index,
                rule_index,
                reason,
                bucket,
                kill_source,
                ..Choice::NOT_FOUND
            },
            missing_flag: None,
        }
    }

    /// The owned form of a decision that `document` made for `flag`.
    #[inline]
    pub fn of_decision<'k>(
        decision: &Decision<'_>,
        flag: impl Into<FlagRef<'k>>,
        document: &Arc<Document>,
    ) -> Evaluation {
        let missing_flag = match (decision.flag_index, flag.into()) {
            (None, FlagRef::Key(key)) => Some(key.into()),
            _ => None,
        };
        Evaluation {
            choice: decision.choice,
            missing_flag,
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
            choice: self.choice,
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

    pub fn rule_id(&self) -> Option<&str> {
        self.decision().rule_id()
    }

    pub fn revision(&self) -> &str {
        self.document.revision()
    }

    pub(crate) fn revision_arc(&self) -> &Arc<str> {
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
