//! `Inner`, the native state behind a Python `Flags`: the core handle plus the Python objects
//! of its live document, and the evaluation hot path (`Inner::variant`, entered from `fast.rs`).
//!
//! Separate from `live.rs` (the `#[pyclass]` types and their methods) so that `runtime.rs`
//! (`call`, trackers) can use the state without importing the classes that use it.
//!
//! Threads: everything here is `Send + Sync` (the core swaps documents behind an `ArcSwap`; the
//! Python-object cache is swapped the same way), so one instance is shared by every thread.
//! Evaluation keeps the GIL: it takes a couple of hundred nanoseconds, about what releasing and
//! re-acquiring it would cost.

use std::cell::RefCell;
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use flagrail_core::live::Snapshot;
use flagrail_core::{
    Document, EmptyContext, EvalOptions, Flags as CoreFlags, KillSource, PinSource, Reason, Slotted,
};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString};

use crate::context::{for_each_key, with_declared, with_union, Needed, Source};
use crate::convert::to_python;
use crate::overrides::OverrideScopes;
use crate::reuse;
use crate::sticky::{pin_write, PinStore};
use crate::time;
use crate::variant::{DocCache, Outcome, Variant};

pub(crate) struct Inner {
    pub(crate) core: CoreFlags,
    /// Python objects of the live document; replaced on the first evaluation after a reload.
    entry: ArcSwap<Entry>,
    pub(crate) poll_interval: Duration,
    /// The user's pin store of sticky flags, if one is installed (`use_pin_store`).
    pub(crate) pins: PinStore,
    /// Shared fleet state (`redis=URL`), if attached.
    pub(crate) fleet: FleetSlot,
    /// Test overrides open in some thread or task (`flags.override`).
    pub(crate) overrides: Arc<OverrideScopes>,
    /// Exposures are on (set before construction): a read also takes the unit and the segment
    /// label, the flag's `run_attributes`.
    exposing: bool,
}

/// A snapshot over a document an [`Entry`] keeps (see [`Inner::with_live`]).
type KeptSnapshot<'a> = Snapshot<'a, &'a Arc<Document>>;

thread_local! {
    /// The entries this thread evaluated on most recently, most recent first (see
    /// [`Inner::with_live`]). Two, so that a thread alternating between two handles finds
    /// both. Found by document id, which names one document of one handle in the process, so
    /// an entry is never taken for another handle's or a replaced document. The cost: after a
    /// reload, a thread keeps the replaced document's entry (and its Python objects) until its
    /// next evaluations of other documents push it out, or the thread ends.
    static RECENT_ENTRIES: RefCell<[Option<Arc<Entry>>; 2]> = const { RefCell::new([None, None]) };
}

/// What the binding keeps per live document.
struct Entry {
    /// The core's id of the document (`Flags::document_id`), or [`UNKNOWN_ID`]: while it is
    /// the live id, `variant` evaluates on this entry's document without loading the core's.
    document_id: u64,
    /// The objects results share (ids, payloads …); every `Variant` holds it.
    cache: Arc<DocCache>,
    /// Results that do not depend on the unit (a `serve` rule, the default, a kill), created
    /// once and returned again: most flags answer most calls this way. Indexed by flag, then by
    /// [`fixed_slot`]. Kept here rather than in `DocCache` because each holds an
    /// `Arc<DocCache>`.
    fixed: Box<[PyOnceLock<FixedResults>]>,
    /// Flag indices by the identity of the caller's key object (see [`KeySlots`]).
    keys: KeySlots,
    /// Key lists of `variants()` resolved once (see [`Plan`]).
    plans: PlanSlots,
    /// The plan of `all()`: every flag of the document, in document order.
    all_plan: OnceLock<Plan>,
    /// Result objects handed out again once the caller has let go of them, by flag, then by
    /// variant (see `reuse.rs`).
    reusable: Box<[Box<[reuse::Pool]>]>,
}

/// Entries found by the address of a Python object, direct-mapped and filled once per slot:
/// the first entry stored in a slot keeps it for the life of the document. Each entry holds a
/// strong reference to the object it was stored under, so that address cannot be reused by
/// another object while the entry is kept.
struct ByAddress<T, const N: usize>([OnceLock<T>; N]);

