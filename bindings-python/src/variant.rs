//! `Variant`, the result of one evaluation, and the per-document cache behind it.
//!
//! A `Variant` is created on most `flags.variant(...)` calls (results that do not depend on the
//! unit are shared, see `live.rs`), so it is made of indices: the document cache it came from
//! plus the decision's flag/variant/rule indices, reason and bucket, and the variant id. Every
//! Python object it hands out (variant id, flag key, revision, payload mapping) is created once
//! per document and shared: reading `v.id` is a struct-member read, `v["model"]` one dict
//! lookup. Payloads are converted on first use and frozen (read-only mappings and tuples)
//! because every caller shares them.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flagrail_core::cache_key::{cache_key, KeyPart};
use flagrail_core::document::budget::BudgetRef;
use flagrail_core::evaluate::budget_of;
use flagrail_core::{Decision, Document, Error as CoreError, KillSource, Reason};
use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyInt, PyMapping, PyMappingProxy, PyString, PyTuple};

use crate::convert::{frozen_dict, to_frozen, to_python};
use crate::error::{invalid_argument, to_py_err};

/// Python objects for one document, built lazily flag by flag.
///
/// (Measured: holding it as a Python object, `Py<DocCache>`, instead of an `Arc` makes every
/// evaluation slower: dropping a `Py` outside a `Bound` checks a thread-local.)
pub(crate) struct DocCache {
    pub(crate) doc: Arc<Document>,
    revision: Py<PyString>,
    flags: Box<[PyOnceLock<FlagCache>]>,
    /// `Document::attributes` (every flag's, each once) as interned Python strings: the
    /// context lookup keys of `variants()` and `all()`, created on first use.
    attr_keys: PyOnceLock<Box<[Py<PyString>]>>,
}

/// Python objects for one flag of a document.
pub(crate) struct FlagCache {
    key: Py<PyString>,
    /// `Flag::attributes` as interned Python strings: the context lookup keys.
    pub(crate) attr_keys: Box<[Py<PyString>]>,
    /// `Flag::run_attributes` as interned Python strings: the lookup keys of a read on a handle
    /// with exposures on (the unit and the segment label too), created on first use.
    run_attr_keys: PyOnceLock<Box<[Py<PyString>]>>,
    variant_ids: Box<[Py<PyString>]>,
    rule_ids: Box<[Py<PyString>]>,
    payloads: Box<[PyOnceLock<Payload>]>,
}

/// A variant's payload as Python sees it.
struct Payload {
    /// What `.payload` returns: a read-only mapping for an object payload (the usual case),
    /// otherwise the frozen value itself (a string, a number, a tuple …).
    value: Py<PyAny>,
    /// The dict behind the mapping, for `v[key]` without going through the proxy.
    dict: Option<Py<PyDict>>,
}

impl FlagCache {
    /// The flag's key, interned.
    pub(crate) fn key(&self) -> &Py<PyString> {
        &self.key
    }

    /// `flag.run_attributes` (this cache's flag) as interned Python strings.
    pub(crate) fn run_attr_keys(
        &self,
        py: Python<'_>,
        flag: &flagrail_core::Flag,
    ) -> &[Py<PyString>] {
        self.run_attr_keys.get_or_init(py, || {
            flag.run_attributes
                .iter()
                .map(|name| PyString::intern(py, name).unbind())
                .collect()
        })
    }

    /// The interned id of variant `index` (`None` for an index that does not exist, which a
    /// decision never produces).
    #[inline]
    pub(crate) fn variant_id(&self, py: Python<'_>, index: Option<usize>) -> Py<PyAny> {
        match index.and_then(|i| self.variant_ids.get(i)) {
            Some(id) => id.clone_ref(py).into_any(),
            None => py.None(),
        }
    }
}

impl DocCache {
    pub(crate) fn new(py: Python<'_>, doc: Arc<Document>) -> DocCache {
        let flags = doc.flags().iter().map(|_| PyOnceLock::new()).collect();
        DocCache {
            revision: PyString::new(py, doc.revision()).unbind(),
            flags,
            attr_keys: PyOnceLock::new(),
            doc,
        }
    }

