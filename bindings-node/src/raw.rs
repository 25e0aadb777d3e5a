//! The evaluation hot path as raw Node-API callbacks, and the one reader of JS attribute values.
//!
//! With `raw_call.rs` (the call path's callbacks, built on the readers here), the only module
//! of the crate that uses `unsafe` (the workspace denies it; these opt out), and only to call
//! Node-API directly. Why: through napi-rs 3.16's generated glue, a function with arguments
//! pays ~85 ns before its body runs, a `#[napi]` class method ~250 ns, and a `String` argument
//! ~75 ns more (a length query, a heap allocation, a copy) — together well over the 250 ns
//! budget of one `flags.variant(...)`. Here one call costs one `napi_get_cb_info`, one
//! `napi_get_value_string_utf8` per string straight into a stack buffer, and one
//! `napi_create_double` for the packed result (measured: ~165 ns per `flags.variant(...)` in
//! bench/node_eval.mjs, against ~700 ns through the generated glue).
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

/// Largest integer a JS number represents exactly (`Number.MAX_SAFE_INTEGER`).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Strings up to this many UTF-8 bytes are read into a stack buffer (ids, segments, plans, …).
pub(crate) const INLINE: usize = 128;

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

/// The core's view of attribute values read out of JS, borrowing their strings.
pub fn attrs<'a>(owned: &'a [JsAttr<'_>]) -> Vec<Attr<'a>> {
    owned.iter().map(JsAttr::attr).collect()
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

/// Why a JS string cannot be used as text: it holds a lone surrogate, which has no UTF-8 form.
/// Node would replace it with U+FFFD (so `"x\ud800"` would equal `"x\ufffd"`); instead it is
/// unsupported, as in Python and as docs/bucketing.md §2 says: conditions and splits that read
/// it are skipped. Same wording as the Python binding, so explanations match.
pub const LONE_SURROGATE: &str = "string with unpaired surrogates";

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
    match inline_text(buf, written) {
        Inline::Whole(text) => Some(JsAttr::Text(text)),
        // A U+FFFD in the text may stand for a lone surrogate: the UTF-16 form tells.
        Inline::Replacement if unsafe { has_lone_surrogate(env, value) } != Some(false) => {
            Some(JsAttr::Unsupported(LONE_SURROGATE))
        }
        Inline::Replacement | Inline::Cut => Some(match unsafe { read_long_string(env, value) } {
            Some(s) => JsAttr::Str(s),
            None => JsAttr::Unsupported(LONE_SURROGATE),
        }),
    }
}

/// What `napi_get_value_string_utf8` left in a [`TextBuf`].
#[derive(Debug, PartialEq)]
enum Inline<'b> {
    /// The whole string, with no U+FFFD in it.
    Whole(&'b str),
    /// The text has a U+FFFD (the string's own, or one Node put for a lone surrogate).
    Replacement,
    /// The string may not have fitted (or the bytes are not UTF-8, which Node never writes):
    /// read it again onto the heap.
    Cut,
}

/// U+FFFD in UTF-8 starts with this byte, and no other character of the text does in the
/// 3-byte position it would have to be in: scanning for it is one `memchr`.
const REPLACEMENT_LEAD: u8 = 0xEF;

/// Classifies the `written` bytes Node put in `buf` (see [`Inline`]). Pure, so it is unit-tested.
#[inline]
fn inline_text(buf: &TextBuf, written: usize) -> Inline<'_> {
    // Node stops before a character that does not fit, so a string that was cut short has at
    // most 3 bytes of room left; with 4 or more left (NUL included), it was read whole.
    if written + 4 >= INLINE {
        return Inline::Cut;
    }
    let Some(bytes) = buf.get(..written) else {
        return Inline::Cut;
    };
    // Checked rather than assumed, so that soundness never depends on what the engine wrote.
    // Ids and segments are nearly always ASCII, which a word-at-a-time test proves valid (and
    // free of U+FFFD) in a few instructions; `from_utf8` and the U+FFFD scan on every string
    // cost ~160 instructions per evaluation of the benchmark (callgrind, two strings).
    if ascii_prefix(buf, written) {
        // SAFETY: every one of these bytes is below 0x80, so they are valid UTF-8.
        return Inline::Whole(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Inline::Cut;
    };
    if bytes.contains(&REPLACEMENT_LEAD) && text.contains('\u{FFFD}') {
        return Inline::Replacement;
    }
    Inline::Whole(text)
}

/// Whether the first `len` bytes of `buf` are all ASCII, tested a word at a time: the buffer
/// is a whole number of words long, so the last word is read whole and its bytes past `len`
/// masked off.
#[inline(always)]
fn ascii_prefix(buf: &TextBuf, len: usize) -> bool {
    const WORD: usize = 8;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let mut high = 0u64;
    for (index, chunk) in buf.chunks_exact(WORD).enumerate() {
        let start = index * WORD;
        if start >= len {
            break;
        }
        let mut word = [0u8; WORD];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let kept = len - start;
        let mask = if kept >= WORD {
            u64::MAX
        } else {
            (1u64 << (kept * 8)) - 1
        };
        high |= word & mask;
    }
    high & HIGH_BITS == 0
}

/// Whether a JS string has a UTF-16 surrogate without its pair; `None` when it cannot be read.
#[cold]
unsafe fn has_lone_surrogate(env: napi_env, value: napi_value) -> Option<bool> {
    let mut len = 0usize;
    let status =
        unsafe { sys::napi_get_value_string_utf16(env, value, ptr::null_mut(), 0, &mut len) };
    if status != Status::napi_ok {
        return None;
    }
    let mut units = vec![0u16; len + 1];
    let mut written = 0usize;
    let status = unsafe {
        sys::napi_get_value_string_utf16(env, value, units.as_mut_ptr(), len + 1, &mut written)
    };
    if status != Status::napi_ok {
        return None;
    }
    units.truncate(written);
    Some(lone_surrogate(&units))
}

/// Whether UTF-16 `units` hold a surrogate without its pair.
fn lone_surrogate(units: &[u16]) -> bool {
    char::decode_utf16(units.iter().copied()).any(|c| c.is_err())
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
    let text = String::from_utf8(bytes).ok()?;
    // Node turned any lone surrogate into U+FFFD: only the UTF-16 form tells them apart.
    if text.contains('\u{FFFD}') && unsafe { has_lone_surrogate(env, value) } != Some(false) {
        return None;
    }
    Some(text)
}

/// Reads one JS value, a short string into `buf`. Never fails and never leaves a JS exception
/// pending.
#[inline]
pub(crate) unsafe fn read_value<'b>(
    env: napi_env,
    value: napi_value,
    buf: &'b mut TextBuf,
) -> JsAttr<'b> {
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

