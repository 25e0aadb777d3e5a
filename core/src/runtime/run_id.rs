//! Run ids: process-unique and hard to guess, yet carrying the run's number so that
//! `feedback` finds a recent run in a ring without a hash map.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

static RUN_SEED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static RUN_SEEDED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Draws a new random seed for run ids. Called once per process on first use, and by a
/// binding's after-fork hook: a forked child must not repeat its parent's ids.
pub fn reseed_run_ids() {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut a = state.build_hasher();
    a.write_u32(std::process::id());
    a.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let first = a.finish();
    let mut b = state.build_hasher();
    b.write_u64(first);
    RUN_SEED[0].store(first, Ordering::Relaxed);
    RUN_SEED[1].store(b.finish(), Ordering::Relaxed);
    RUN_SEEDED.store(true, Ordering::Release);
}

/// A process-unique, hard-to-guess run id: 64 bits mixed from a random per-process seed and a
/// counter (what makes it hard to guess), and 64 bits that carry the counter itself masked by
/// a second seed (which `run_number` reads back). Shown as 32 hex digits.
pub(crate) fn new_run_key() -> u128 {
    if !RUN_SEEDED.load(Ordering::Acquire) {
        reseed_run_ids();
    }
    let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
    let hi = splitmix(RUN_SEED[0].load(Ordering::Relaxed) ^ n);
    let lo = n ^ RUN_SEED[1].load(Ordering::Relaxed);
    (u128::from(hi) << 64) | u128::from(lo)
}

/// The counter value a run id was made with (for this process's seeds): where `feedback`
/// finds the run among the recent ones. Any 128-bit number gives some number; the full id is
/// compared there.
pub(crate) fn run_number(key: u128) -> u64 {
    (key as u64) ^ RUN_SEED[1].load(Ordering::Relaxed)
}

/// The text form of a run id: 32 lowercase hex digits. Written into a stack buffer and copied
/// once into the `Arc` (not through `format!`, which cost about 900 instructions per call on
/// the path of every `call`/`acall`).
pub(crate) fn format_run_id(key: u128) -> Arc<str> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 32];
    for (i, digit) in text.iter_mut().enumerate() {
        *digit = DIGITS[((key >> (4 * (31 - i))) & 0xf) as usize];
    }
    // Only ASCII hex digits were written.
    Arc::from(std::str::from_utf8(&text).unwrap_or_default())
}

/// The run id of its text form (`None` for text that no run id has).
pub(crate) fn parse_run_id(text: &str) -> Option<u128> {
    if text.len() != 32 {
        return None;
    }
    u128::from_str_radix(text, 16).ok()
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_32_hex_digits_and_read_back() {
        for key in [
            0u128,
            1,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            let text = format_run_id(key);
            assert_eq!(&*text, format!("{key:032x}"));
            assert_eq!(parse_run_id(&text), Some(key));
        }
    }
}