    /// `Document::attributes` as interned Python strings.
    pub(crate) fn attr_keys(&self, py: Python<'_>) -> &[Py<PyString>] {
        self.attr_keys.get_or_init(py, || {
            self.doc
                .attributes()
                .iter()
                .map(|name| PyString::intern(py, name).unbind())
                .collect()
        })
    }

    /// The Python objects of flag `index`, created on first use.
    pub(crate) fn flag(&self, py: Python<'_>, index: usize) -> Option<&FlagCache> {
        let flag = self.doc.flags().get(index)?;
        let cell = self.flags.get(index)?;
        Some(cell.get_or_init(py, || {
            FlagCache {
                key: PyString::intern(py, &flag.key).unbind(),
                attr_keys: flag
                    .attributes
                    .iter()
                    .map(|name| PyString::intern(py, name).unbind())
                    .collect(),
                variant_ids: flag
                    .variants
                    .iter()
                    .map(|v| PyString::intern(py, &v.id).unbind())
                    .collect(),
                rule_ids: flag
                    .rules
                    .iter()
                    .map(|r| PyString::new(py, &r.id).unbind())
                    .collect(),
                payloads: flag.variants.iter().map(|_| PyOnceLock::new()).collect(),
                run_attr_keys: PyOnceLock::new(),
            }
        }))
    }

    fn payload(
        &self,
        py: Python<'_>,
        flag_index: usize,
        variant_index: usize,
    ) -> PyResult<Option<&Payload>> {
        let (Some(cache), Some(variant)) = (
            self.flag(py, flag_index),
            self.doc
                .flags()
                .get(flag_index)
                .and_then(|f| f.variants.get(variant_index)),
        ) else {
            return Ok(None);
        };
        let Some(cell) = cache.payloads.get(variant_index) else {
            return Ok(None);
        };
        cell.get_or_try_init(py, || match &*variant.payload {
            serde_json::Value::Object(map) => {
                let dict = frozen_dict(py, map)?;
                let proxy = PyMappingProxy::new(py, dict.cast::<PyMapping>()?);
                Ok(Payload {
                    value: proxy.into_any().unbind(),
                    dict: Some(dict.unbind()),
                })
            }
            other => Ok(Payload {
                value: to_frozen(py, other)?.unbind(),
                dict: None,
            }),
        })
        .map(Some)
    }
}

/// What a decision chose, as indices into the document, packed into four words.
///
/// Packed because one is written into every `Variant`, and written again when a result object
/// is reused (see `live.rs`): four whole words are stored and read back with the same widths,
/// which the CPU forwards from store to load (a struct of narrower fields read back wider
/// stalls on every call), and they fit [`SharedOutcome`]'s atomics.
///
/// - word 0: flag index | variant index << 32
/// - word 1: rule index | bucket << 32
/// - word 2: shadow variant index | budget << 32 (see [`pack_budget`])
/// - word 3: reason code | has bucket << 8 | kill source code << 16 | is shadow << 24 (the
///   core's codes, `flagrail_core::codes`; kill source 0 is none)
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome([u64; 4]);

/// "No index" in a packed field (a 16 MiB document cannot hold 2^32 flags, variants or rules).
const NONE: u32 = u32::MAX;

#[inline]
fn pack(index: Option<usize>) -> u32 {
    index.and_then(|i| u32::try_from(i).ok()).unwrap_or(NONE)
}

#[inline]
fn unpack(index: u32) -> Option<usize> {
    (index != NONE).then_some(index as usize)
}

#[inline]
fn pair(low: u32, high: u32) -> u64 {
    u64::from(low) | u64::from(high) << 32
}

#[inline]
fn low(word: u64) -> u32 {
    word as u32
}

#[inline]
fn high(word: u64) -> u32 {
    (word >> 32) as u32
}

/// The bit that marks a document-wide budget in the packed budget.
const DOCUMENT_BUDGET: u32 = 1 << 31;