impl<T, const N: usize> ByAddress<T, N> {
    fn new() -> Self {
        ByAddress([const { OnceLock::new() }; N])
    }

    #[inline]
    fn slot(&self, object: *mut pyo3::ffi::PyObject) -> &OnceLock<T> {
        // Objects are at least 16-byte aligned: the low bits carry no information.
        &self.0[(object as usize >> 4) % N]
    }
}

/// Flag indices of the key strings callers pass, by object identity: a `"chat-model"` literal
/// is the same object on every call, so a pointer compare replaces UTF-8 access and a hash
/// lookup (keys built per call just miss).
type KeySlots = ByAddress<(Py<PyString>, usize), 64>;

impl KeySlots {
    /// The cached index of exactly this key object.
    #[inline]
    fn get(&self, key: &Bound<'_, PyString>) -> Option<usize> {
        match self.slot(key.as_ptr()).get() {
            Some((cached, index)) if cached.as_ptr() == key.as_ptr() => Some(*index),
            _ => None,
        }
    }

    #[inline]
    fn remember(&self, key: &Bound<'_, PyString>, index: usize) {
        let slot = self.slot(key.as_ptr());
        if slot.get().is_none() {
            // Losing a race to another thread only means that thread's key keeps the slot.
            let _ = slot.set((key.clone().unbind(), index));
        }
    }
}

/// A key list of `variants()` resolved against one document, so that a later call with the
/// same key objects skips resolving and deduplicating the keys and marking the attributes they
/// read (about a tenth of a three-flag call, callgrind). Built for `all()`, and for distinct
/// keys that all name flags given as a `list` or `tuple`; any other key list takes the general
/// path every time.
struct Plan {
    /// The key objects as given, in order (strong references, so that their addresses stay
    /// theirs): a call takes this plan only when its list or tuple holds exactly these.
    keys: Box<[Py<PyString>]>,
    /// The flag of each key.
    flags: Box<[usize]>,
    /// The union slots those flags read.
    needed: Needed,
}

/// Plans by the address of their first key.
type PlanSlots = ByAddress<Plan, 16>;

impl PlanSlots {
    /// The plan of exactly these key objects, if one was kept.
    #[inline]
    fn find(&self, keys: &Bound<'_, PyAny>) -> Option<&Plan> {
        let plan = self.slot(crate::ffi::first_item(keys)?).get()?;
        crate::ffi::same_items(keys, &plan.keys).then_some(plan)
    }

    fn remember(&self, plan: Plan) {
        if let Some(first) = plan.keys.first() {
            // Losing a race to another thread only means that thread's plan keeps the slot.
            let _ = self.slot(first.as_ptr()).set(plan);
        }
    }
}

/// No document has id 0 (the core numbers them from 1): an entry built from a snapshot, whose
/// id is not known, is never taken for the live document by `Inner::with_live`.
const UNKNOWN_ID: u64 = 0;

impl Entry {
    fn new(py: Python<'_>, document: Arc<Document>, document_id: u64) -> Entry {
        let fixed = document.flags().iter().map(|_| PyOnceLock::new()).collect();
        let reusable = document
            .flags()
            .iter()
            .map(|flag| flag.variants.iter().map(|_| reuse::Pool::new()).collect())
            .collect();
        Entry {
            document_id,
            cache: Arc::new(DocCache::new(py, document)),
            fixed,
            keys: KeySlots::new(),
            plans: PlanSlots::new(),
            all_plan: OnceLock::new(),
            reusable,
        }
    }

    #[inline]
    fn doc(&self) -> &Document {
        &self.cache.doc
    }

