//! The evaluation hot path as raw Node-API callbacks, and the one reader of JS attribute values.
//!
//! This is the only module of the crate that uses `unsafe` (the workspace denies it; this
//! module opts out), and only to call Node-API directly. Why: through napi-rs 3.16's generated
//! glue, a function with arguments pays ~85 ns before its body runs, a `#[napi]` class method
//! ~250 ns, and a `String` argument ~75 ns more (a length query, a heap allocation, a copy) —
//! together well over the 250 ns budget of one `flags.variant(...)`. Here one call costs one
//! `napi_get_cb_info`, one `napi_get_value_string_utf8` per string straight into a stack
//! buffer, and one `napi_create_double` for the packed result (measured: ~165 ns per
//! `flags.variant(...)` in bench/node_eval.mjs, against ~700 ns through the generated glue).
//!
//! Every `unsafe` block is a Node-API call made on the JS thread that invoked the callback,
//! with the `env` and handles Node passed to it, and out-pointers to live locals: the contract
//! of Node-API itself. The one pointer Node hands back that is written through is the data of
//! the runtime's private result array ([`write_out`]). Panics are caught before they reach
//! the `extern "C"` boundary (they would abort the process otherwise).
//!
//! Value mapping (the same for every entry point, and the same as the Python binding and the
//! core's `attr_from_json`):
//!
//! | JS                                              | Attr                    |
//! |-------------------------------------------------|-------------------------|
//! | string                                          | `Str`                   |
//! | number with `Number.isSafeInteger`              | `Int`                   |
//! | other number (fractions, NaN, ±∞, beyond 2^53)  | `Float`                 |
//! | bigint within i64                               | `Int`                   |
//! | bigint beyond i64 (as Python ints, JSON numbers) | `Float` (nearest)      |
//! | boolean                                         | `Bool`                  |
//! | array of strings                                | `List`                  |
//! | null / undefined                                | `Missing`               |
//! | anything else                                   | `Unsupported(type name)`: never matches, shown by `explain` |
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use flagrail_core::Attr;
use napi::bindgen_prelude::{Float64ArraySlice, JsObjectValue, JsValue, Object, Unknown};
use napi::sys::{self, napi_callback_info, napi_env, napi_value, Status, ValueType};

use crate::handle::{self, encode_evaluation, FAILED, STALE};
use crate::runtime;

/// Largest integer a JS number represents exactly (`Number.MAX_SAFE_INTEGER`).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Strings up to this many UTF-8 bytes are read into a stack buffer (ids, segments, plans, …).
const INLINE: usize = 128;

/// A stack buffer for one string attribute. Strings that fit are borrowed from it, so reading
/// one costs a single copy (Node's) and no allocation.
pub type TextBuf = [u8; INLINE];

/// An attribute value read out of JS, owned by the Rust side (or borrowed from a [`TextBuf`])
/// for the length of one call.
#[derive(Debug)]
pub enum JsAttr<'b> {
    Missing,
    Text(&'b str),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
    Unsupported(&'static str),
}

impl JsAttr<'_> {
    /// The core's view of this value, borrowing the strings.
    #[inline]
    pub fn attr(&self) -> Attr<'_> {
        match self {
            JsAttr::Missing => Attr::Missing,
            JsAttr::Text(s) => Attr::Str(s),
            JsAttr::Str(s) => Attr::Str(s),
            JsAttr::Int(i) => Attr::Int(*i),
            JsAttr::Float(f) => Attr::Float(*f),
            JsAttr::Bool(b) => Attr::Bool(*b),
            JsAttr::List(items) => Attr::List(Cow::Owned(
                items.iter().map(|s| Cow::Borrowed(s.as_str())).collect(),
            )),
            JsAttr::Unsupported(name) => Attr::Unsupported(name),
        }
    }

    /// The same value without the borrow (for values read into a shared buffer).
    fn into_owned(self) -> JsAttr<'static> {
        match self {
            JsAttr::Missing => JsAttr::Missing,
            JsAttr::Text(s) => JsAttr::Str(s.to_string()),
            JsAttr::Str(s) => JsAttr::Str(s),
            JsAttr::Int(i) => JsAttr::Int(i),
            JsAttr::Float(f) => JsAttr::Float(f),
            JsAttr::Bool(b) => JsAttr::Bool(b),
            JsAttr::List(items) => JsAttr::List(items),
            JsAttr::Unsupported(name) => JsAttr::Unsupported(name),
        }
    }
}