#[inline]
fn pack_budget(budget: Option<BudgetRef>) -> u32 {
    let packed = match budget {
        None => return NONE,
        Some(BudgetRef::Flag(i)) => Some(i).filter(|&i| i < DOCUMENT_BUDGET),
        Some(BudgetRef::Document(i)) => Some(i)
            .filter(|&i| i < DOCUMENT_BUDGET - 1)
            .map(|i| i | DOCUMENT_BUDGET),
    };
    packed.unwrap_or(NONE)
}

#[inline]
fn unpack_budget(packed: u32) -> Option<BudgetRef> {
    match packed {
        NONE => None,
        p if p & DOCUMENT_BUDGET != 0 => Some(BudgetRef::Document(p & !DOCUMENT_BUDGET)),
        p => Some(BudgetRef::Flag(p)),
    }
}

const HAS_BUCKET: u64 = 1 << 8;
const IS_SHADOW: u64 = 1 << 24;

#[inline]
fn pack_flags(
    reason: Reason,
    has_bucket: bool,
    kill_source: Option<KillSource>,
    is_shadow: bool,
) -> u64 {
    let reason = u64::from(reason.code());
    let kill = u64::from(KillSource::optional_code(kill_source));
    reason
        | if has_bucket { HAS_BUCKET } else { 0 }
        | kill << 16
        | if is_shadow { IS_SHADOW } else { 0 }
}

impl Outcome {
    pub(crate) fn not_found() -> Outcome {
        Outcome([
            pair(NONE, NONE),
            pair(NONE, 0),
            pair(NONE, NONE),
            pack_flags(Reason::FlagNotFound, false, None, false),
        ])
    }

    #[inline]
    pub(crate) fn flag_index(&self) -> Option<usize> {
        unpack(low(self.0[0]))
    }

    #[inline]
    pub(crate) fn variant_index(&self) -> Option<usize> {
        unpack(high(self.0[0]))
    }

    #[inline]
    pub(crate) fn rule_index(&self) -> Option<usize> {
        unpack(low(self.0[1]))
    }

    #[inline]
    pub(crate) fn bucket(&self) -> Option<u32> {
        (self.0[3] & HAS_BUCKET != 0).then_some(high(self.0[1]))
    }

    #[inline]
    pub(crate) fn reason(&self) -> Reason {
        // Only `pack_flags` writes this byte: a reason code, so the fallback is never taken.
        Reason::from_code(self.0[3] as u8).unwrap_or(Reason::FlagNotFound)
    }

    #[inline]
    pub(crate) fn kill_source(&self) -> Option<KillSource> {
        KillSource::from_code((self.0[3] >> 16) as u8)
    }

    /// The shadow variant drawn for this decision.
    #[inline]
    pub(crate) fn shadow(&self) -> Option<usize> {
        unpack(low(self.0[2]))
    }

    /// The budget that decided (reason `BUDGET`, or `KILLED` by a budget).
    #[inline]
    pub(crate) fn budget(&self) -> Option<BudgetRef> {
        unpack_budget(high(self.0[2]))
    }

    /// Whether this is the variant of a shadow call.
    #[inline]
    pub(crate) fn is_shadow(&self) -> bool {
        self.0[3] & IS_SHADOW != 0
    }

    /// The same outcome, marked as the variant of a shadow call.
    pub(crate) fn as_shadow(mut self) -> Outcome {
        self.0[3] |= IS_SHADOW;
        self
    }
}

impl From<Decision<'_>> for Outcome {
    #[inline]
    fn from(d: Decision<'_>) -> Outcome {
        Outcome([
            pair(pack(d.flag_index), pack(d.variant_index)),
            pair(pack(d.rule_index), d.bucket.unwrap_or(0)),
            pair(pack(d.shadow), pack_budget(d.budget)),
            pack_flags(d.reason, d.bucket.is_some(), d.kill_source, false),
        ])
    }
}

/// An [`Outcome`] that a result object can be given again when it is reused: relaxed atomics,
/// because a reused object is by construction seen by no one else while it is rewritten (see
/// `reuse.rs`); the atomics only make that sharing expressible in safe Rust.
pub(crate) struct SharedOutcome([AtomicU64; 4]);

impl SharedOutcome {
    fn new(outcome: Outcome) -> SharedOutcome {
        SharedOutcome(outcome.0.map(AtomicU64::new))
    }