    /// The shared result for `outcome`, if it is one that does not depend on the unit.
    #[inline]
    fn fixed<'py>(
        &self,
        py: Python<'py>,
        outcome: &Outcome,
    ) -> PyResult<Option<Bound<'py, Variant>>> {
        let Some((flag_index, slot)) = fixed_slot(self.doc(), outcome) else {
            return Ok(None);
        };
        let (Some(flag), Some(slots)) = (
            self.doc().flags().get(flag_index),
            self.fixed.get(flag_index),
        ) else {
            return Ok(None);
        };
        let slots = slots.get_or_init(py, || {
            (0..flag.rules.len() + FIXED_EXTRA)
                .map(|_| PyOnceLock::new())
                .collect()
        });
        let Some(cell) = slots.get(slot) else {
            return Ok(None);
        };
        let shared = cell.get_or_try_init(py, || {
            let id = match self.cache.flag(py, flag_index) {
                Some(flag_cache) => flag_cache.variant_id(py, outcome.variant_index()),
                None => py.None(),
            };
            Py::new(py, Variant::found(Arc::clone(&self.cache), *outcome, id))
        })?;
        // The slot determines the outcome today; checking keeps a future decision kind that
        // shares a slot from ever returning someone else's result.
        if shared.get().outcome() != *outcome {
            return Ok(None);
        }
        Ok(Some(shared.bind(py).clone()))
    }

    /// A result object of `outcome`'s flag and variant that no one holds any more, given
    /// `outcome` (see `reuse.rs`).
    #[inline]
    fn reusable<'py>(
        &self,
        py: Python<'py>,
        outcome: &Outcome,
    ) -> PyResult<Option<Bound<'py, Variant>>> {
        let (Some(flag_index), Some(variant_index)) =
            (outcome.flag_index(), outcome.variant_index())
        else {
            return Ok(None);
        };
        let Some(pool) = self
            .reusable
            .get(flag_index)
            .and_then(|variants| variants.get(variant_index))
        else {
            return Ok(None);
        };
        pool.take(py, &self.cache, outcome, || {
            match self.cache.flag(py, flag_index) {
                Some(flag_cache) => flag_cache.variant_id(py, Some(variant_index)),
                None => py.None(),
            }
        })
    }
}

impl Entry {
    /// The result object of `outcome`: the shared one of a unit-independent outcome, a
    /// reusable one nobody holds any more, or a new one.
    #[inline(always)]
    fn result_of<'py>(
        &self,
        py: Python<'py>,
        outcome: Outcome,
        flag_cache: &crate::variant::FlagCache,
    ) -> PyResult<Bound<'py, Variant>> {
        if let Some(shared) = self.fixed(py, &outcome)? {
            return Ok(shared);
        }
        if let Some(reused) = self.reusable(py, &outcome)? {
            return Ok(reused);
        }
        let id = flag_cache.variant_id(py, outcome.variant_index());
        Bound::new(py, Variant::found(Arc::clone(&self.cache), outcome, id))
    }
}

/// The unit-independent results of one flag, by [`fixed_slot`].
type FixedResults = Box<[PyOnceLock<Py<Variant>>]>;

/// Slots after the rules: the default, then one per kill source.
const FIXED_EXTRA: usize = 5;

/// Where a unit-independent outcome is kept: `(flag index, slot)`.
#[inline]
fn fixed_slot(doc: &Document, outcome: &Outcome) -> Option<(usize, usize)> {
    let flag_index = outcome.flag_index()?;
    let rules = doc.flags().get(flag_index)?.rules.len();
    // A drawn shadow is per unit, and a budget's decision ends when the budget restores.
    if outcome.bucket().is_some() || outcome.shadow().is_some() || outcome.budget().is_some() {
        return None;
    }
    let slot = match (
        outcome.reason(),
        outcome.rule_index(),
        outcome.kill_source(),
    ) {
        // A `serve` rule always serves the same variant.
        (Reason::TargetingMatch, Some(rule), None) => rule,
        (Reason::Default, None, None) => rules,
        (Reason::Killed, None, Some(source)) => {
            rules
                + 1
                + match source {
                    KillSource::Document => 0,
                    KillSource::Flag => 1,
                    KillSource::LocalAll => 2,
                    KillSource::LocalFlag => 3,
                    // Names a guardrail and its trip time: not a shared result.
                    KillSource::Guardrail => return None,
                    // Names a budget that restores on its own: not a shared result either.
                    KillSource::Budget => return None,
                }
        }
        _ => return None,
    };
    Some((flag_index, slot))
}

impl Inner {
    pub(crate) fn new(py: Python<'_>, core: CoreFlags, poll_interval: Duration) -> Inner {
        let (id, document) = core.document_and_id();
        let entry = Entry::new(py, document, id);
        let exposing = core.exposures_enabled();
        Inner {
            core,
            entry: ArcSwap::from_pointee(entry),
            poll_interval,
            pins: PinStore::default(),
            fleet: FleetSlot::default(),
            overrides: Arc::default(),
            exposing,
        }
    }

