//! The native state behind each JS `Flags`, and the decision entry points shaped for a cheap
//! JS boundary.
//!
//! Why the shape is unusual: an `#[napi(object)]` conversion of a whole context costs ~400 ns,
//! and with napi-rs 3.16 even a `#[napi]` class method call with no arguments costs ~250 ns
//! (its unwrap and borrow bookkeeping go through global mutexes and hash maps), both over the
//! 250 ns budget of one `flags.variant(...)`. So:
//!
//! - the JS side reads only the attributes the flag uses (`Flag::attributes`, sent once per
//!   document by [`Handle::tables`]) and passes them positionally to raw callbacks
//!   (`crate::raw`);
//! - a JS `Flags` names its state by a small integer (a slot in a per-thread table) instead of
//!   a wrapped object, so finding it costs an index, not an unwrap;
//! - the core decides (`Snapshot::evaluate` over a `Positional` context);
//! - the result comes back as one number ([`encode`]): variant index, reason, rule index and
//!   bucket, plus whether a shadow was drawn and which budget decided. The JS side turns
//!   indices into ids and frozen payloads with the tables of the document they index into.
//!
//! A result that does not fit the number ([`WIDE`]) is stashed here, unpacked, for the JS side
//! to take ([`take_wide`]): an evaluation may write a sticky pin or touch a budget, so it is
//! never repeated to get the wide form.
//!
//! Indices are only meaningful for the document the JS tables were built from, so a handle
//! keeps that document (`ack`) alive and every evaluation first checks that the live document
//! is still the same one. When a reload swapped it, the call returns [`STALE`] without
//! evaluating, and the JS side fetches new tables and retries. Keeping the `Arc` (not just an
//! address) also rules out a freed document's address being reused by the next one.

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use flagrail_core::document::budget::BudgetRef;
use flagrail_core::document::sticky::conversation_of;
use flagrail_core::runtime::sticky::pin_key;
use flagrail_core::{
    codes, Attr, Decision, Document, EmptyContext, EvalOptions, Evaluation, Flag, Flags,
    KillSource, PinSource, Positional, Slotted,
};
use serde_json::{json, Value};

use crate::error::{invalid_argument, JsError};

/// Returned instead of a result when the live document is not the one the JS tables describe
/// (or the handle or flag index is unknown, which the JS side treats the same way).
pub const STALE: f64 = -1.0;
/// Returned when a result does not fit the packed number (more than 255 variants or rules):
/// the JS side asks `evalWide` instead.
pub const WIDE: f64 = -2.0;
/// Returned by a raw callback that could not run (unreadable arguments, a caught panic).
pub const FAILED: f64 = -3.0;
/// `evalForced`: the override names a variant the live flag does not have.
pub const NOT_FORCED: f64 = -4.0;

/// Bits below the bucket in a packed result.
const LOW_BITS: u32 = 20;
const MAX_PACKED_INDEX: usize = 255;
/// The shadow bit of a packed result (bit 52: the bucket field ends below it).
const SHADOW_BIT: f64 = 4_503_599_627_370_496.0;