    #[inline]
    fn load(&self) -> Outcome {
        Outcome(std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed)))
    }

    #[inline]
    fn store(&self, outcome: &Outcome) {
        for (word, value) in self.0.iter().zip(outcome.0) {
            word.store(value, Ordering::Relaxed);
        }
    }
}

/// The variant of a flag that one context gets, and why.
///
/// Returned by ``Flags.variant()`` and ``Flag.variant()``; never constructed directly.
/// Immutable, hashable and comparable. Item access reads the payload: ``v["model"]``,
/// ``v.get("temperature", 0.7)``.
#[pyclass(frozen, freelist = 256, mapping, module = "flagrail", name = "Variant")]
pub struct Variant {
    /// The variant id (``"control"``, ``"v2.2"`` …); the caller's ``default`` when the flag
    /// does not exist (``reason == "FLAG_NOT_FOUND"``), which is ``None`` unless one was given.
    // A struct member rather than a getter: reading `v.id` is the most common thing done with
    // a result, and a member is read by the interpreter without calling into Rust.
    #[pyo3(get)]
    id: Py<PyAny>,
    cache: Arc<DocCache>,
    /// Read through [`Variant::outcome`].
    shared_outcome: SharedOutcome,
    /// Only for an unknown flag (``FLAG_NOT_FOUND``): the key that was asked for.
    requested: Option<Py<PyString>>,
}

impl Variant {
    /// The result for a flag that exists; `id` is the chosen variant's interned id.
    #[inline]
    pub(crate) fn found(cache: Arc<DocCache>, outcome: Outcome, id: Py<PyAny>) -> Variant {
        Variant {
            id,
            cache,
            shared_outcome: SharedOutcome::new(outcome),
            requested: None,
        }
    }

    /// The result for an unknown flag: the caller's key and default are kept for `flag`/`id`.
    pub(crate) fn not_found(
        cache: Arc<DocCache>,
        requested: &Bound<'_, PyString>,
        default: Option<&Bound<'_, PyString>>,
    ) -> Variant {
        let py = requested.py();
        Variant {
            id: default.map_or_else(|| py.None(), |d| d.clone().into_any().unbind()),
            cache,
            shared_outcome: SharedOutcome::new(Outcome::not_found()),
            requested: Some(requested.clone().unbind()),
        }
    }

    #[inline]
    pub(crate) fn outcome(&self) -> Outcome {
        self.shared_outcome.load()
    }

    /// Gives this result object a new outcome of the same flag and variant; `false` (and
    /// nothing written) for an outcome of another flag or variant, whose id would be wrong.
    ///
    /// Only for an object no one else can see: `reuse.rs` is the one caller, and its module
    /// docs say why that holds.
    #[inline]
    pub(crate) fn reuse_for(&self, outcome: &Outcome) -> bool {
        let current = self.outcome();
        if current.flag_index() != outcome.flag_index()
            || current.variant_index() != outcome.variant_index()
        {
            return false;
        }
        self.shared_outcome.store(outcome);
        true
    }

    /// The document cache this result came from (trackers rebuild the evaluation from it).
    pub(crate) fn cache(&self) -> &Arc<DocCache> {
        &self.cache
    }

    fn flag_cache(&self, py: Python<'_>) -> Option<&FlagCache> {
        self.cache.flag(py, self.outcome().flag_index()?)
    }

    fn id_str(&self, py: Python<'_>) -> Option<String> {
        self.id
            .bind(py)
            .cast::<PyString>()
            .ok()
            .and_then(|s| s.to_str().ok().map(str::to_string))
    }