    #[cold]
    fn refresh(&self, py: Python<'_>, snapshot: &Snapshot<'_>) -> Arc<Entry> {
        let document = Arc::clone(snapshot.document_arc());
        let fresh = Arc::new(Entry::new(py, document, UNKNOWN_ID));
        // Concurrent refreshes may store in any order; a stale store only costs another
        // refresh on the next call.
        self.entry.store(Arc::clone(&fresh));
        fresh
    }

    /// Runs `f` with the entry of exactly the snapshot's document.
    #[inline]
    fn with_entry<R>(
        &self,
        py: Python<'_>,
        snapshot: &Snapshot<'_>,
        f: impl FnOnce(&Entry) -> PyResult<R>,
    ) -> PyResult<R> {
        // Borrowed from the guard, not cloned: one atomic increment less per call.
        let guard = self.entry.load();
        if std::ptr::eq(guard.doc(), snapshot.document()) {
            f(&guard)
        } else {
            drop(guard);
            let fresh = self.refresh(py, snapshot);
            f(&fresh)
        }
    }

    /// Runs `f` with the entry of the live document and a snapshot over that document.
    ///
    /// The usual call reads the core's document id and this thread's [`RECENT_ENTRIES`], and
    /// nothing else: the snapshot borrows the entry's document instead of loading the core's,
    /// and the entry is not loaded from `self.entry` either — each of those loads is an atomic
    /// read-modify-write pair (taking and returning a slot), about as costly as the decision.
    #[inline]
    fn with_live<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Entry, &KeptSnapshot<'_>) -> PyResult<R>,
    ) -> PyResult<R> {
        let live_id = self.core.document_id();
        let mut f = Some(f);
        let hit = RECENT_ENTRIES.try_with(|recent| {
            // Borrowed for writing only by `with_live_slow`, never while Python code runs; a
            // failed borrow just takes the slow path.
            let recent = recent.try_borrow().ok()?;
            let entry = recent.iter().flatten().find(|e| e.document_id == live_id)?;
            let f = f.take()?;
            Some(f(entry, &self.core.snapshot_of(&entry.cache.doc)))
        });
        if let Ok(Some(result)) = hit {
            return result;
        }
        match f {
            Some(f) => self.with_live_slow(py, live_id, f),
            // `f` is only taken on a hit, which returned above.
            None => Err(PyRuntimeError::new_err(
                "flagrail: internal error (entry cache)",
            )),
        }
    }

    /// [`Inner::with_live`] when this thread has no entry of the live document: the handle's
    /// entry (refreshed if stale), remembered as this thread's most recent.
    #[cold]
    #[inline(never)]
    fn with_live_slow<R>(
        &self,
        py: Python<'_>,
        live_id: u64,
        f: impl FnOnce(&Entry, &KeptSnapshot<'_>) -> PyResult<R>,
    ) -> PyResult<R> {
        let entry = {
            let guard = self.entry.load();
            if guard.document_id == live_id {
                Arc::clone(&guard)
            } else {
                drop(guard);
                self.refresh_live(py)
            }
        };
        let evicted = RECENT_ENTRIES
            .try_with(|recent| {
                let mut recent = recent.try_borrow_mut().ok()?;
                let evicted = recent[1].take();
                recent[1] = recent[0].replace(Arc::clone(&entry));
                evicted
            })
            .ok()
            .flatten();
        // Dropped after the borrow ends (it frees Python objects).
        drop(evicted);
        let snapshot = self.core.snapshot_of(&entry.cache.doc);
        f(&entry, &snapshot)
    }

    #[cold]
    fn refresh_live(&self, py: Python<'_>) -> Arc<Entry> {
        let (id, document) = self.core.document_and_id();
        let fresh = Arc::new(Entry::new(py, document, id));
        // As in `refresh`: a stale store only costs another refresh.
        self.entry.store(Arc::clone(&fresh));
        fresh
    }

    /// One evaluation: the hot path of the package (entered from `fast.rs`).
    #[inline]
    pub(crate) fn variant<'py>(
        &self,
        py: Python<'py>,
        flag: &Bound<'py, PyString>,
        context: Option<&Bound<'py, PyAny>>,
        default: Option<&Bound<'py, PyString>>,
        at: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Variant>> {
        let source = Source::from_arg(context)?;
        let at = at.map(time::millis).transpose()?;
        let forced = self.overrides.forced(py, flag)?;
        self.with_live(py, |entry, snapshot| {
            let cache = &entry.cache;
            let index = entry.keys.get(flag).or_else(|| {
                // A key that is not valid UTF-8 (lone surrogates) cannot name a flag.
                let index = cache.doc.flag_position(flag.to_str().ok()?)?;
                entry.keys.remember(flag, index);
                Some(index)
            });
            let found = index.and_then(|index| {
                Some((index, cache.doc.flags().get(index)?, cache.flag(py, index)?))
            });
            let Some((index, flag_def, flag_cache)) = found else {
                return Bound::new(
                    py,
                    Variant::not_found(Arc::clone(&entry.cache), flag, default),
                );
            };
            if let Some(forced) = &forced {
                let result =
                    forced_result(py, entry, snapshot, index, flag_def, flag_cache, forced)?;
                if let Some(result) = result {
                    return Ok(result);
                }
            }
            // With exposures on, the unit and the segment label are read too.
            let (names, keys) = if self.exposing {
                (
                    &flag_def.run_attributes[..],
                    flag_cache.run_attr_keys(py, flag_def),
                )
            } else {
                (&flag_def.attributes[..], &flag_cache.attr_keys[..])
            };
            let outcome = with_declared(source, names, keys, |ctx| {
                self.outcome_of(py, snapshot, index, flag_def, ctx, at)
            })?;
            entry.result_of(py, outcome, flag_cache)
        })
    }

    /// The decision for flag `index` of the snapshot's document (`flag_def`): with the user's
    /// pin store, a sticky flag's pin is read, handed to the core and written back.
    #[inline(always)]
    fn outcome_of<C: flagrail_core::Context + ?Sized, D: Deref<Target = Arc<Document>>>(
        &self,
        py: Python<'_>,
        snapshot: &Snapshot<'_, D>,
        index: usize,
        flag_def: &flagrail_core::Flag,
        ctx: &C,
        at: Option<i64>,
    ) -> Outcome {
        if let Some(sticky) = &flag_def.sticky {
            if let Some(store) = self.pins.custom() {
                let read = PinStore::key_of(&flag_def.key, sticky, ctx)
                    .map(|key| self.pins.read(py, &store, key));
                let pin = read.as_ref().and_then(|r| r.pin.as_deref());
                let decision = snapshot.evaluate(
                    index,
                    ctx,
                    EvalOptions {
                        at,
                        pin: PinSource::Given(pin),
                        forced: None,
                    },
                );
                if let Some(read) = read.filter(|r| r.ok) {
                    if let Some(write) = pin_write(&decision, read.key) {
                        self.pins.write(py, &store, write);
                    }
                }
                return Outcome::from(decision);
            }
        }
        Outcome::from(snapshot.evaluate(
            index,
            ctx,
            EvalOptions {
                at,
                pin: PinSource::Memory,
                forced: None,
            },
        ))
    }

    /// Several flags for one context: the context is read once (only the attributes the
    /// requested flags use), every flag is decided on one snapshot of the document, and the
    /// results are those `variant` returns, by key in the order asked. `keys` `None`: every
    /// flag of the live document, in document order. A key that names no flag gives a
    /// `FLAG_NOT_FOUND` result (default `None`), as `variant` does; a repeated key is decided
    /// once.
    ///
    /// Lean on purpose (docs/benchmarks.md, Targets, bounds three flags at 1.5 × one
    /// `variant`): keys are resolved by object identity as in `variant` and kept on the stack
    /// (up to [`INLINE_KEYS`]), a key list seen before on this document reuses its [`Plan`],
    /// the union's needed attributes are read once into stack slots, and each flag reads its
    /// share through a [`Slotted`] view.
    pub(crate) fn variants<'py>(
        &self,
        py: Python<'py>,
        context: Option<&Bound<'py, PyAny>>,
        keys: Option<&Bound<'py, PyAny>>,
        at: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let source = Source::from_arg(context)?;
        let at = at.map(time::millis).transpose()?;
        // The entry and snapshot of `variant`'s path: no atomic read-modify-write per call.
        self.with_live(py, |entry, snapshot| {
            let cache = &entry.cache;
            let doc = &*cache.doc;
            // A key list seen before on this document (or `all()` after its first call): its
            // flags and attributes are known.
            let plan = match keys {
                Some(keys) => entry.plans.find(keys),
                None => entry.all_plan.get(),
            };
            if let Some(plan) = plan {
                let results = PyDict::new(py);
                with_union(source, cache.attr_keys(py), &plan.needed, |union| {
                    for (key, &index) in plan.keys.iter().zip(&plan.flags) {
                        let key = key.bind(py);
                        self.decide_into(
                            py,
                            entry,
                            snapshot,
                            union,
                            key,
                            Some(index),
                            at,
                            &results,
                        )?;
                    }
                    Ok::<_, PyErr>(())
                })??;
                return Ok(results);
            }
            let mut wanted = Wanted::default();
            let mut given = 0usize;
            match keys {
                Some(keys) => for_each_key(keys, |key| {
                    given += 1;
                    let index = entry.keys.get(&key).or_else(|| {
                        // A key that is not valid UTF-8 (lone surrogates) names no flag.
                        let index = doc.flag_position(key.to_str().ok()?)?;
                        entry.keys.remember(&key, index);
                        Some(index)
                    });
                    wanted.push(key, index);
                    Ok(())
                })?,
                None => {
                    for index in 0..doc.flags().len() {
                        if let Some(flag_cache) = cache.flag(py, index) {
                            // Distinct by construction: no repeat check (it is linear).
                            wanted.push_new(flag_cache.key().bind(py).clone(), Some(index));
                        }
                    }
                }
            }
            // The union slots the requested flags read: with exposures on, the unit and the
            // segment label too (the flags' `run_attributes`), as in `variant`.
            let mut needed = Needed::new(doc.attributes().len());
            for (_, index) in wanted.iter() {
                if let Some(flag_def) = index.and_then(|i| doc.flags().get(i)) {
                    needed.mark(if self.exposing {
                        &flag_def.run_attribute_slots
                    } else {
                        &flag_def.attribute_slots
                    });
                }
            }
            let attr_keys = cache.attr_keys(py);
            let results = PyDict::new(py);
            with_union(source, attr_keys, &needed, |union| -> PyResult<()> {
                for (key, index) in wanted.iter() {
                    self.decide_into(py, entry, snapshot, union, key, *index, at, &results)?;
                }
                Ok(())
            })??;
            // Keep the plan of `all()`, and of a list or tuple whose keys each name a flag once.
            let plan = || Plan {
                keys: wanted.iter().map(|(key, _)| key.clone().unbind()).collect(),
                flags: wanted.iter().filter_map(|(_, index)| *index).collect(),
                needed,
            };
            match keys {
                None => {
                    // Losing a race to another thread only means that thread's plan is kept.
                    let _ = entry.all_plan.set(plan());
                }
                Some(keys) => {
                    let planned = wanted.iter().count() == given
                        && wanted.iter().all(|(_, index)| index.is_some())
                        && crate::ffi::first_item(keys).is_some();
                    if planned {
                        entry.plans.remember(plan());
                    }
                }
            }
            Ok(results)
        })
    }

    /// One flag of a `variants()` call: `key`'s result (flag `index`, `None` for a key that
    /// names no flag) decided over the union's values and stored in `results`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn decide_into<'py>(
        &self,
        py: Python<'py>,
        entry: &Entry,
        snapshot: &KeptSnapshot<'_>,
        union: &[flagrail_core::Attr<'_>],
        key: &Bound<'py, PyString>,
        index: Option<usize>,
        at: Option<i64>,
        results: &Bound<'py, PyDict>,
    ) -> PyResult<()> {
        let cache = &entry.cache;
        let found = index.and_then(|i| Some((i, cache.doc.flags().get(i)?, cache.flag(py, i)?)));
        let Some((index, flag_def, flag_cache)) = found else {
            let missing = Variant::not_found(Arc::clone(cache), key, None);
            return results.set_item(key, Bound::new(py, missing)?);
        };
        // A test override open for this flag, as in `variant`.
        if let Some(forced) = self.overrides.forced(py, key)? {
            let result = forced_result(py, entry, snapshot, index, flag_def, flag_cache, &forced)?;
            if let Some(result) = result {
                return results.set_item(key, result);
            }
        }
        let ctx = if self.exposing {
            Slotted {
                names: &flag_def.run_attributes,
                slots: &flag_def.run_attribute_slots,
                values: union,
            }
        } else {
            Slotted {
                names: &flag_def.attributes,
                slots: &flag_def.attribute_slots,
                values: union,
            }
        };
        let outcome = self.outcome_of(py, snapshot, index, flag_def, &ctx, at);
        results.set_item(key, entry.result_of(py, outcome, flag_cache)?)
    }

    pub(crate) fn explain<'py>(
        &self,
        py: Python<'py>,
        flag: &Bound<'py, PyString>,
        context: Option<&Bound<'py, PyAny>>,
        at: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let source = Source::from_arg(context)?;
        let at = at.map(time::millis).transpose()?;
        // A key with lone surrogates names no flag; the explanation shows it with U+FFFD.
        let key = flag.to_string_lossy();
        let key = &*key;
        let snapshot = self.core.snapshot();
        let explanation = self.with_entry(py, &snapshot, |entry| {
            let cache = &entry.cache;
            let found = cache
                .doc
                .flag_position(key)
                .and_then(|i| Some((cache.doc.flags().get(i)?, cache.flag(py, i)?)));
            let (names, keys): (&[Box<str>], &[Py<PyString>]) = match found {
                Some((flag_def, flag_cache)) => (&flag_def.attributes, &flag_cache.attr_keys),
                None => (&[], &[]),
            };
            // A sticky flag with the user's pin store: the pin is read, nothing is written.
            let custom = found
                .and_then(|(flag_def, _)| flag_def.sticky.as_ref())
                .and_then(|sticky| Some((sticky, self.pins.custom()?)));
            // The same snapshot as the attribute names: a reload cannot slip in between.
            with_declared(source, names, keys, |ctx| match custom {
                Some((sticky, store)) => {
                    let read =
                        PinStore::key_of(key, sticky, ctx).map(|k| self.pins.read(py, &store, k));
                    let pin = read.as_ref().and_then(|r| r.pin.as_deref());
                    snapshot
                        .explain(
                            key,
                            ctx,
                            EvalOptions {
                                at,
                                pin: PinSource::Given(pin),
                                forced: None,
                            },
                        )
                        .to_value()
                }
                None => snapshot
                    .explain(
                        key,
                        ctx,
                        EvalOptions {
                            at,
                            pin: PinSource::Memory,
                            forced: None,
                        },
                    )
                    .to_value(),
            })
        })?;
        to_python(py, &explanation)
    }
}