/// `Number.isSafeInteger(n)` → integer, everything else → float (integers beyond 2^53 are not
/// exact in JS, so they are not bucketed as if they were; pass a bigint instead).
#[inline]
fn number(n: f64) -> JsAttr<'static> {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        JsAttr::Int(n as i64)
    } else {
        JsAttr::Float(n)
    }
}

/// Reads a JS string: borrowed from `buf` when it surely fits, else onto the heap.
/// `None` when `value` is not a string.
#[inline]
unsafe fn read_string<'b>(
    env: napi_env,
    value: napi_value,
    buf: &'b mut TextBuf,
) -> Option<JsAttr<'b>> {
    let mut written = 0usize;
    // Node writes at most INLINE - 1 bytes and a NUL.
    let status = unsafe {
        sys::napi_get_value_string_utf8(env, value, buf.as_mut_ptr().cast(), INLINE, &mut written)
    };
    if status != Status::napi_ok {
        return None;
    }
    // Node stops before a character that does not fit, so a string that was cut short has at
    // most 3 bytes of room left; with 4 or more left (NUL included), it was read whole.
    if written + 4 < INLINE {
        let bytes = buf.get(..written).unwrap_or_default();
        // SAFETY: `napi_get_value_string_utf8` writes valid UTF-8 (lone surrogates become
        // U+FFFD) and never cuts a character in two.
        return Some(JsAttr::Text(unsafe {
            std::str::from_utf8_unchecked(bytes)
        }));
    }
    Some(match unsafe { read_long_string(env, value) } {
        Some(s) => JsAttr::Str(s),
        None => JsAttr::Unsupported("unreadable string"),
    })
}

#[cold]
unsafe fn read_long_string(env: napi_env, value: napi_value) -> Option<String> {
    let mut len = 0usize;
    let status =
        unsafe { sys::napi_get_value_string_utf8(env, value, ptr::null_mut(), 0, &mut len) };
    if status != Status::napi_ok {
        return None;
    }
    let mut bytes = vec![0u8; len + 1];
    let mut written = 0usize;
    let status = unsafe {
        sys::napi_get_value_string_utf8(
            env,
            value,
            bytes.as_mut_ptr().cast(),
            len + 1,
            &mut written,
        )
    };
    if status != Status::napi_ok {
        return None;
    }
    bytes.truncate(written);
    String::from_utf8(bytes).ok()
}

/// Reads one JS value, a short string into `buf`. Never fails and never leaves a JS exception
/// pending.
#[inline]
unsafe fn read_value<'b>(env: napi_env, value: napi_value, buf: &'b mut TextBuf) -> JsAttr<'b> {
    // Strings first: the common case costs one call.
    if let Some(text) = unsafe { read_string(env, value, buf) } {
        return text;
    }
    let mut kind = ValueType::napi_undefined;
    if unsafe { sys::napi_typeof(env, value, &mut kind) } != Status::napi_ok {
        return JsAttr::Unsupported("unknown JS type");
    }
    match kind {
        ValueType::napi_undefined | ValueType::napi_null => JsAttr::Missing,
        ValueType::napi_number => {
            let mut n = 0f64;
            match unsafe { sys::napi_get_value_double(env, value, &mut n) } {
                Status::napi_ok => number(n),
                _ => JsAttr::Unsupported("unreadable number"),
            }
        }
        ValueType::napi_boolean => {
            let mut b = false;
            match unsafe { sys::napi_get_value_bool(env, value, &mut b) } {
                Status::napi_ok => JsAttr::Bool(b),
                _ => JsAttr::Unsupported("unreadable boolean"),
            }
        }
        ValueType::napi_bigint => {
            let (mut i, mut lossless) = (0i64, false);
            match unsafe { sys::napi_get_value_bigint_int64(env, value, &mut i, &mut lossless) } {
                Status::napi_ok if lossless => JsAttr::Int(i),
                // Beyond i64: a float, like a JSON number or a Python int that does not fit.
                Status::napi_ok => match unsafe { big_float(env, value) } {
                    Some(f) => JsAttr::Float(f),
                    None => JsAttr::Unsupported("integer out of range"),
                },
                _ => JsAttr::Unsupported("unreadable bigint"),
            }
        }
        ValueType::napi_object => unsafe { read_object(env, value) },
        ValueType::napi_function => JsAttr::Unsupported("function"),
        ValueType::napi_symbol => JsAttr::Unsupported("symbol"),
        _ => JsAttr::Unsupported("unknown JS type"),
    }
}