    fn flag_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        match (self.flag_cache(py), &self.requested) {
            (Some(cache), _) => cache.key.bind(py).clone(),
            (None, Some(requested)) => requested.bind(py).clone(),
            (None, None) => PyString::new(py, ""),
        }
    }

    fn rule_id_str(&self) -> Option<&str> {
        let flag = self.cache.doc.flags().get(self.outcome().flag_index()?)?;
        Some(&flag.rules.get(self.outcome().rule_index()?)?.id)
    }

    fn flag_def(&self) -> Option<&flagrail_core::Flag> {
        self.cache.doc.flags().get(self.outcome().flag_index()?)
    }

    /// The id of the shadow variant drawn for this decision.
    fn shadow_id(&self) -> Option<&str> {
        Some(&self.flag_def()?.variants.get(self.outcome().shadow()?)?.id)
    }

    /// The id of the budget that decided.
    fn budget_id(&self) -> Option<&str> {
        let budget = budget_of(&self.cache.doc, self.flag_def(), self.outcome().budget()?)?;
        Some(&budget.id)
    }

    fn payload_entry(&self, py: Python<'_>) -> PyResult<Option<&Payload>> {
        match (self.outcome().flag_index(), self.outcome().variant_index()) {
            (Some(flag), Some(variant)) => self.cache.payload(py, flag, variant),
            _ => Ok(None),
        }
    }

    /// The fields that identify a result, for equality and hashing.
    fn identity(&self, py: Python<'_>) -> (String, String, Option<String>, &'static str) {
        (
            self.cache.doc.revision().to_string(),
            self.flag_key(py).to_string(),
            self.id_str(py),
            self.outcome().reason().as_str(),
        )
    }
}

fn reason_str<'py>(py: Python<'py>, reason: Reason) -> &'py Bound<'py, PyString> {
    // `intern!` keeps one Python string per call site, so each reason is created once.
    match reason {
        Reason::FlagNotFound => intern!(py, "FLAG_NOT_FOUND"),
        Reason::Killed => intern!(py, "KILLED"),
        Reason::Guardrail => intern!(py, "GUARDRAIL"),
        Reason::Sticky => intern!(py, "STICKY"),
        Reason::Budget => intern!(py, "BUDGET"),
        Reason::TargetingMatch => intern!(py, "TARGETING_MATCH"),
        Reason::Split => intern!(py, "SPLIT"),
        Reason::Default => intern!(py, "DEFAULT"),
    }
}