/// A test override (`flags.override`) of flag `index` serves its variant whatever the
/// context; `None` when the overriding id names no variant of the flag. The shared results of
/// `fixed` are not used, so they never hold an overridden one.
#[cold]
fn forced_result<'py, D: Deref<Target = Arc<Document>>>(
    py: Python<'py>,
    entry: &Entry,
    snapshot: &Snapshot<'_, D>,
    index: usize,
    flag_def: &flagrail_core::Flag,
    flag_cache: &crate::variant::FlagCache,
    forced: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, Variant>>> {
    let variant = forced.to_str()?;
    if flag_def.variant_position(variant).is_none() {
        return Ok(None);
    }
    let options = EvalOptions {
        forced: Some(variant),
        ..EvalOptions::default()
    };
    let outcome = Outcome::from(snapshot.evaluate(index, &EmptyContext, options));
    if let Some(reused) = entry.reusable(py, &outcome)? {
        return Ok(Some(reused));
    }
    let id = flag_cache.variant_id(py, outcome.variant_index());
    Bound::new(py, Variant::found(Arc::clone(&entry.cache), outcome, id)).map(Some)
}

/// Keys `variants()` stores on the stack; more go to the heap.
const INLINE_KEYS: usize = 8;

/// The flags one `variants()` call decides: each key object with its flag index (`None`: no
/// such flag), in the order asked, each known flag once.
#[derive(Default)]
struct Wanted<'py> {
    inline: [Option<(Bound<'py, PyString>, Option<usize>)>; INLINE_KEYS],
    len: usize,
    heap: Vec<(Bound<'py, PyString>, Option<usize>)>,
}

impl<'py> Wanted<'py> {
    /// Adds `key` unless it names a flag already wanted (a repeated key is decided once; a
    /// repeated unknown key is one dict entry anyway). The check is linear in the keys so far:
    /// key lists are short (`all()`, which can be long, uses [`Wanted::push_new`]).
    #[inline]
    fn push(&mut self, key: Bound<'py, PyString>, index: Option<usize>) {
        if index.is_some() && self.iter().any(|(_, seen)| *seen == index) {
            return;
        }
        self.push_new(key, index);
    }

    /// Adds `key`, known not to repeat a flag already wanted.
    #[inline]
    fn push_new(&mut self, key: Bound<'py, PyString>, index: Option<usize>) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = Some((key, index));
                self.len += 1;
            }
            None => self.heap.push((key, index)),
        }
    }

    #[inline]
    fn iter(&self) -> impl Iterator<Item = &(Bound<'py, PyString>, Option<usize>)> {
        self.inline.iter().flatten().chain(&self.heap)
    }
}