/// Little-endian 64-bit words of a magnitude → the nearest f64 (round half to even); `None`
/// beyond the f64 range. The top 64 significant bits are converted with the lower bits folded
/// into a sticky bit (which sits below f64's rounding position, so ties break correctly), then
/// scaled by an exact power of two.
fn words_to_f64(words: &[u64]) -> Option<f64> {
    let Some(top) = words.iter().rposition(|w| *w != 0) else {
        return Some(0.0);
    };
    if top == 0 {
        // Fits one word: the conversion rounds correctly by itself.
        return Some(words[0] as f64);
    }
    // `words[top]` is not zero, so `lead` < 64, and `top` >= 1, so `shift` >= 1.
    let lead = words[top].leading_zeros();
    // Bits of the magnitude below the 64-bit window.
    let shift = (top as u32) * 64 - lead;
    let high = words[top] << lead;
    let low = match lead {
        0 => 0,
        _ => words[top - 1] >> (64 - lead),
    };
    let window = high | low;
    // Any set bit among the `shift` lowest bits of the magnitude.
    let whole = (shift / 64) as usize;
    let part = shift % 64;
    let below = words[..whole].iter().any(|w| *w != 0)
        || (part != 0 && words[whole] & ((1u64 << part) - 1) != 0);
    let scaled = ((window | u64::from(below)) as f64) * 2f64.powi(i32::try_from(shift).ok()?);
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
            Some(JsAttr::Unsupported(LONE_SURROGATE)) => {
                return JsAttr::Unsupported("list with a string with unpaired surrogates")
            }
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
pub(crate) unsafe fn args<const N: usize>(
    env: napi_env,
    info: napi_callback_info,
) -> Option<[napi_value; N]> {
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
pub(crate) fn respond(env: napi_env, body: impl FnOnce() -> f64) -> napi_value {
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
pub(crate) unsafe fn get_target(env: napi_env, value: napi_value) -> Option<(u32, u32)> {
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

/// `evalMany(slot, indices[], values[], at?)`: several flags of one handle for one context
/// whose values follow the document's attribute union (`Flags.variants`, `Flags.all`). An
/// array of numbers (see `Handle::decide_many`), or `null` when the tables are stale or the
/// arguments unreadable.
unsafe extern "C" fn eval_many(env: napi_env, info: napi_callback_info) -> napi_value {
    let numbers = catch_unwind(AssertUnwindSafe(|| {
        let [slot, indices, values, at] = unsafe { args::<4>(env, info) }?;
        let mut slot_number = 0u32;
        if unsafe { sys::napi_get_value_uint32(env, slot, &mut slot_number) } != Status::napi_ok {
            return None;
        }
        let indices = unsafe { read_indices(env, indices) }?;
        let owned = unsafe { read_array(env, values) }?;
        let at = unsafe { get_at(env, at) };
        let attrs: Vec<Attr<'_>> = owned.iter().map(JsAttr::attr).collect();
        handle::get(slot_number)?.decide_many(&indices, &attrs, at)
    }))
    .ok()
    .flatten();
    let mut result = ptr::null_mut();
    match numbers {
        Some(numbers) => unsafe { number_array(env, &numbers) },
        None => {
            unsafe { sys::napi_get_null(env, &mut result) };
            result
        }
    }
}

/// A JS array of non-negative integers (flag indices); `None` when it is not one.
unsafe fn read_indices(env: napi_env, values: napi_value) -> Option<Vec<u32>> {
    let mut len = 0u32;
    if unsafe { sys::napi_get_array_length(env, values, &mut len) } != Status::napi_ok {
        return None;
    }
    (0..len)
        .map(|i| {
            let item = unsafe { element(env, values, i) }?;
            let mut index = 0u32;
            (unsafe { sys::napi_get_value_uint32(env, item, &mut index) } == Status::napi_ok)
                .then_some(index)
        })
        .collect()
}

/// `numbers` as a new JS array; null (`undefined` in JS) when Node-API fails.
unsafe fn number_array(env: napi_env, numbers: &[f64]) -> napi_value {
    let mut array = ptr::null_mut();
    if unsafe { sys::napi_create_array_with_length(env, numbers.len(), &mut array) }
        != Status::napi_ok
    {
        return ptr::null_mut();
    }
    for (i, number) in numbers.iter().enumerate() {
        let mut value = ptr::null_mut();
        let Ok(i) = u32::try_from(i) else {
            return ptr::null_mut();
        };
        if unsafe { sys::napi_create_double(env, *number, &mut value) } != Status::napi_ok
            || unsafe { sys::napi_set_element(env, array, i, value) } != Status::napi_ok
        {
            return ptr::null_mut();
        }
    }
    array
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
///
/// Writes nothing when the array's memory is shared with other threads (a `SharedArrayBuffer`):
/// index.js never passes one, and this module does not rely on that.
pub fn write_out(out: &mut Float64ArraySlice<'_>, values: &[f64]) {
    let raw = out.value();
    // SAFETY: a live handle of the current callback's env.
    if !unsafe { private_typed_array(raw.env, raw.value) } {
        return;
    }
    // SAFETY: napi-rs checked that `out` is a Float64Array and took its data pointer and
    // length from `napi_get_typedarray_info` (a Float64Array's data is 8-byte aligned by
    // definition). The array is alive for this callback (its handle is an argument), and no
    // JS runs while we write: this is the JS thread, inside a synchronous call. Its buffer is
    // a plain `ArrayBuffer` (checked above), which no other thread can reach.
    let slots = unsafe { out.as_mut() };
    for (slot, value) in slots.iter_mut().zip(values) {
        *slot = *value;
    }
}

/// Whether a typed array's memory belongs to a plain `ArrayBuffer` (not a `SharedArrayBuffer`,
/// which other threads may write while we do: for Node-API a shared buffer is not an
/// `ArrayBuffer`).
unsafe fn private_typed_array(env: napi_env, value: napi_value) -> bool {
    let mut kind = 0;
    let mut length = 0usize;
    let mut data = ptr::null_mut();
    let mut buffer = ptr::null_mut();
    let mut offset = 0usize;
    let status = unsafe {
        sys::napi_get_typedarray_info(
            env,
            value,
            &mut kind,
            &mut length,
            &mut data,
            &mut buffer,
            &mut offset,
        )
    };
    let mut is_buffer = false;
    status == Status::napi_ok
        && unsafe { sys::napi_is_arraybuffer(env, buffer, &mut is_buffer) } == Status::napi_ok
        && is_buffer
}

/// Adds the raw callbacks to the module's exports.
pub fn register(exports: &mut Object<'_>) -> napi::Result<()> {
    exports.create_named_method("eval0", eval0)?;
    exports.create_named_method("eval1", eval1)?;
    exports.create_named_method("eval2", eval2)?;
    exports.create_named_method("eval3", eval3)?;
    exports.create_named_method("eval4", eval4)?;
    exports.create_named_method("evalList", eval_list)?;
    exports.create_named_method("evalMany", eval_many)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decimal text of a magnitude in little-endian words (schoolbook division by 10).
    fn decimal(words: &[u64]) -> String {
        let mut words = words.to_vec();
        let mut digits = Vec::new();
        while words.iter().any(|w| *w != 0) {
            let mut rest = 0u128;
            for word in words.iter_mut().rev() {
                let current = (rest << 64) | u128::from(*word);
                *word = (current / 10) as u64;
                rest = current % 10;
            }
            digits.push(b'0' + rest as u8);
        }
        if digits.is_empty() {
            digits.push(b'0');
        }
        digits.reverse();
        String::from_utf8(digits).unwrap()
    }

    /// The correctly rounded f64 of a magnitude: Rust's decimal parser rounds half to even.
    fn reference(words: &[u64]) -> Option<f64> {
        let parsed: f64 = decimal(words).parse().unwrap();
        parsed.is_finite().then_some(parsed)
    }

    #[test]
    fn words_to_f64_rounds_like_a_decimal_parser() {
        let mut cases: Vec<Vec<u64>> = vec![
            vec![],
            vec![0],
            vec![1],
            vec![u64::MAX],
            vec![0, 1],
            vec![1, 1],
            vec![u64::MAX, u64::MAX],
            vec![0, 0, 1],
            // 2^64 + 2^11: a tie between two f64 neighbours of 2^64 (rounds to even, down).
            vec![1 << 11, 1],
            // 2^64 + 2^12 + 2^11: a tie that rounds up to even.
            vec![(1 << 12) | (1 << 11), 1],
            // A tie broken by a bit far below the window.
            vec![1, 1 << 11, 1 << 53],
            vec![0, 1 << 11, 1 << 53],
            vec![0, 0, 0, 1 << 63],
        ];
        // Exactly the largest finite f64, and one past the rounding boundary to infinity.
        let mut max = vec![0u64; 16];
        max[15] = 0xFFFF_FFFF_FFFF_F800;
        cases.push(max.clone());
        max[14] = u64::MAX;
        max[15] = u64::MAX;
        cases.push(max);
        // Pseudo-random magnitudes of one to four words, with runs of zeros and ones.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for n in 0..2000 {
            let len = 1 + n % 4;
            let word = |x: u64| match x % 4 {
                0 => 0,
                1 => u64::MAX,
                _ => x,
            };
            cases.push((0..len).map(|_| word(next())).collect());
        }
        for words in cases {
            assert_eq!(
                words_to_f64(&words),
                reference(&words),
                "words {words:x?} = {}",
                decimal(&words)
            );
        }
    }

    #[test]
    fn words_to_f64_refuses_beyond_the_f64_range() {
        let mut beyond = vec![0u64; 17];
        beyond[16] = 1; // 2^1024
        assert_eq!(words_to_f64(&beyond), None);
    }

    #[test]
    fn numbers_map_like_python_ints_and_floats() {
        assert!(matches!(number(3.0), JsAttr::Int(3)));
        assert!(matches!(number(-0.0), JsAttr::Int(0)));
        assert!(matches!(
            number(MAX_SAFE_INTEGER),
            JsAttr::Int(9_007_199_254_740_991)
        ));
        assert!(matches!(number(MAX_SAFE_INTEGER + 1.0), JsAttr::Float(_)));
        assert!(matches!(number(1.5), JsAttr::Float(_)));
        assert!(matches!(number(f64::NAN), JsAttr::Float(_)));
        assert!(matches!(number(f64::INFINITY), JsAttr::Float(_)));
    }

    fn buffer(text: &[u8]) -> (TextBuf, usize) {
        let mut buf: TextBuf = [0; INLINE];
        buf[..text.len()].copy_from_slice(text);
        (buf, text.len())
    }

    #[test]
    fn inline_text_is_whole_only_when_it_surely_fitted() {
        let (buf, n) = buffer(b"user-42");
        assert_eq!(inline_text(&buf, n), Inline::Whole("user-42"));
        let (buf, n) = buffer("h\u{e9}llo \u{1F600}".as_bytes());
        assert_eq!(inline_text(&buf, n), Inline::Whole("h\u{e9}llo \u{1F600}"));
        let (buf, n) = buffer(b"");
        assert_eq!(inline_text(&buf, n), Inline::Whole(""));
        // 123 bytes leave 5 of room (NUL included): whole. 124 leave 4: maybe cut.
        let (buf, n) = buffer(&[b'a'; INLINE - 5]);
        assert!(matches!(inline_text(&buf, n), Inline::Whole(_)));
        let (buf, n) = buffer(&[b'a'; INLINE - 4]);
        assert_eq!(inline_text(&buf, n), Inline::Cut);
        let (buf, _) = buffer(b"x");
        assert_eq!(inline_text(&buf, INLINE - 1), Inline::Cut);
        assert_eq!(inline_text(&buf, INLINE + 10), Inline::Cut);
    }

    #[test]
    fn ascii_prefix_looks_only_at_the_written_bytes() {
        for len in 0..40 {
            let (buf, n) = buffer(&vec![b'a'; len]);
            assert!(ascii_prefix(&buf, n), "{len} ASCII bytes");
            // A high byte anywhere inside is seen, one just past the end is not.
            for at in 0..len {
                let mut bytes = vec![b'a'; len];
                bytes[at] = 0xC3;
                let (buf, n) = buffer(&bytes);
                assert!(!ascii_prefix(&buf, n), "high byte at {at} of {len}");
            }
            let mut bytes = vec![b'a'; len + 1];
            bytes[len] = 0xFF;
            let (buf, _) = buffer(&bytes);
            assert!(ascii_prefix(&buf, len), "high byte just past {len}");
        }
        let (buf, _) = buffer(&[b'a'; INLINE]);
        assert!(ascii_prefix(&buf, INLINE));
    }

    #[test]
    fn inline_text_never_trusts_bytes_that_are_not_utf8() {
        let (buf, n) = buffer(&[b'a', 0xED, 0xA0, 0x80]); // a CESU-8 lone surrogate
        assert_eq!(inline_text(&buf, n), Inline::Cut);
        let (buf, n) = buffer(&[0xFF]);
        assert_eq!(inline_text(&buf, n), Inline::Cut);
    }

    #[test]
    fn inline_text_flags_a_replacement_character() {
        let (buf, n) = buffer("x\u{FFFD}".as_bytes());
        assert_eq!(inline_text(&buf, n), Inline::Replacement);
        // 0xEF leads other characters too (U+F000..U+FFFF): those are whole.
        let (buf, n) = buffer("\u{FF21}".as_bytes());
        assert_eq!(inline_text(&buf, n), Inline::Whole("\u{FF21}"));
    }

    #[test]
    fn lone_surrogates_are_told_from_pairs() {
        assert!(lone_surrogate(&[0x78, 0xD800]));
        assert!(lone_surrogate(&[0xDC00, 0x78]));
        assert!(lone_surrogate(&[0xD800, 0xD800]));
        assert!(!lone_surrogate(&[0xD83D, 0xDE00])); // U+1F600
        assert!(!lone_surrogate(&[0x78, 0xFFFD]));
        assert!(!lone_surrogate(&[]));
    }
}
