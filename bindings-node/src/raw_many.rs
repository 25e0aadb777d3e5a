//! `evalPlan`: several flags of one handle for one context in one raw call, the hot path of
//! `Flags.variants` and `Flags.all` (docs/benchmarks.md, Targets, bounds three flags at 1.5 × one `variant`).
//!
//! The generic `evalMany` (`raw.rs`) reads two JS arrays element by element, copies every
//! string and returns a new array: ~16,000 instructions for three flags, seven `variant` calls'
//! worth. Here the JS side builds a *plan* once per document and key list (index.js,
//! `Plan`): a `Float64Array` (passed as its `ArrayBuffer`) holding the handle's slot, the flags and where each flag's
//! attributes sit among the values, followed by one slot per flag for its packed result. Each
//! call passes the plan and the union of the flags' attribute values as arguments (read by a
//! generated function with one inline cache per property, as for `variant`). Strings are
//! borrowed from stack buffers, the core decides each flag through a `Slotted` view of the
//! values read once, and the packed results are written into the plan: no allocation on
//! either side of the boundary but the JS result objects.
//!
//! Plan layout: `[slot, flagCount, valueCount, (flagIndex, position × the flag's attribute
//! count) × flagCount, result × flagCount]`. The call returns 0, the number of results that
//! were `WIDE` (their unpacked forms wait for `takeWide`), `STALE` or `FAILED`.
//!
//! Safety: as in `raw.rs`, every `unsafe` block is a Node-API call on the JS thread that
//! invoked the callback, with the `env` and handles Node passed to it and out-pointers to live
//! locals; the one pointer written through is the plan's data, checked to be a plain (never
//! shared) `ArrayBuffer`, aligned for f64. No JS runs while it is written.
#![allow(unsafe_code)]

use std::ptr;

use flagrail_core::Attr;
use napi::bindgen_prelude::{JsObjectValue, Object};
use napi::sys::{self, napi_callback_info, napi_env, napi_value, Status};

use crate::handle::{self, FAILED};
use crate::raw::{read_value, respond, TextBuf, INLINE};

/// Most attribute values one plan passes (index.js falls back to `evalMany` beyond).
const MAX_PLAN_VALUES: usize = 8;
/// Numbers before the flags in a plan.
const HEADER: usize = 3;

/// `evalPlan(planBuffer, ...values)`.
unsafe extern "C" fn eval_plan(env: napi_env, info: napi_callback_info) -> napi_value {
    respond(env, || {
        let mut argv = [ptr::null_mut(); 1 + MAX_PLAN_VALUES];
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
        if status != Status::napi_ok {
            return FAILED;
        }
        let Some(plan) = (unsafe { plan_data(env, argv[0]) }) else {
            return FAILED;
        };
        let Some(values) = argv.get(1..) else {
            return FAILED;
        };
        match plan.get(2).map(|&count| count as usize) {
            Some(0) => unsafe { run::<0>(env, values, plan) },
            Some(1) => unsafe { run::<1>(env, values, plan) },
            Some(2) => unsafe { run::<2>(env, values, plan) },
            Some(3) => unsafe { run::<3>(env, values, plan) },
            Some(4) => unsafe { run::<4>(env, values, plan) },
            Some(5) => unsafe { run::<5>(env, values, plan) },
            Some(6) => unsafe { run::<6>(env, values, plan) },
            Some(7) => unsafe { run::<7>(env, values, plan) },
            Some(8) => unsafe { run::<8>(env, values, plan) },
            _ => FAILED,
        }
    })
}

/// Reads `N` values (strings into stack buffers sized to them) and decides the plan's flags.
#[inline(always)]
unsafe fn run<const N: usize>(env: napi_env, values: &[napi_value], plan: &mut [f64]) -> f64 {
    let mut buffers: [TextBuf; N] = [[0u8; INLINE]; N];
    let mut next = 0;
    let read = buffers.each_mut().map(|buffer| {
        let value = values.get(next).copied().unwrap_or(ptr::null_mut());
        next += 1;
        unsafe { read_value(env, value, buffer) }
    });
    let attrs: [Attr<'_>; N] = read.each_ref().map(|value| value.attr());
    let (Some(&slot), Some(&flags)) = (plan.first(), plan.get(1)) else {
        return FAILED;
    };
    let flags = flags as usize;
    let Some(body) = plan.get_mut(HEADER..) else {
        return FAILED;
    };
    let Some(split) = body.len().checked_sub(flags) else {
        return FAILED;
    };
    let (spec, out) = body.split_at_mut(split);
    match handle::get(slot as u32) {
        Some(handle) => handle.decide_plan(spec, &attrs, out),
        None => FAILED,
    }
}

/// The data of a plain `ArrayBuffer` (the plan's `Float64Array` passes its `buffer`) as f64s;
/// `None` for anything else. A `SharedArrayBuffer`, which another thread could write while we
/// do, is not an `ArrayBuffer` for Node-API and is refused too. (An `ArrayBuffer` costs ~50
/// instructions to read here; a typed array, whose kind V8 tests against every typed array
/// class, cost ~400.)
///
/// # Safety
/// `value` is a live handle of `env`, on the JS thread, and no JS runs while the slice lives.
unsafe fn plan_data<'a>(env: napi_env, value: napi_value) -> Option<&'a mut [f64]> {
    let mut data = ptr::null_mut();
    let mut bytes = 0usize;
    if unsafe { sys::napi_get_arraybuffer_info(env, value, &mut data, &mut bytes) }
        != Status::napi_ok
    {
        return None;
    }
    let data = data.cast::<f64>();
    if data.is_null() || !data.is_aligned() {
        return None;
    }
    // SAFETY: the buffer holds `bytes` bytes, alive while its handle is (this callback);
    // aligned for f64 (checked), and only this thread can reach a plain ArrayBuffer.
    Some(unsafe { std::slice::from_raw_parts_mut(data, bytes / std::mem::size_of::<f64>()) })
}

/// Adds `evalPlan` to the module's exports.
pub fn register(exports: &mut Object<'_>) -> napi::Result<()> {
    exports.create_named_method("evalPlan", eval_plan)
}