#[pymethods]
impl Variant {
    /// The flag key that was evaluated.
    #[getter]
    fn flag<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        self.flag_key(py)
    }

    /// The variant's payload (model, prompt, parameters …) as a read-only mapping.
    ///
    /// Nested objects are read-only mappings and arrays are tuples. Converted once per document
    /// and shared by every result. A non-object payload (``true``, ``"gpt"``, ``3``) is returned
    /// as is; an unknown flag (``FLAG_NOT_FOUND``) has ``None``, as in Node, the CLI and
    /// docs/flag-document.md.
    #[getter]
    fn payload(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.payload_entry(py)? {
            Some(payload) => Ok(payload.value.clone_ref(py)),
            None => Ok(py.None()),
        }
    }

    /// Why this variant was chosen: one of ``FLAG_NOT_FOUND``, ``KILLED``, ``GUARDRAIL``,
    /// ``STICKY``, ``BUDGET``, ``TARGETING_MATCH``, ``SPLIT``, ``DEFAULT``.
    #[getter]
    fn reason<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        reason_str(py, self.outcome().reason()).clone()
    }

    /// The OpenFeature resolution reason of this decision (``flagrail.openfeature`` and the
    /// OpenTelemetry spans read it; not public API): the core's table, where the default of a
    /// flag without rules reads ``STATIC``.
    #[getter]
    fn _open_feature_reason(&self) -> &'static str {
        let outcome = self.outcome();
        let has_rules = outcome
            .flag_index()
            .and_then(|index| self.cache.doc.flags().get(index))
            .is_none_or(|flag| !flag.rules.is_empty());
        flagrail_core::codes::open_feature_reason(outcome.reason(), has_rules)
    }

    /// The id of the rule that decided, or ``None`` (default, kill, unknown flag).
    #[getter]
    fn rule_id(&self, py: Python<'_>) -> Option<Py<PyString>> {
        let cache = self.flag_cache(py)?;
        cache
            .rule_ids
            .get(self.outcome().rule_index()?)
            .map(|s| s.clone_ref(py))
    }

    /// The unit's bucket when a split or ramp decided (over the split's total weight, or
    /// 100000 for percentages), else ``None``.
    #[getter]
    fn bucket(&self) -> Option<u32> {
        self.outcome().bucket()
    }

    /// The revision of the flag document that made this decision.
    #[getter]
    fn revision(&self, py: Python<'_>) -> Py<PyString> {
        self.cache.revision.clone_ref(py)
    }

    /// Which kill switch is in force when ``reason == "KILLED"``: ``"document"``, ``"flag"``,
    /// ``"local-all"``, ``"local-flag"``, ``"guardrail"`` or ``"budget"``; otherwise ``None``.
    #[getter]
    fn kill_source(&self) -> Option<&'static str> {
        self.outcome().kill_source().map(KillSource::as_str)
    }

    /// The id of the shadow variant drawn for this decision (the flag's ``shadow`` runs it
    /// beside the served call in ``Flags.call``), or ``None``.
    #[getter]
    fn shadow(&self) -> Option<&str> {
        self.shadow_id()
    }

    /// The id of the budget that decided: for reason ``BUDGET``, or ``KILLED`` by an
    /// exhausted budget (``kill_source == "budget"``); otherwise ``None``.
    #[getter]
    fn budget(&self) -> Option<&str> {
        self.budget_id()
    }

    /// ``True`` only for the variant handed to the function of a shadow call (its result is
    /// recorded, never served).
    #[getter]
    fn is_shadow(&self) -> bool {
        self.outcome().is_shadow()
    }

    /// A cache key for a response of this variant: ``flagrail:v1:<flag>:<variant>:<payload
    /// hash>``, plus a hash of ``parts`` when given (the prompt, the user …).
    ///
    /// Editing the variant's payload (model, prompt, parameters) changes its keys, and two
    /// variants never share a key, so a cached answer is never served for another variant.
    /// The same in every language (tests/vectors/v1/cache-keys.json).
    ///
    /// Args:
    ///     parts: Strings and integers (an integer is its decimal text; ``bool`` is refused).
    ///
    /// Raises:
    ///     TypeError: A part is neither a str nor an int.
    ///     InvalidArgumentError: An int part is outside the 64-bit signed range.
    ///     FlagNotFoundError: The result is of an unknown flag (it has no payload).
    #[pyo3(signature = (*parts))]
    fn cache_key(&self, py: Python<'_>, parts: &Bound<'_, PyTuple>) -> PyResult<String> {
        let held: Vec<Bound<'_, PyAny>> = parts.iter().collect();
        let mut key_parts: Vec<KeyPart<'_>> = Vec::with_capacity(held.len());
        for part in &held {
            if let Ok(text) = part.cast::<PyString>() {
                key_parts.push(KeyPart::Text(text.to_str()?));
            } else if part.cast::<PyInt>().is_ok() && part.cast::<PyBool>().is_err() {
                let int = part.extract::<i64>().map_err(|_| {
                    invalid_argument(py, "cache_key: an int part must fit in 64 signed bits")
                })?;
                key_parts.push(KeyPart::Int(int));
            } else {
                return Err(PyTypeError::new_err(format!(
                    "cache_key parts must be str or int, not {}",
                    part.get_type().name()?
                )));
            }
        }
        let variant = self
            .flag_def()
            .and_then(|f| Some((f, f.variants.get(self.outcome().variant_index()?)?)));
        match variant {
            Some((flag, variant)) => Ok(cache_key(
                &flag.key,
                &variant.id,
                &variant.payload_hash,
                &key_parts,
            )),
            None => Err(to_py_err(
                py,
                &CoreError::FlagNotFound {
                    flag: self.flag_key(py).to_string_lossy().into_owned(),
                },
            )),
        }
    }

    /// ``v["model"]``: a payload field. Raises ``KeyError`` when the payload has no such field
    /// (or is not an object).
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some(Payload {
            dict: Some(dict), ..
        }) = self.payload_entry(py)?
        {
            if let Some(value) = dict.bind(py).get_item(key)? {
                return Ok(value);
            }
        }
        Err(PyKeyError::new_err(key.clone().unbind()))
    }

    /// ``v.get("temperature", 0.7)``: a payload field, or ``default`` when it is absent.
    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        if let Some(Payload {
            dict: Some(dict), ..
        }) = self.payload_entry(py)?
        {
            if let Some(value) = dict.bind(py).get_item(key)? {
                return Ok(Some(value));
            }
        }
        Ok(default)
    }

    /// The result as a new plain dict (payload copied as plain dicts and lists), ready for JSON
    /// logs: ``flag``, ``variant``, ``payload``, ``reason``, ``rule_id``, ``bucket``, ``revision``,
    /// ``kill_source``, ``budget``, ``shadow``.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        out.set_item("flag", self.flag_key(py))?;
        out.set_item("variant", self.id.bind(py))?;
        let payload = match (self.outcome().flag_index(), self.outcome().variant_index()) {
            (Some(f), Some(v)) => match self
                .cache
                .doc
                .flags()
                .get(f)
                .and_then(|f| f.variants.get(v))
            {
                Some(variant) => to_python(py, &variant.payload)?,
                None => py.None().into_bound(py),
            },
            _ => py.None().into_bound(py),
        };
        out.set_item("payload", payload)?;
        out.set_item("reason", self.outcome().reason().as_str())?;
        out.set_item("rule_id", self.rule_id_str())?;
        out.set_item("bucket", self.outcome().bucket())?;
        out.set_item("revision", self.cache.revision.bind(py))?;
        out.set_item("kill_source", self.kill_source())?;
        out.set_item("budget", self.budget_id())?;
        out.set_item("shadow", self.shadow_id())?;
        Ok(out)
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, Variant>) -> bool {
        let other = other.get();
        self.identity(py) == other.identity(py)
            && self.rule_id_str() == other.rule_id_str()
            && self.outcome().bucket() == other.outcome().bucket()
            && self.outcome().kill_source() == other.outcome().kill_source()
            && self.budget_id() == other.budget_id()
            && self.shadow_id() == other.shadow_id()
            && self.outcome().is_shadow() == other.outcome().is_shadow()
    }

    fn __hash__(&self, py: Python<'_>) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.identity(py).hash(&mut hasher);
        self.rule_id_str().hash(&mut hasher);
        self.outcome().bucket().hash(&mut hasher);
        hasher.finish()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut out = format!(
            "Variant(flag={}, id={}, reason={}",
            self.flag_key(py).repr()?,
            self.id.bind(py).repr()?,
            reason_str(py, self.outcome().reason()).repr()?,
        );
        if let Some(rule) = self.rule_id_str() {
            out.push_str(&format!(", rule_id={}", py_repr(py, rule)?));
        }
        if let Some(bucket) = self.outcome().bucket() {
            out.push_str(&format!(", bucket={bucket}"));
        }
        if let Some(source) = self.outcome().kill_source() {
            out.push_str(&format!(", kill_source={}", py_repr(py, source.as_str())?));
        }
        if let Some(budget) = self.budget_id() {
            out.push_str(&format!(", budget={}", py_repr(py, budget)?));
        }
        if let Some(shadow) = self.shadow_id() {
            out.push_str(&format!(", shadow={}", py_repr(py, shadow)?));
        }
        if self.outcome().is_shadow() {
            out.push_str(", is_shadow=True");
        }
        out.push_str(&format!(
            ", revision={})",
            self.cache.revision.bind(py).repr()?
        ));
        Ok(out)
    }
}