/// For `runtime.rs` (`call`, trackers, events).
impl Inner {
    pub(crate) fn core(&self) -> &CoreFlags {
        &self.core
    }

    pub(crate) fn pins(&self) -> &PinStore {
        &self.pins
    }

    /// The Python objects of `document`: the live entry's when it is the live document.
    pub(crate) fn cache_for(&self, py: Python<'_>, document: &Arc<Document>) -> Arc<DocCache> {
        let guard = self.entry.load();
        if std::ptr::eq(guard.doc(), &**document) {
            return Arc::clone(&guard.cache);
        }
        drop(guard);
        let snapshot = self.core.snapshot();
        if std::ptr::eq(snapshot.document(), &**document) {
            return Arc::clone(&self.refresh(py, &snapshot).cache);
        }
        // A run that started just before a reload: its own cache, used once.
        Arc::new(DocCache::new(py, Arc::clone(document)))
    }
}

/// A fleet attachment: URL and options (to attach again in a forked child) and the state.
pub(crate) type FleetEntry = (
    String,
    flagrail_fleet::shared::FleetOptions,
    Arc<flagrail_fleet::shared::FleetState>,
);

/// The fleet state of one handle (`redis=URL`), if attached.
#[derive(Default)]
pub(crate) struct FleetSlot(Mutex<Option<FleetEntry>>);

