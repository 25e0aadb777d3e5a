//! The raw Node-API callbacks of the call path (`runStartRaw`, `runSucceedRaw`): the same
//! technique and safety argument as `raw.rs` (whose readers they use), kept apart so that
//! `raw.rs` does not depend on `runtime.rs`, which depends on it.
#![allow(unsafe_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use flagrail_core::Attr;
use napi::bindgen_prelude::{JsObjectValue, Object};
use napi::sys::{self, napi_callback_info, napi_env, napi_value, Status};

use crate::handle::FAILED;
use crate::raw::{args, get_target, read_value, respond, JsAttr, INLINE};
use crate::runtime;

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

/// Adds the call path's raw callbacks to the module's exports.
pub fn register(exports: &mut Object<'_>) -> napi::Result<()> {
    exports.create_named_method("runStartRaw", run_start_raw)?;
    exports.create_named_method("runSucceedRaw", run_succeed_raw)?;
    Ok(())
}