/// Packs a result into one JS number (an f64 holds integers up to 2^53 exactly):
///
/// ```text
/// bits  0..3   reason code (`Reason::code`, flagrail_core::codes)
/// bits  3..11  variant index + 1 (0: none)
/// bits 11..19  rule index + 1 (0: none); for KILLED, which has no rule, the kill source code
///              (`KillSource::code`, 1..=6)
/// bit  19      has bucket
/// bits 20..52  bucket (u32); without a bucket, the budget code (0: none, see [`budget_code`])
/// bit  52      a shadow was drawn (the flag's shadow variant: the JS tables know which)
/// ```
///
/// A result with a budget never has a bucket (budgets decide before rules), so the two share
/// their bits.
#[inline]
fn encode(d: &Decision<'_>) -> f64 {
    let variant = d.variant_index.map_or(0, |i| i + 1);
    let rule = match (d.rule_index, d.kill_source) {
        (Some(i), _) => i + 1,
        (None, Some(source)) => usize::from(source.code()),
        (None, None) => 0,
    };
    if d.rule_index.is_some() && d.kill_source.is_some() {
        // Not produced by the core today; the unpacked form carries both.
        return WIDE;
    }
    if variant > MAX_PACKED_INDEX || rule > MAX_PACKED_INDEX {
        return WIDE;
    }
    let high = match (d.bucket, d.budget) {
        (None, None) => 0,
        (Some(bucket), None) => bucket,
        (None, Some(_)) => match budget_code(d.flag, d.budget) {
            0 => return WIDE,
            code => code,
        },
        (Some(_), Some(_)) => return WIDE,
    };
    let low = u32::from(d.reason.code())
        | (variant as u32) << 3
        | (rule as u32) << 11
        | u32::from(d.bucket.is_some()) << 19;
    let shadow = if d.shadow.is_some() { SHADOW_BIT } else { 0.0 };
    shadow + f64::from(high) * f64::from(1u32 << LOW_BITS) + f64::from(low)
}

/// A budget's code: its position in the flag's budgets followed by the document's, plus one
/// (the order of `budgets` in [`Handle::tables`]); 0 for none or one that does not fit.
#[inline]
fn budget_code(flag: Option<&Flag>, budget: Option<BudgetRef>) -> u32 {
    let position = match (flag, budget) {
        (_, None) | (None, _) => return 0,
        (Some(_), Some(BudgetRef::Flag(i))) => i as usize,
        (Some(flag), Some(BudgetRef::Document(i))) => flag.budgets.len() + i as usize,
    };
    u32::try_from(position + 1).unwrap_or(0)
}

/// A decision unpacked: `[variantIndex, reasonCode, ruleIndex, bucket, killSourceCode,
/// shadowIndex, budgetCode, pinEffect]`, -1 for none (0 for no budget or no kill source; reason,
/// kill source and pin effect codes are the core's, `flagrail_core::codes`).
pub fn unpacked(d: &Decision<'_>) -> Vec<f64> {
    let position = |i: Option<usize>| i.map_or(-1.0, |i| i as f64);
    vec![
        position(d.variant_index),
        f64::from(d.reason.code()),
        position(d.rule_index),
        d.bucket.map_or(-1.0, f64::from),
        f64::from(KillSource::optional_code(d.kill_source)),
        position(d.shadow),
        f64::from(budget_code(d.flag, d.budget)),
        f64::from(d.pin.code()),
    ]
}

thread_local! {
    /// The unpacked form of the last result that was [`WIDE`] on this thread.
    static LAST_WIDE: RefCell<Option<Vec<f64>>> = const { RefCell::new(None) };
}

/// Packs a decision, stashing its unpacked form when it does not fit (see [`take_wide`]).
#[inline]
fn pack(d: &Decision<'_>) -> f64 {
    let packed = encode(d);
    if packed == WIDE {
        stash(d);
    }
    packed
}

#[cold]
fn stash(d: &Decision<'_>) {
    let wide = unpacked(d);
    LAST_WIDE.with(|w| *w.borrow_mut() = Some(wide));
}

/// The unpacked form of the last [`WIDE`] result of this thread (taken once).
pub fn take_wide() -> Option<Vec<f64>> {
    LAST_WIDE.with(|w| w.borrow_mut().take())
}

#[inline]
pub fn encode_evaluation(evaluation: &Evaluation) -> f64 {
    pack(&evaluation.decision())
}

/// Unix milliseconds from JS (a `Date`'s `getTime()` or a parsed timestamp).
#[inline]
pub fn millis(at: f64) -> i64 {
    // `as` saturates; the JS side only passes finite values.
    at as i64
}