/// Python's `repr` of a string (quotes and escapes as Python prints them).
pub(crate) fn py_repr(py: Python<'_>, text: &str) -> PyResult<String> {
    Ok(PyString::new(py, text).repr()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagrail_core::evaluate::PinEffect;
    use flagrail_core::Choice;

    fn decision(reason: Reason) -> Decision<'static> {
        Decision {
            flag: None,
            choice: Choice {
                flag_index: Some(3),
                variant_index: Some(1),
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

    #[test]
    fn every_reason_and_kill_source_survives_packing() {
        for reason in Reason::ALL {
            assert_eq!(Outcome::from(decision(reason)).reason(), reason);
        }
        for source in KillSource::ALL {
            let outcome = Outcome::from(Decision {
                choice: Choice {
                    kill_source: Some(source),
                    ..decision(Reason::Killed).choice
                },
                ..decision(Reason::Killed)
            });
            assert_eq!(outcome.kill_source(), Some(source));
            assert_eq!(outcome.reason(), Reason::Killed);
        }
        assert_eq!(Outcome::from(decision(Reason::Default)).kill_source(), None);
    }

    #[test]
    fn indices_bucket_shadow_and_budget_survive_packing() {
        let biggest = u32::MAX as usize - 1;
        let d = Decision {
            choice: Choice {
                flag_index: Some(biggest),
                variant_index: Some(biggest),
                rule_index: Some(biggest),
                bucket: Some(u32::MAX),
                shadow: Some(biggest),
                budget: Some(BudgetRef::Document(DOCUMENT_BUDGET - 2)),
                ..decision(Reason::Split).choice
            },
            ..decision(Reason::Split)
        };
        let outcome = Outcome::from(d);
        assert_eq!(outcome.flag_index(), Some(biggest));
        assert_eq!(outcome.variant_index(), Some(biggest));
        assert_eq!(outcome.rule_index(), Some(biggest));
        assert_eq!(outcome.bucket(), Some(u32::MAX));
        assert_eq!(outcome.shadow(), Some(biggest));
        assert_eq!(
            outcome.budget(),
            Some(BudgetRef::Document(DOCUMENT_BUDGET - 2))
        );
        assert!(!outcome.is_shadow());
        assert!(outcome.as_shadow().is_shadow());
        assert_eq!(outcome.as_shadow().reason(), Reason::Split);

        // A bucket of 0 is a bucket; no bucket is none.
        let zero = Outcome::from(Decision {
            choice: Choice {
                bucket: Some(0),
                ..decision(Reason::Split).choice
            },
            ..decision(Reason::Split)
        });
        assert_eq!(zero.bucket(), Some(0));
        assert_eq!(Outcome::from(decision(Reason::Default)).bucket(), None);
    }

    #[test]
    fn budgets_pack_by_scope_and_refuse_what_does_not_fit() {
        for budget in [
            BudgetRef::Flag(0),
            BudgetRef::Flag(DOCUMENT_BUDGET - 1),
            BudgetRef::Document(0),
            BudgetRef::Document(DOCUMENT_BUDGET - 2),
        ] {
            assert_eq!(unpack_budget(pack_budget(Some(budget))), Some(budget));
        }
        assert_eq!(unpack_budget(pack_budget(None)), None);
        assert_eq!(
            unpack_budget(pack_budget(Some(BudgetRef::Flag(DOCUMENT_BUDGET)))),
            None
        );
        assert_eq!(
            unpack_budget(pack_budget(Some(BudgetRef::Document(DOCUMENT_BUDGET - 1)))),
            None
        );
    }

    #[test]
    fn indices_that_do_not_fit_read_as_none() {
        assert_eq!(unpack(pack(Some(u32::MAX as usize))), None);
        assert_eq!(unpack(pack(None)), None);
        assert_eq!(unpack(pack(Some(0))), Some(0));
    }

    #[test]
    fn not_found_has_no_indices() {
        let outcome = Outcome::not_found();
        assert_eq!(outcome.reason(), Reason::FlagNotFound);
        assert_eq!(
            (
                outcome.flag_index(),
                outcome.variant_index(),
                outcome.rule_index()
            ),
            (None, None, None)
        );
        assert_eq!(
            (outcome.bucket(), outcome.shadow(), outcome.budget()),
            (None, None, None)
        );
        assert_eq!(outcome.kill_source(), None);
    }

    #[test]
    fn a_shared_outcome_stores_and_loads_whole() {
        let first = Outcome::from(decision(Reason::Default));
        let second = Outcome::from(Decision {
            choice: Choice {
                bucket: Some(42),
                rule_index: Some(2),
                ..decision(Reason::Split).choice
            },
            ..decision(Reason::Split)
        });
        let shared = SharedOutcome::new(first);
        assert!(shared.load() == first);
        shared.store(&second);
        assert!(shared.load() == second);
    }
}