/// A bigint as the nearest f64 (round half to even, as Python's `float(int)` and JSON parsers
/// do); `None` beyond the f64 range.
#[cold]
unsafe fn big_float(env: napi_env, value: napi_value) -> Option<f64> {
    // 17 words (1088 bits) reach past f64::MAX (2^1024); a longer bigint is out of range.
    let mut words = [0u64; 17];
    let mut count = words.len();
    let mut sign = 0;
    let status = unsafe {
        sys::napi_get_value_bigint_words(env, value, &mut sign, &mut count, words.as_mut_ptr())
    };
    if status != Status::napi_ok {
        return None;
    }
    let magnitude = words_to_f64(words.get(..count)?)?;
    Some(if sign != 0 { -magnitude } else { magnitude })
}

/// Little-endian 64-bit words → the nearest f64. The top 64 significant bits are converted
/// with the lower bits folded into a sticky bit (which sits below f64's rounding position, so
/// ties break correctly), then scaled by an exact power of two.
fn words_to_f64(words: &[u64]) -> Option<f64> {
    let top = words.iter().rposition(|w| *w != 0)?;
    let lead = words[top].leading_zeros();
    // Bits of the magnitude below the 64-bit window.
    let shift = (top as u32) * 64 - lead;
    let window = if shift == 0 {
        words[top]
    } else {
        let high = words[top] << lead;
        let low = match (lead, top.checked_sub(1)) {
            (0, _) | (_, None) => 0,
            (_, Some(i)) => words[i] >> (64 - lead),
        };
        high | low
    };
    let below_window = |bit: u32| -> bool {
        // Any set bit among the `bit` lowest bits of the magnitude.
        let full = (bit / 64) as usize;
        words[..full.min(words.len())].iter().any(|w| *w != 0)
            || (!bit.is_multiple_of(64)
                && words
                    .get(full)
                    .is_some_and(|w| w & ((1u64 << (bit % 64)) - 1) != 0))
    };
    let sticky = u64::from(shift > 0 && below_window(shift));
    let scaled = ((window | sticky) as f64) * 2f64.powi(i32::try_from(shift).ok()?);
    scaled.is_finite().then_some(scaled)
}

unsafe fn read_object(env: napi_env, value: napi_value) -> JsAttr<'static> {
    let mut is_array = false;
    if unsafe { sys::napi_is_array(env, value, &mut is_array) } != Status::napi_ok || !is_array {
        return JsAttr::Unsupported("object");
    }
    let mut len = 0u32;
    if unsafe { sys::napi_get_array_length(env, value, &mut len) } != Status::napi_ok {
        return JsAttr::Unsupported("unreadable array");
    }
    let mut items = Vec::with_capacity(len as usize);
    let mut buf: TextBuf = [0; INLINE];
    for index in 0..len {
        let Some(item) = (unsafe { element(env, value, index) }) else {
            return JsAttr::Unsupported("unreadable array");
        };
        match unsafe { read_string(env, item, &mut buf) } {
            Some(JsAttr::Text(text)) => items.push(text.to_string()),
            Some(JsAttr::Str(s)) => items.push(s),
            Some(_) => return JsAttr::Unsupported("unreadable array"),
            // Same wording as the core's JSON reader, so explanations match across languages.
            None => return JsAttr::Unsupported("list with non-string items"),
        }
    }
    JsAttr::List(items)
}

/// `array[index]`; `None` when reading it threw (a proxy, a getter), with the exception
/// cleared so that the evaluation still returns normally.
unsafe fn element(env: napi_env, array: napi_value, index: u32) -> Option<napi_value> {
    let mut item = ptr::null_mut();
    match unsafe { sys::napi_get_element(env, array, index, &mut item) } {
        Status::napi_ok => Some(item),
        _ => {
            let mut thrown = ptr::null_mut();
            unsafe { sys::napi_get_and_clear_last_exception(env, &mut thrown) };
            None
        }
    }
}