/// The live flags of one JS `Flags` object.
pub struct Handle {
    pub inner: Flags,
    /// The document the JS tables were built from (see the module docs). A `RefCell` is
    /// enough: handles live in a per-thread table, so only their own JS thread touches them.
    ack: RefCell<Arc<Document>>,
    /// The core's id of `ack` (`Flags::document_id`): while it is the live id, [`Handle::decide`]
    /// evaluates on `ack` without loading the core's document.
    ack_id: Cell<u64>,
    /// Events waiting for the JS listeners (`onEvent`), as JSON text; installed as an event
    /// sink on first use (see `crate::runtime`).
    pub events: OnceCell<Arc<Mutex<Vec<String>>>>,
    /// Shared fleet state (`{ redis: URL }`), if attached (see `crate::fleet`).
    pub fleet: RefCell<Option<Arc<flagrail_fleet::shared::FleetState>>>,
}

impl Handle {
    fn new(inner: Flags) -> Handle {
        let (ack_id, ack) = inner.document_and_id();
        let ack = RefCell::new(ack);
        let ack_id = Cell::new(ack_id);
        Handle {
            inner,
            ack,
            ack_id,
            events: OnceCell::new(),
            fleet: RefCell::new(None),
        }
    }

    /// The document the JS tables describe.
    pub fn acknowledged(&self) -> Arc<Document> {
        Arc::clone(&self.ack.borrow())
    }

