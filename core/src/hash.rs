//! Bucketing v1: MurmurHash3 x86_32 (seed 0) over `salt ++ unit`, scaled to a total weight.
//!
//! This is the product's cross-language contract (docs/bucketing.md). It is implemented here over
//! *two* slices so that evaluation never concatenates salt and unit into a new buffer: the
//! 4-byte blocks are assembled across the boundary exactly as if the bytes were contiguous.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// The bucketing algorithm version implemented by this crate. A change to the hash, the byte
/// layout or the scaling is a new version, never a silent edit of this one.
pub const HASH_VERSION: u32 = 1;

/// Total weight that document percentages are converted to (0.001 % resolution).
pub const PERCENT_TOTAL: u32 = 100_000;

#[inline(always)]
fn mix_block(h: u32, block: u32) -> u32 {
    let k = block.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn finish(mut h: u32, tail: u32, tail_len: usize, total_len: usize) -> u32 {
    if tail_len > 0 {
        h ^= tail.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    // The reference algorithm xors the length as a 32-bit value (it wraps past 4 GiB).
    h ^= total_len as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// MurmurHash3 x86_32 of one byte slice with the given seed.
pub fn murmur3_32(bytes: &[u8], seed: u32) -> u32 {
    murmur3_32_two(bytes, &[], seed)
}

/// MurmurHash3 x86_32 of `first ++ second` without building the concatenation.
pub(crate) fn murmur3_32_two(first: &[u8], second: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let mut carry = [0u8; 4];
    let mut carry_len = 0usize;
    for part in [first, second] {
        let mut rest = part;
        if carry_len > 0 {
            let take = (4 - carry_len).min(rest.len());
            carry[carry_len..carry_len + take].copy_from_slice(&rest[..take]);
            carry_len += take;
            rest = &rest[take..];
            if carry_len < 4 {
                continue;
            }
            h = mix_block(h, u32::from_le_bytes(carry));
        }
        let mut blocks = rest.chunks_exact(4);
        for block in &mut blocks {
            h = mix_block(
                h,
                u32::from_le_bytes([block[0], block[1], block[2], block[3]]),
            );
        }
        let remainder = blocks.remainder();
        carry[..remainder.len()].copy_from_slice(remainder);
        carry_len = remainder.len();
    }
    let mut tail = 0u32;
    for (i, byte) in carry[..carry_len].iter().enumerate() {
        tail |= u32::from(*byte) << (8 * i);
    }
    finish(h, tail, carry_len, first.len() + second.len())
}

/// MurmurHash3 x86_32 (seed 0) with the salt already absorbed.
///
/// Every split and ramp hashes `salt ++ unit` with a salt fixed at load, so the salt's full
/// blocks are mixed once, here, and evaluation only mixes the unit's bytes: about half the
/// work for typical keys, and no loop over two slices on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SaltedHasher {
    /// State after the salt's full 4-byte blocks.
    state: u32,
    /// The salt's last `salt_len % 4` bytes, little-endian, waiting for unit bytes.
    pending: u32,
    pending_len: usize,
    salt_len: usize,
}

impl SaltedHasher {
    pub fn new(salt: &str) -> Self {
        let bytes = salt.as_bytes();
        let mut blocks = bytes.chunks_exact(4);
        let mut state = 0u32;
        for block in &mut blocks {
            state = mix_block(
                state,
                u32::from_le_bytes([block[0], block[1], block[2], block[3]]),
            );
        }
        let mut pending = 0u32;
        for (i, byte) in blocks.remainder().iter().enumerate() {
            pending |= u32::from(*byte) << (8 * i);
        }
        SaltedHasher {
            state,
            pending,
            pending_len: blocks.remainder().len(),
            salt_len: bytes.len(),
        }
    }

    /// `h` of `salt ++ unit`; equal to [`unit_hash`] of the same salt and unit.
    #[inline]
    pub(crate) fn hash(&self, unit: &str) -> u32 {
        let mut rest = unit.as_bytes();
        let total_len = self.salt_len + rest.len();
        let mut h = self.state;
        let mut tail = self.pending;
        let mut tail_len = self.pending_len;
        if tail_len > 0 {
            let need = 4 - tail_len;
            if rest.len() < need {
                for (i, byte) in rest.iter().enumerate() {
                    tail |= u32::from(*byte) << (8 * (tail_len + i));
                }
                return finish(h, tail, tail_len + rest.len(), total_len);
            }
            for (i, byte) in rest[..need].iter().enumerate() {
                tail |= u32::from(*byte) << (8 * (tail_len + i));
            }
            h = mix_block(h, tail);
            rest = &rest[need..];
        }
        let mut blocks = rest.chunks_exact(4);
        for block in &mut blocks {
            h = mix_block(
                h,
                u32::from_le_bytes([block[0], block[1], block[2], block[3]]),
            );
        }
        tail = 0;
        tail_len = blocks.remainder().len();
        for (i, byte) in blocks.remainder().iter().enumerate() {
            tail |= u32::from(*byte) << (8 * i);
        }
        finish(h, tail, tail_len, total_len)
    }
}

/// The bucketing hash `h` of a unit under a salt (seed 0).
#[inline]
pub fn unit_hash(salt: &str, unit: &str) -> u32 {
    murmur3_32_two(salt.as_bytes(), unit.as_bytes(), 0)
}

/// Scales a 32-bit hash into `0..total` (`total` must be at least 1).
#[inline]
pub(crate) fn scale(hash: u32, total: u32) -> u32 {
    ((u64::from(hash) * u64::from(total)) >> 32) as u32
}

/// `bucket(salt, unit, total)`: the bucket in `0..total` that `unit` falls into under `salt`.
///
/// Returns `None` when `total` is 0 (there is no bucket to fall into).
pub fn bucket(salt: &str, unit: &str, total: u32) -> Option<u32> {
    (total > 0).then(|| scale(unit_hash(salt, unit), total))
}

/// `bucket` for an integer unit (hashed as its decimal text).
pub fn bucket_i64(salt: &str, unit: i64, total: u32) -> Option<u32> {
    bucket(salt, IntUnit::new(unit).as_str(), total)
}

/// A unit written the way bucketing v1 hashes it: strings as is, integers in decimal.
///
/// Integers are formatted into an inline buffer so that bucketing an integer unit allocates
/// nothing.
#[derive(Clone, Copy)]
pub(crate) struct IntUnit {
    buf: [u8; 20],
    start: u8,
}

impl IntUnit {
    pub fn new(value: i64) -> Self {
        let mut buf = [0u8; 20];
        let mut pos = buf.len();
        let negative = value < 0;
        // unsigned_abs handles i64::MIN without overflow.
        let mut magnitude = value.unsigned_abs();
        loop {
            pos -= 1;
            buf[pos] = b'0' + (magnitude % 10) as u8;
            magnitude /= 10;
            if magnitude == 0 {
                break;
            }
        }
        if negative {
            pos -= 1;
            buf[pos] = b'-';
        }
        IntUnit {
            buf,
            start: pos as u8,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and '-' were written, so this never fails; the fallback keeps the
        // function total without a panic path.
        std::str::from_utf8(&self.buf[self.start as usize..]).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(bytes: &[u8], seed: u32) -> u32 {
        murmur3::murmur3_32(&mut std::io::Cursor::new(bytes), seed).expect("in-memory read")
    }

    #[test]
    fn known_reference_values() {
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514E_28B7);
        assert_eq!(murmur3_32(b"hello", 0), 0x248B_FA47);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog", 0),
            0x2E4F_F723
        );
    }

    #[test]
    fn two_slice_hash_equals_contiguous_hash_for_every_split_point() {
        let data: Vec<u8> = (0u16..300).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 31, 64, 255, 300] {
            let whole = &data[..len];
            let expected = reference(whole, 0);
            for split in 0..=len {
                let (a, b) = whole.split_at(split);
                assert_eq!(murmur3_32_two(a, b, 0), expected, "len {len} split {split}");
            }
            assert_eq!(murmur3_32(whole, 42), reference(whole, 42));
        }
    }

    #[test]
    fn salted_hasher_equals_the_plain_hash() {
        let data: String = (0..40).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        for salt_len in 0..=9 {
            let hasher = SaltedHasher::new(&data[..salt_len]);
            for unit_len in 0..=13 {
                let unit = &data[20..20 + unit_len];
                assert_eq!(
                    hasher.hash(unit),
                    reference(format!("{}{unit}", &data[..salt_len]).as_bytes(), 0),
                    "salt {salt_len} unit {unit_len}"
                );
            }
        }
        assert_eq!(
            SaltedHasher::new("support-bot").hash("user-123"),
            0xde1d_606e
        );
    }

    #[test]
    fn bucket_is_in_range_and_total_zero_is_rejected() {
        assert_eq!(bucket("s", "u", 0), None);
        assert_eq!(bucket("s", "u", 1), Some(0));
        for i in 0..1000 {
            let b = bucket("salt", &format!("user-{i}"), 7).expect("total > 0");
            assert!(b < 7);
        }
        assert_eq!(scale(u32::MAX, u32::MAX), u32::MAX - 1);
    }

    #[test]
    fn integer_units_are_decimal() {
        for v in [0i64, 1, -1, 42, i64::MIN, i64::MAX, 1_000_000_007] {
            assert_eq!(IntUnit::new(v).as_str(), v.to_string());
        }
    }
}