/// The call's arguments; missing ones read as `undefined` (Node fills them in).
#[inline]
unsafe fn args<const N: usize>(env: napi_env, info: napi_callback_info) -> Option<[napi_value; N]> {
    let mut argv = [ptr::null_mut(); N];
    let mut argc = N;
    let status = unsafe {
        sys::napi_get_cb_info(
            env,
            info,
            &mut argc,
            argv.as_mut_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    (status == Status::napi_ok).then_some(argv)
}

/// An optional instant in Unix milliseconds: a finite number, or `None` for anything else.
unsafe fn get_at(env: napi_env, value: napi_value) -> Option<f64> {
    let mut n = 0f64;
    (unsafe { sys::napi_get_value_double(env, value, &mut n) } == Status::napi_ok && n.is_finite())
        .then_some(n)
}

/// Runs `body` with panics caught, and returns its number to JS.
#[inline]
fn respond(env: napi_env, body: impl FnOnce() -> f64) -> napi_value {
    let packed = catch_unwind(AssertUnwindSafe(body)).unwrap_or(FAILED);
    let mut result = ptr::null_mut();
    // On failure `result` stays null, which Node turns into `undefined`: the JS side then
    // takes its careful path.
    unsafe { sys::napi_create_double(env, packed, &mut result) };
    result
}

/// A flag of a handle, as JS names it in one number: `slot * 2^24 + flag index` (one Node-API
/// read instead of two on the hot path).
#[inline]
unsafe fn get_target(env: napi_env, value: napi_value) -> Option<(u32, u32)> {
    let mut n = 0i64;
    if unsafe { sys::napi_get_value_int64(env, value, &mut n) } != Status::napi_ok || n < 0 {
        return None;
    }
    let slot = u32::try_from(n >> TARGET_SHIFT).ok()?;
    Some((slot, (n & ((1 << TARGET_SHIFT) - 1)) as u32))
}

/// Bits of the flag index in a target number (16.7 million flags per document).
const TARGET_SHIFT: u32 = 24;

macro_rules! eval_fixed {
    ($(#[$doc:meta])* $name:ident, $argc:literal, [$($value:ident),*]) => {
        $(#[$doc])*
        unsafe extern "C" fn $name(env: napi_env, info: napi_callback_info) -> napi_value {
            respond(env, || {
                let Some([target, $($value),*]) = (unsafe { args::<$argc>(env, info) }) else {
                    return FAILED;
                };
                let Some((slot, index)) = (unsafe { get_target(env, target) }) else {
                    return FAILED;
                };
                $(let mut $value = ($value, [0u8; INLINE]);
                let $value = unsafe { read_value(env, $value.0, &mut $value.1) };)*
                match handle::get(slot) {
                    Some(handle) => handle.decide(index, &[$($value.attr()),*]),
                    None => FAILED,
                }
            })
        }
    };
}

eval_fixed!(
    /// `eval0(target)`: a flag that reads no attribute.
    eval0, 1, []
);
eval_fixed!(
    /// `eval1(target, a)`.
    eval1, 2, [a]
);
eval_fixed!(
    /// `eval2(target, a, b)`: the benchmark's shape (segment, user_id).
    eval2, 3, [a, b]
);
eval_fixed!(
    /// `eval3(target, a, b, c)`.
    eval3, 4, [a, b, c]
);
eval_fixed!(
    /// `eval4(target, a, b, c, d)`.
    eval4, 5, [a, b, c, d]
);

/// `evalList(target, values[], at?)`: any number of attributes, optionally at an instant
/// (Unix ms).
unsafe extern "C" fn eval_list(env: napi_env, info: napi_callback_info) -> napi_value {
    respond(env, || {
        let Some([target, values, at]) = (unsafe { args::<3>(env, info) }) else {
            return FAILED;
        };
        let Some((slot, index)) = (unsafe { get_target(env, target) }) else {
            return FAILED;
        };
        let Some(owned) = (unsafe { read_array(env, values) }) else {
            return FAILED;
        };
        let at = unsafe { get_at(env, at) };
        let attrs: Vec<Attr<'_>> = owned.iter().map(JsAttr::attr).collect();
        let Some(handle) = handle::get(slot) else {
            return FAILED;
        };
        match at {
            None => handle.decide(index, &attrs),
            Some(_) => handle
                .evaluate_full(Some(index), "", &attrs, at)
                .map_or(STALE, |e| encode_evaluation(&e)),
        }
    })
}

/// Reads every element of a JS array of attribute values.
unsafe fn read_array(env: napi_env, values: napi_value) -> Option<Vec<JsAttr<'static>>> {
    let mut len = 0u32;
    if unsafe { sys::napi_get_array_length(env, values, &mut len) } != Status::napi_ok {
        return None;
    }
    let mut buf: TextBuf = [0; INLINE];
    Some(
        (0..len)
            .map(|i| match unsafe { element(env, values, i) } {
                Some(value) => unsafe { read_value(env, value, &mut buf) }.into_owned(),
                None => JsAttr::Unsupported("unreadable value"),
            })
            .collect(),
    )
}

/// Reads a JS array of attribute values (the safe entry for napi-rs functions); a value that
/// is not an array reads as no values.
pub fn read_values(values: Unknown<'_>) -> Vec<JsAttr<'static>> {
    let raw = values.value();
    // SAFETY: `Unknown` holds a live handle of the current callback's env.
    unsafe { read_array(raw.env, raw.value) }.unwrap_or_default()
}

/// Writes `values` to the start of `out` (as far as it reaches): how a runtime entry point
/// returns more than one number without a second call (see `crate::runtime`).
pub fn write_out(out: &mut Float64ArraySlice<'_>, values: &[f64]) {
    // SAFETY: napi-rs checked that `out` is a Float64Array and took its data pointer and
    // length from `napi_get_typedarray_info` (a Float64Array's data is 8-byte aligned by
    // definition). The array is alive for this callback (its handle is an argument), and no
    // JS runs while we write: this is the JS thread, inside a synchronous call. The only arrays
    // passed here are index.js's private, non-shared result arrays (the module's one, or one
    // made for a single call), so no other thread can touch their buffers.
    let slots = unsafe { out.as_mut() };
    for (slot, value) in slots.iter_mut().zip(values) {
        *slot = *value;
    }
}

/// Most run-attribute values `runStartRaw` takes; a flag with more goes through `runStart`.
const MAX_RUN_VALUES: usize = 8;

/// The `f64` slots of the `ArrayBuffer` in `value`, `None` when it is not one (a detached
/// buffer has no data and no length, so it gives `None` too).
///
/// Why a raw `ArrayBuffer` and not napi-rs's `Float64ArraySlice`: the slice's conversion asks
/// Node for the typed array's element type, which is a chain of a dozen type tests (~60 ns per
/// call); `napi_get_arraybuffer_info` is two field reads.
///
/// # Safety
///
/// The slice is valid while `value` is alive and not detached: callers take it as an argument
/// of the running callback (so it is alive) and write to it before any JS can run again (so
/// nothing can detach it). Only index.js's private, non-shared `OUT_BUFFER` is passed here, so
/// no other thread can see the memory either (a `SharedArrayBuffer` is not an `ArrayBuffer`
/// for Node-API and is refused).
unsafe fn out_slots<'a>(env: napi_env, value: napi_value) -> Option<&'a mut [f64]> {
    let mut data = ptr::null_mut();
    let mut len = 0usize;
    if unsafe { sys::napi_get_arraybuffer_info(env, value, &mut data, &mut len) } != Status::napi_ok
    {
        return None;
    }
    let data = data.cast::<f64>();
    if data.is_null() || !data.is_aligned() {
        return None;
    }
    // SAFETY: `len` bytes from `data` belong to the buffer (see above), aligned for f64.
    Some(unsafe { std::slice::from_raw_parts_mut(data, len / std::mem::size_of::<f64>()) })
}

/// `runStartRaw(outBuffer, target, ...values)`: starts a `call` of a flag of the JS tables
/// (`target` as for `evalN`) with the values of its run attributes, in order. Returns the run's
/// slot and writes `[packed evaluation, packed first step]` to `outBuffer` (an `ArrayBuffer` of
/// at least two f64), like `runStart` does; or returns `STALE`, or `FAILED` when no run was
/// started (the JS side then takes `runStart`, which says why).
///
/// The fast path of `flags.call(...)`: values come positionally, read by a generated per-flag
/// function like `evalN`'s (no array to build and walk), and the napi-rs glue is skipped (see
/// the module docs). Together with `runSucceedRaw` this took ~550 ns off a call.
unsafe extern "C" fn run_start_raw(env: napi_env, info: napi_callback_info) -> napi_value {
    respond(env, || {
        let mut argv = [ptr::null_mut(); 2 + MAX_RUN_VALUES];
        let mut argc = argv.len();
        let status = unsafe {
            sys::napi_get_cb_info(
                env,
                info,
                &mut argc,
                argv.as_mut_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        // More values than fit: not for this entry point.
        if status != Status::napi_ok || argc < 2 || argc > argv.len() {
            return FAILED;
        }
        let [out, target, values @ ..] = argv;
        let Some((slot, index)) = (unsafe { get_target(env, target) }) else {
            return FAILED;
        };
        let values = values.get(..argc - 2).unwrap_or_default();
        // One copy per count, so that the stack buffers and conversions are exactly as many as
        // the values (a loop over all MAX_RUN_VALUES slots cost ~50 ns).
        unsafe {
            match values.len() {
                0 => start_with::<0>(env, out, slot, index, values),
                1 => start_with::<1>(env, out, slot, index, values),
                2 => start_with::<2>(env, out, slot, index, values),
                3 => start_with::<3>(env, out, slot, index, values),
                4 => start_with::<4>(env, out, slot, index, values),
                5 => start_with::<5>(env, out, slot, index, values),
                6 => start_with::<6>(env, out, slot, index, values),
                7 => start_with::<7>(env, out, slot, index, values),
                _ => start_with::<MAX_RUN_VALUES>(env, out, slot, index, values),
            }
        }
    })
}

/// The body of `runStartRaw` for `N` values (`values` has `N`; missing ones read as missing).
#[inline(always)]
unsafe fn start_with<const N: usize>(
    env: napi_env,
    out: napi_value,
    slot: u32,
    index: u32,
    values: &[napi_value],
) -> f64 {
    let mut bufs = [[0u8; INLINE]; N];
    let mut bufs = bufs.iter_mut();
    let read = |i: usize| match (values.get(i), bufs.next()) {
        (Some(&value), Some(buf)) => unsafe { read_value(env, value, buf) },
        _ => JsAttr::Missing,
    };
    let values: [JsAttr<'_>; N] = std::array::from_fn(read);
    let attrs: [Attr<'_>; N] = std::array::from_fn(|i| values[i].attr());
    // Taken after the values were read (reading an array value can run a JS getter), and
    // written before any JS runs again.
    let Some(out) = (unsafe { out_slots(env, out) }).filter(|out| out.len() >= 2) else {
        return FAILED;
    };
    match runtime::start_positional(slot, index, &attrs) {
        Ok((run, written)) => {
            out[..2].copy_from_slice(&written);
            run
        }
        Err(code) => code,
    }
}

/// `runSucceedRaw(outBuffer, run)`: `runSucceed(run, out)` without usage, the fast path of a
/// `call` whose function returned a plain value: ends the run, writes `[latency ms, cost or
/// NaN]` to `outBuffer` and returns the run id; `undefined` when there is no such run or
/// `outBuffer` is not an `ArrayBuffer` of at least two f64 (the JS side then asks
/// `runSucceed`, which throws the reason).
unsafe extern "C" fn run_succeed_raw(env: napi_env, info: napi_callback_info) -> napi_value {
    let id = catch_unwind(AssertUnwindSafe(|| {
        let [out, run] = unsafe { args::<2>(env, info) }?;
        let mut n = 0u32;
        if unsafe { sys::napi_get_value_uint32(env, run, &mut n) } != Status::napi_ok {
            return None;
        }
        let out = unsafe { out_slots(env, out) }.filter(|out| out.len() >= 2)?;
        let (id, written) = runtime::succeed_plain(n)?;
        out[..2].copy_from_slice(&written);
        Some(id)
    }))
    .ok()
    .flatten();
    let mut result = ptr::null_mut();
    let Some((id, Ok(len))) = id.map(|id| {
        let len = isize::try_from(id.len());
        (id, len)
    }) else {
        return result;
    };
    let text = id.as_ptr().cast();
    // Run ids are hex digits: a one-byte string is made without decoding UTF-8.
    let status = if id.is_ascii() {
        unsafe { sys::napi_create_string_latin1(env, text, len, &mut result) }
    } else {
        unsafe { sys::napi_create_string_utf8(env, text, len, &mut result) }
    };
    if status != Status::napi_ok {
        result = ptr::null_mut();
    }
    result
}

/// Adds the raw callbacks to the module's exports.
pub fn register(exports: &mut Object<'_>) -> napi::Result<()> {
    exports.create_named_method("eval0", eval0)?;
    exports.create_named_method("eval1", eval1)?;
    exports.create_named_method("eval2", eval2)?;
    exports.create_named_method("eval3", eval3)?;
    exports.create_named_method("eval4", eval4)?;
    exports.create_named_method("evalList", eval_list)?;
    exports.create_named_method("runStartRaw", run_start_raw)?;
    exports.create_named_method("runSucceedRaw", run_succeed_raw)?;
    Ok(())
}