impl FleetSlot {
    /// The slot itself, for attaching and for the fork handler.
    pub(crate) fn slot(&self) -> &Mutex<Option<FleetEntry>> {
        &self.0
    }

    pub(crate) fn get(&self) -> Option<Arc<flagrail_fleet::shared::FleetState>> {
        match self.0.lock() {
            Ok(slot) => slot.as_ref().map(|(_, _, fleet)| Arc::clone(fleet)),
            Err(poisoned) => poisoned
                .into_inner()
                .as_ref()
                .map(|(_, _, f)| Arc::clone(f)),
        }
    }

    /// Stops sharing (reports spend, returns leases). Idempotent.
    pub(crate) fn close(&self) {
        let taken = match self.0.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some((_, _, fleet)) = taken {
            fleet.close();
        }
    }
}

/// Every handle of this process, for holding their locks across `fork()` and restarting
/// their threads in the child (`crate::fork`). Held only for a push or a copy.
static HANDLES: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());

/// Tracks a new handle (every constructor of `Flags` calls this).
pub(crate) fn track(inner: Arc<Inner>) -> Arc<Inner> {
    // A push or a copy cannot leave the list half-updated: a poisoned lock is still usable.
    let mut list = HANDLES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    list.retain(|weak| weak.strong_count() > 0);
    list.push(Arc::downgrade(&inner));
    drop(list);
    inner
}

/// The registry of handles, locked.
pub(crate) type Registry = std::sync::MutexGuard<'static, Vec<Weak<Inner>>>;

/// The registry's lock if no other thread holds it (it never blocks a fork hook).
pub(crate) fn try_registry() -> Option<Registry> {
    flagrail_core::runtime::try_hold(&HANDLES)
}

/// The handles of `registry` still alive.
pub(crate) fn live_handles(registry: &Registry) -> Vec<Arc<Inner>> {
    registry.iter().filter_map(Weak::upgrade).collect()
}