    /// The acknowledged document when it is still the live one. The id check stands for
    /// comparing the live document with `ack`, so a snapshot over it ([`Flags::snapshot_of`])
    /// skips loading the core's document.
    #[inline]
    fn live_ack(&self) -> Option<std::cell::Ref<'_, Arc<Document>>> {
        (self.inner.document_id() == self.ack_id.get()).then(|| self.ack.borrow())
    }

    /// Evaluates flag `index` of the acknowledged document now, or returns `STALE`.
    #[inline]
    pub fn decide(&self, index: u32, values: &[Attr<'_>]) -> f64 {
        let Some(ack) = self.live_ack() else {
            return STALE;
        };
        let snapshot = self.inner.snapshot_of(&ack);
        let Some(flag) = ack.flags().get(index as usize) else {
            return STALE;
        };
        // The values follow `attributes`, or `run_attributes` (which start with them) on a
        // handle with exposures on: the longer list names both.
        let ctx = Positional {
            names: &flag.run_attributes,
            values,
        };
        // By index: the snapshot's document is the acknowledged one (checked above), so the
        // index names the same flag without hashing its key on every call.
        pack(&snapshot.evaluate(index as usize, &ctx, EvalOptions::default()))
    }

    /// Evaluates flags `indices` of the acknowledged document for one context whose `values`
    /// follow [`Document::attributes`], on one snapshot (so on one revision), optionally at
    /// instant `at`: the packed result of each flag in order, then the unpacked form of each
    /// result that was [`WIDE`] (eight numbers each, see [`unpacked`]), in order. `None` when the live document is not the
    /// acknowledged one, or an index is out of range.
    pub fn decide_many(
        &self,
        indices: &[u32],
        values: &[Attr<'_>],
        at: Option<f64>,
    ) -> Option<Vec<f64>> {
        let snapshot = self.inner.snapshot();
        let ack = self.ack.borrow();
        if !std::ptr::eq(snapshot.document(), Arc::as_ptr(&ack)) {
            return None;
        }
        let ctx = Positional {
            names: ack.attributes(),
            values,
        };
        let options = EvalOptions {
            at: at.map(millis),
            pin: PinSource::Memory,
            forced: None,
        };
        let mut packed = Vec::with_capacity(indices.len());
        let mut wide = Vec::new();
        for &index in indices {
            let index = index as usize;
            if index >= ack.flags().len() {
                return None;
            }
            let decision = snapshot.evaluate(index, &ctx, options);
            let number = encode(&decision);
            if number == WIDE {
                wide.extend(unpacked(&decision));
            }
            packed.push(number);
        }
        packed.extend(wide);
        Some(packed)
    }

    /// Evaluates several flags of the acknowledged document for one context whose values were
    /// read once (`evalPlan`, see `crate::raw_many`), on one snapshot. `spec` lists, for each
    /// flag, its index followed by where each of its attributes ([`Flag::attributes`]) sits in
    /// `values`; flag `k`'s packed result goes to `out[k]`. Returns how many results were
    /// [`WIDE`] (their unpacked forms, eight numbers each in order, are kept for
    /// [`take_wide`]), [`STALE`] when the live document is not the acknowledged one, or
    /// [`FAILED`] for a spec that does not fit the document.
    pub fn decide_plan(&self, spec: &[f64], values: &[Attr<'_>], out: &mut [f64]) -> f64 {
        /// Attributes of one flag read through the stack; a flag reading more is refused
        /// (the JS side does not build a plan for it).
        const MAX_FLAG_ATTRIBUTES: usize = 16;
        let Some(ack) = self.live_ack() else {
            return STALE;
        };
        let snapshot = self.inner.snapshot_of(&ack);
        // With exposures on, each flag's values are its `run_attributes` (the JS side built
        // the plan from the same choice, `readAttributes` in index.js).
        let exposing = self.inner.exposures_enabled();
        let mut rest = spec;
        let mut wide: Vec<f64> = Vec::new();
        for slot in out.iter_mut() {
            let Some((&index, tail)) = rest.split_first() else {
                return FAILED;
            };
            let Some(flag) = ack.flags().get(index as usize) else {
                return FAILED;
            };
            let names = if exposing {
                &flag.run_attributes
            } else {
                &flag.attributes
            };
            let count = names.len();
            let (Some(given), Some(tail)) = (tail.get(..count), tail.get(count..)) else {
                return FAILED;
            };
            rest = tail;
            let mut positions = [0usize; MAX_FLAG_ATTRIBUTES];
            let Some(positions) = positions.get_mut(..count) else {
                return FAILED;
            };
            for (position, &given) in positions.iter_mut().zip(given) {
                if !(given >= 0.0 && (given as usize) < values.len()) {
                    return FAILED;
                }
                *position = given as usize;
            }
            let ctx = Slotted {
                names,
                slots: positions,
                values,
            };
            let decision = snapshot.evaluate(index as usize, &ctx, EvalOptions::default());
            let number = encode(&decision);
            if number == WIDE {
                wide.extend(unpacked(&decision));
            }
            *slot = number;
        }
        let count = wide.len() / 8;
        if count > 0 {
            LAST_WIDE.with(|w| *w.borrow_mut() = Some(wide));
        }
        count as f64
    }

    /// Flag `index` of the acknowledged document with `variant` forced by a test override
    /// (`flags.override`): packed like [`Handle::decide`], `STALE`, or [`NOT_FORCED`] when the
    /// flag has no such variant (then it is evaluated as usual).
    pub fn decide_forced(&self, index: u32, variant: &str) -> f64 {
        let snapshot = self.inner.snapshot();
        let ack = self.ack.borrow();
        if !std::ptr::eq(snapshot.document(), Arc::as_ptr(&ack)) {
            return STALE;
        }
        let Some(flag) = ack.flags().get(index as usize) else {
            return STALE;
        };
        if flag.variant_position(variant).is_none() {
            return NOT_FORCED;
        }
        let options = EvalOptions {
            forced: Some(variant),
            ..EvalOptions::default()
        };
        pack(&snapshot.evaluate(index as usize, &EmptyContext, options))
    }

    /// Evaluates flag `index` of the acknowledged document (or, without an index, the flag
    /// `key` with no attributes), optionally at instant `at`, as an owned result; `None` when
    /// the live document is not the acknowledged one.
    pub fn evaluate_full(
        &self,
        index: Option<u32>,
        key: &str,
        values: &[Attr<'_>],
        at: Option<f64>,
    ) -> Option<Evaluation> {
        let ack = self.ack.borrow();
        let (key, names) = resolve(&ack, index, key)?;
        let ctx = Positional { names, values };
        let snapshot = self.inner.snapshot();
        let options = EvalOptions {
            at: at.map(millis),
            pin: PinSource::Memory,
            forced: None,
        };
        let decision = snapshot.evaluate(key, &ctx, options);
        let evaluation = Evaluation::of_decision(&decision, key, snapshot.document_arc());
        Arc::ptr_eq(&evaluation.document, &ack).then_some(evaluation)
    }

    /// Evaluates flag `index` of the acknowledged document with the pin the JS side read from
    /// its own store (`None`: no pin), writing no pin: the result's unpacked form (see
    /// [`unpacked`]) says what to do with the store. `None` when stale.
    pub fn evaluate_pinned(
        &self,
        index: u32,
        values: &[Attr<'_>],
        pin: Option<&str>,
        at: Option<f64>,
    ) -> Option<Vec<f64>> {
        let ack = self.ack.borrow();
        let snapshot = self.inner.snapshot();
        if !Arc::ptr_eq(snapshot.document_arc(), &ack) {
            return None;
        }
        let flag = ack.flags().get(index as usize)?;
        // `attributes` or, with exposures on, `run_attributes` (see `decide`).
        let ctx = Positional {
            names: &flag.run_attributes,
            values,
        };
        let options = EvalOptions {
            at: at.map(millis),
            pin: PinSource::Given(pin),
            forced: None,
        };
        let decision = snapshot.evaluate(index as usize, &ctx, options);
        Some(unpacked(&decision))
    }

    /// The key of the conversation's pin in a shared store (`flagrail/pin/<flag>/<conversation>`)
    /// for flag `index` of the acknowledged document, reading `values` of its attributes (or,
    /// with `run`, of its run attributes); `None` when the flag is not sticky or the context
    /// names no conversation.
    pub fn pin_key(&self, index: u32, values: &[Attr<'_>], run: bool) -> Option<String> {
        let ack = self.ack.borrow();
        let flag = ack.flags().get(index as usize)?;
        let sticky = flag.sticky.as_ref()?;
        let names = if run {
            &flag.run_attributes
        } else {
            &flag.attributes
        };
        let conversation = conversation_of(sticky, &Positional { names, values })?;
        Some(pin_key(&flag.key, &conversation))
    }

    /// Explains flag `index` (or `key` when the tables lack it) as JSON; `None` when stale.
    /// `pin`: `Some` with the pin read from the JS side's own store, `None` to read the
    /// in-memory pins.
    ///
    /// The snapshot that explains is the one compared with the acknowledged document, so a
    /// reload cannot slip in between the attribute list and the explanation.
    pub fn explain(
        &self,
        index: Option<u32>,
        key: &str,
        values: &[Attr<'_>],
        at: Option<f64>,
        pin: Option<Option<&str>>,
    ) -> Option<Value> {
        let ack = self.ack.borrow();
        let snapshot = self.inner.snapshot();
        if !Arc::ptr_eq(snapshot.document_arc(), &ack) {
            return None;
        }
        let (key, names) = resolve(&ack, index, key)?;
        let ctx = Positional { names, values };
        let options = EvalOptions {
            at: at.map(millis),
            pin: pin.map_or(PinSource::Memory, PinSource::Given),
            forced: None,
        };
        Some(snapshot.explain(key, &ctx, options).to_value())
    }

    /// The live document as JSON for the JS side's lookup tables: revision, reason names (in
    /// packed-code order), and per flag its key, attributes (those evaluation reads, and those
    /// a `call` reads), variants (id, payload, payload hash), rule ids, budget ids (the
    /// flag's, then the document's: budget codes index them), the shadow variant's index and
    /// the sticky TTL. Acknowledges that document.
    pub fn tables(&self) -> String {
        let (id, document) = self.inner.document_and_id();
        let flags: Vec<Value> = document
            .flags()
            .iter()
            .map(|flag| {
                json!({
                    "key": &*flag.key,
                    "attributes": flag.attributes.iter().map(|a| &**a).collect::<Vec<_>>(),
                    "attribute_slots": &flag.attribute_slots,
                    "run_attribute_slots": &flag.run_attribute_slots,
                    "run_attributes": flag.run_attributes.iter().map(|a| &**a).collect::<Vec<_>>(),
                    "variants": flag.variants.iter().map(|v| json!({
                        "id": &*v.id,
                        "payload": &*v.payload,
                        "payload_hash": &*v.payload_hash,
                    })).collect::<Vec<_>>(),
                    "rules": flag.rules.iter().map(|r| &*r.id).collect::<Vec<_>>(),
                    "budgets": flag.budgets.iter().chain(document.budgets())
                        .map(|b| &*b.id).collect::<Vec<_>>(),
                    "shadow": flag.shadow.as_ref().map(|s| s.variant),
                    "sticky_ttl_ms": flag.sticky.as_ref().map(|s| s.ttl),
                })
            })
            .collect();
        let tables = json!({
            "revision": document.revision(),
            "reasons": codes::reason_names(),
            "kill_sources": codes::kill_source_names(),
            "attributes": document.attributes().iter().map(|a| &**a).collect::<Vec<_>>(),
            "flags": flags,
        });
        *self.ack.borrow_mut() = document;
        self.ack_id.set(id);
        tables.to_string()
    }
}

/// Handles of this thread, by slot. Each JS thread (the main thread, every worker) has its
/// own table, and a JS `Flags` object never leaves its thread, so a slot number always refers
/// to a handle of the calling thread. Slots are freed from JS by a `FinalizationRegistry` when
/// the `Flags` object is collected, and all of them when the thread ends.
#[derive(Default)]
struct Slots {
    handles: Vec<Option<Rc<Handle>>>,
    free: Vec<u32>,
}

thread_local! {
    static SLOTS: RefCell<Slots> = RefCell::new(Slots::default());
}

/// Stores a new handle and returns its slot.
pub fn insert(flags: Flags) -> u32 {
    let handle = Some(Rc::new(Handle::new(flags)));
    SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        match slots.free.pop() {
            Some(slot) => {
                if let Some(entry) = slots.handles.get_mut(slot as usize) {
                    *entry = handle;
                }
                slot
            }
            None => {
                slots.handles.push(handle);
                (slots.handles.len() - 1) as u32
            }
        }
    })
}

/// The handle in `slot`, if any. The `Rc` is cloned out so that no borrow of the table is
/// held while the caller works (which could otherwise re-enter through a JS getter).
#[inline]
pub fn get(slot: u32) -> Option<Rc<Handle>> {
    SLOTS.with(|slots| slots.borrow().handles.get(slot as usize).cloned().flatten())
}

/// The handle in `slot`, or `INVALID_ARGUMENT` (a `Flags` object whose slot was never filled).
pub fn lookup(slot: u32) -> Result<Rc<Handle>, JsError> {
    get(slot).ok_or_else(|| invalid_argument(format!("no flags handle in slot {slot}")))
}

/// Frees `slot` (its `Flags` object was collected). Stops the file watcher with it.
pub fn release(slot: u32) {
    let handle = SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        let taken = slots.handles.get_mut(slot as usize).and_then(Option::take);
        if taken.is_some() {
            slots.free.push(slot);
        }
        taken
    });
    // Dropped outside the table borrow: dropping the last `Flags` clone ends its watcher.
    drop(handle);
}

/// The flag key and declared attributes of flag `index` of `document`, or `key` with no
/// attributes when the caller's tables did not know the flag; `None` for an index out of range.
fn resolve<'a>(
    document: &'a Document,
    index: Option<u32>,
    key: &'a str,
) -> Option<(&'a str, &'a [Box<str>])> {
    match index {
        Some(index) => {
            let flag = document.flags().get(index as usize)?;
            // Values follow `attributes` or, with exposures on, `run_attributes` (see `decide`).
            Some((&flag.key, &flag.run_attributes))
        }
        None => Some((key, &[])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagrail_core::evaluate::PinEffect;
    use flagrail_core::Choice;
    use flagrail_core::Reason;

    fn decision(reason: Reason) -> Decision<'static> {
        Decision {
            flag: None,
            choice: Choice {
                flag_index: Some(0),
                variant_index: Some(0),
                reason,
                rule_index: None,
                bucket: None,
                kill_source: None,
                guardrail: None,
                replaced_variant: None,
                budget: None,
                shadow: None,
                pin: PinEffect::None,
            },
        }
    }

    /// What index.js's `unpack` reads out of a packed number (a mirror of it, field by field):
    /// `(reason code, variant + 1, rule + 1 or kill source code, has bucket, high, shadow)`.
    fn fields(packed: f64) -> (u32, u32, u32, bool, u64, bool) {
        assert!(packed >= 0.0 && packed.fract() == 0.0 && packed < 2f64.powi(53));
        let mut high = (packed / f64::from(1u32 << LOW_BITS)).floor();
        let low = (packed - high * f64::from(1u32 << LOW_BITS)) as u32;
        let shadow = high >= SHADOW_BIT / f64::from(1u32 << LOW_BITS);
        if shadow {
            high -= SHADOW_BIT / f64::from(1u32 << LOW_BITS);
        }
        (
            low & 7,
            (low >> 3) & 255,
            (low >> 11) & 255,
            low & (1 << 19) != 0,
            high as u64,
            shadow,
        )
    }

    #[test]
    fn every_reason_packs_into_its_core_code() {
        for reason in Reason::ALL {
            let (code, ..) = fields(encode(&decision(reason)));
            assert_eq!(Reason::from_code(code as u8), Some(reason));
        }
    }

    #[test]
    fn a_split_packs_variant_rule_bucket_and_shadow() {
        let d = Decision {
            choice: Choice {
                variant_index: Some(254),
                rule_index: Some(254),
                bucket: Some(u32::MAX),
                shadow: Some(1),
                ..decision(Reason::Split).choice
            },
            ..decision(Reason::Split)
        };
        let reason = Reason::Split.code().into();
        assert_eq!(
            fields(encode(&d)),
            (reason, 255, 255, true, u64::from(u32::MAX), true)
        );
    }

    #[test]
    fn a_kill_packs_its_source_in_the_rule_field() {
        for source in KillSource::ALL {
            let d = Decision {
                choice: Choice {
                    kill_source: Some(source),
                    ..decision(Reason::Killed).choice
                },
                ..decision(Reason::Killed)
            };
            let (_, variant, rule, has_bucket, high, shadow) = fields(encode(&d));
            assert_eq!(KillSource::from_code(rule as u8), Some(source));
            assert_eq!((variant, has_bucket, high, shadow), (1, false, 0, false));
        }
    }

    #[test]
    fn results_that_do_not_fit_are_wide_and_unpacked_whole() {
        let many_variants = Decision {
            choice: Choice {
                variant_index: Some(255),
                ..decision(Reason::Default).choice
            },
            ..decision(Reason::Default)
        };
        assert_eq!(encode(&many_variants), WIDE);
        let rule_and_kill = Decision {
            choice: Choice {
                rule_index: Some(0),
                kill_source: Some(KillSource::Flag),
                ..decision(Reason::Killed).choice
            },
            ..decision(Reason::Killed)
        };
        assert_eq!(encode(&rule_and_kill), WIDE);
        let d = Decision {
            choice: Choice {
                variant_index: Some(300),
                rule_index: Some(400),
                bucket: Some(7),
                kill_source: Some(KillSource::Budget),
                shadow: Some(2),
                pin: PinEffect::Write,
                ..decision(Reason::Killed).choice
            },
            ..decision(Reason::Killed)
        };
        assert_eq!(
            unpacked(&d),
            vec![
                300.0,
                f64::from(Reason::Killed.code()),
                400.0,
                7.0,
                f64::from(KillSource::Budget.code()),
                2.0,
                0.0,
                f64::from(PinEffect::Write.code()),
            ]
        );
        let none = Decision {
            choice: Choice {
                flag_index: None,
                variant_index: None,
                ..decision(Reason::FlagNotFound).choice
            },
            ..decision(Reason::FlagNotFound)
        };
        assert_eq!(
            unpacked(&none),
            vec![-1.0, 0.0, -1.0, -1.0, 0.0, -1.0, 0.0, 0.0]
        );
    }
}
