#!/usr/bin/env python3
"""Generate the flagrail bucketing test vectors (hash_version 1).

Reference: the PyPI package ``mmh3`` (``mmh3.hash(key, seed, signed=False)``).
Every value is cross-checked against two pure-Python MurmurHash3 x86_32
implementations written below (one-shot and streaming over salt then unit), and
every bucket / variant is computed by two different routes. Any disagreement
aborts generation.

Usage (the venv lives outside the repository):

    python3 -m venv /tmp/vecgen && /tmp/vecgen/bin/pip install mmh3==5.3.1
    /tmp/vecgen/bin/python tests/vectors/tools/gen_bucketing_vectors.py            # write
    /tmp/vecgen/bin/python tests/vectors/tools/gen_bucketing_vectors.py --check    # verify only
    /tmp/vecgen/bin/python tests/vectors/tools/gen_bucketing_vectors.py --explain SALT UNIT [--int]

Output files (tests/vectors/v1/): murmur3.json, hash.json, bucket.json, split.json.
The output is deterministic: same script, same bytes. The spec is docs/bucketing.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from decimal import Decimal
from pathlib import Path

try:
    import mmh3
except ImportError:  # pragma: no cover - environment problem, not a vector problem
    sys.exit(
        "mmh3 is required: python3 -m venv /tmp/vecgen && "
        "/tmp/vecgen/bin/pip install mmh3==5.3.1, then run with /tmp/vecgen/bin/python"
    )

HASH_VERSION = 1
PERCENT_TOTAL = 100_000  # W for documents written in percent (0.001 % resolution)
MAX_TOTAL = 0xFFFFFFFF
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1

ROOT = Path(__file__).resolve().parents[3]
OUT_DIR = ROOT / "tests" / "vectors" / "v1"

# --------------------------------------------------------------------------------------
# Independent implementations
# --------------------------------------------------------------------------------------

M32 = 0xFFFFFFFF
C1 = 0xCC9E2D51
C2 = 0x1B873593


def rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & M32


def fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    return h


def mix_k(k: int) -> int:
    k = (k * C1) & M32
    k = rotl32(k, 15)
    k = (k * C2) & M32
    return k


def murmur3_x86_32(data: bytes, seed: int = 0, trace: list | None = None) -> int:
    """Pure-Python MurmurHash3 x86_32, written from the algorithm description."""
    h = seed & M32
    n = len(data)
    nblocks = n // 4
    for i in range(nblocks):
        block = data[4 * i : 4 * i + 4]
        k = block[0] | (block[1] << 8) | (block[2] << 16) | (block[3] << 24)
        h ^= mix_k(k)
        h = rotl32(h, 13)
        h = (h * 5 + 0xE6546B64) & M32
        if trace is not None:
            trace.append(("block", i, bytes(block), k, mix_k(k), h))
    tail = data[4 * nblocks :]
    k = 0
    if len(tail) == 3:
        k ^= tail[2] << 16
    if len(tail) >= 2:
        k ^= tail[1] << 8
    if len(tail) >= 1:
        k ^= tail[0]
        h ^= mix_k(k)
    if trace is not None:
        trace.append(("tail", bytes(tail), k, mix_k(k) if tail else 0, h))
    h ^= n & M32
    if trace is not None:
        trace.append(("len", n, h))
    h = fmix32(h)
    if trace is not None:
        trace.append(("fmix", h))
    return h


class StreamingMurmur3:
    """Second pure-Python implementation: incremental, carries partial blocks
    across update() calls, so salt and unit are fed separately exactly as a
    zero-copy implementation would do."""

    def __init__(self, seed: int = 0) -> None:
        self.h = seed & M32
        self.carry = b""
        self.length = 0

    def update(self, data: bytes) -> None:
        self.length += len(data)
        buf = self.carry + data
        full = len(buf) - len(buf) % 4
        for i in range(0, full, 4):
            k = int.from_bytes(buf[i : i + 4], "little")
            self.h ^= mix_k(k)
            self.h = (rotl32(self.h, 13) * 5 + 0xE6546B64) & M32
        self.carry = buf[full:]

    def digest(self) -> int:
        h = self.h
        if self.carry:
            h ^= mix_k(int.from_bytes(self.carry, "little"))
        h ^= self.length & M32
        return fmix32(h)


def reference_hash(key: bytes, seed: int = 0) -> int:
    """mmh3 (the reference) with both pure-Python implementations asserted equal."""
    ref = mmh3.hash(key, seed, signed=False)
    mine = murmur3_x86_32(key, seed)
    assert ref == mine, f"pure-Python murmur3 disagrees with mmh3 on {key!r} seed {seed}: {mine} != {ref}"
    return ref


def unit_text(unit) -> str:
    """Bucketing v1: a string is used as is, an integer is written in decimal."""
    if isinstance(unit, bool):  # bool is an int subclass in Python; it is NOT a valid unit
        raise TypeError("bool is not a valid bucketing unit")
    if isinstance(unit, int):
        return str(unit)  # ASCII digits, leading '-' for negatives, no '+', no padding
    if isinstance(unit, str):
        return unit
    raise TypeError(f"{type(unit).__name__} is not a valid bucketing unit")


def key_bytes(salt: str, unit) -> bytes:
    return salt.encode("utf-8") + unit_text(unit).encode("utf-8")


def bucket_hash(salt: str, unit) -> int:
    key = key_bytes(salt, unit)
    h = reference_hash(key, 0)
    s = StreamingMurmur3(0)
    s.update(salt.encode("utf-8"))
    s.update(unit_text(unit).encode("utf-8"))
    assert s.digest() == h, f"streaming murmur3 disagrees on {salt!r} + {unit!r}"
    # also feed byte by byte: the worst case for carry handling
    s1 = StreamingMurmur3(0)
    for b in key:
        s1.update(bytes([b]))
    assert s1.digest() == h
    return h


def bucket_of(h: int, total: int) -> int:
    assert 1 <= total <= MAX_TOTAL
    b = (h * total) >> 32
    # second route: the largest b with b * 2^32 <= h * total
    lo, hi = 0, total - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mid * 2**32 <= h * total:
            lo = mid
        else:
            hi = mid - 1
    assert lo == b and 0 <= b < total
    return b


def float_buckets(h: int, total: int) -> dict:
    """What naive float64 implementations compute (for descriptions only)."""
    import math

    return {
        "h / 2^32 * W": math.floor(float(h) / 4294967296.0 * float(total)),
        "h * W / 2^32": math.floor(float(h) * float(total) / 4294967296.0),
    }


def percent_to_weight(p: str) -> int:
    d = Decimal(p)
    w = d * 1000
    if w != w.to_integral_value() or d < 0 or d > 100:
        raise ValueError(f"percent {p} has more than 3 decimals or is out of range")
    return int(w)


def pick_variant(weights, b: int) -> str:
    """Cumulative rule: the first variant whose cumulative weight exceeds b."""
    cum = 0
    chosen = None
    for name, w in weights:
        cum += w
        if cum > b:
            chosen = name
            break
    # second route: explicit half-open ranges, then search the containing range
    ranges = []
    start = 0
    for name, w in weights:
        ranges.append((name, start, start + w))
        start += w
    containing = [name for name, lo, hi in ranges if lo <= b < hi]
    assert len(containing) == 1 and containing[0] == chosen, (weights, b, chosen, containing)
    return chosen


# --------------------------------------------------------------------------------------
# Case construction helpers
# --------------------------------------------------------------------------------------


def show(s) -> str:
    """Readable, ASCII-only rendering of a salt/unit for descriptions."""
    if isinstance(s, int):
        return f"{s} (integer)"
    out = []
    for ch in s:
        if 0x20 <= ord(ch) < 0x7F:
            out.append(ch)
        else:
            out.append(f"{{U+{ord(ch):04X}}}")
    r = "".join(out)
    if len(r) > 40:
        r = r[:24] + f"... ({len(s.encode('utf-8'))} bytes)"
    return f'"{r}"'


def emit(path: Path, doc: dict, check: bool) -> bool:
    text = json.dumps(doc, indent=2, ensure_ascii=True) + "\n"
    if check:
        old = path.read_text(encoding="utf-8") if path.exists() else None
        ok = old == text
        print(f"{'ok   ' if ok else 'STALE'} {path.relative_to(ROOT)} ({len(doc['cases'])} cases)")
        return ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    print(f"wrote {path.relative_to(ROOT)} ({len(doc['cases'])} cases)")
    return True


def number(prefix: str, cases: list) -> list:
    ids = set()
    for i, c in enumerate(cases, 1):
        cid = f"{prefix}-{i:03d}"
        c["id"] = cid
        ids.add(cid)
    assert len(ids) == len(cases)
    # keep a fixed key order: id, description, then the payload
    out = []
    for c in cases:
        d = {"id": c.pop("id"), "description": c.pop("description")}
        d.update(c)
        out.append(d)
    return sorted(out, key=lambda c: c["id"])


# --------------------------------------------------------------------------------------
# murmur3.json
# --------------------------------------------------------------------------------------

# Published / widely used known answers, asserted against mmh3 and the pure-Python code.
KNOWN_ANSWERS = [
    ("", 0, 0x00000000, "empty input, seed 0: all mixing is skipped and fmix32(0) = 0"),
    ("", 1, 0x514E28B7, "empty input, seed 1: only the finalizer runs on the seed"),
    ("", 0xFFFFFFFF, 0x81F16F39, "empty input, seed 0xFFFFFFFF: seed must be treated as unsigned"),
    ("hello", 0, 0x248BFA47, "\"hello\" seed 0: one block and a 1-byte tail"),
    (
        "The quick brown fox jumps over the lazy dog",
        0,
        0x2E4FF723,
        "classic pangram, 43 bytes, seed 0: 10 blocks and a 3-byte tail",
    ),
    (
        "The quick brown fox jumps over the lazy dog",
        0x9747B28C,
        0x2FA826CD,
        "classic pangram, seed 0x9747B28C (a seed common in published test lists)",
    ),
    ("\u0000\u0000\u0000\u0000", 0, 0x2362F9DE, "four NUL bytes, seed 0: a zero block is not the same as no block"),
    ("aaaa", 0x9747B28C, 0x5A97808A, "\"aaaa\" seed 0x9747B28C: exactly one block, no tail"),
    ("Hello, world!", 0x9747B28C, 0x24884CBA, "\"Hello, world!\" seed 0x9747B28C: 3 blocks and a 1-byte tail"),
]


def murmur3_cases() -> list:
    cases = []
    for key, seed, expected, desc in KNOWN_ANSWERS:
        h = reference_hash(key.encode("utf-8"), seed)
        assert h == expected, f"known answer mismatch for {key!r} seed {seed:#x}: {h:#010x} != {expected:#010x}"
        cases.append({"description": f"{desc} -> {h:#010x}", "key": key, "seed": seed, "hash": h})
    # every tail length with several non-zero seeds
    for seed in (1, 42, 0x9747B28C, 0x12345678, 0x80000000, 0xFFFFFFFF):
        for key in ("a", "ab", "abc", "abcd", "abcde"):
            h = reference_hash(key.encode("utf-8"), seed)
            n = len(key)
            cases.append(
                {
                    "description": f'"{key}" ({n} bytes: {n // 4} block(s), {n % 4}-byte tail) with seed {seed:#010x} -> {h:#010x}',
                    "key": key,
                    "seed": seed,
                    "hash": h,
                }
            )
    for key, seed, what in (
        ("support-botuser-123", 1, "a typical salt+unit key with seed 1 (flagrail itself always uses seed 0)"),
        ("caf\u00e9", 0x9747B28C, "non-ASCII key (U+00E9 is 2 UTF-8 bytes) with a non-zero seed"),
        ("\U0001F600", 7, "a 4-byte emoji (exactly one block) with seed 7"),
    ):
        h = reference_hash(key.encode("utf-8"), seed)
        cases.append({"description": f"{what} -> {h:#010x}", "key": key, "seed": seed, "hash": h})
    return number("murmur3", cases)


# The byte-level examples written out in docs/bucketing.md: (salt, unit, h, bucket at
# W=100000, variant of the 90/5/5 split). Asserted here so the document cannot drift.
WORKED_EXAMPLES = [
    ("support-bot", "user-123", 0xDE1D606E, 86763, "control"),
    ("checkout", 42, 0xCBACECA9, 79560, "control"),
    ("model", "zo\u00eb", 0x9575377F, 58381, "control"),
    ("beta", "user-118", 0xF0DC5F66, 94086, "v2"),
]


def check_worked_examples() -> None:
    t905 = pct_table([("control", "90"), ("v2", "5"), ("v3", "5")])
    for salt, unit, h, b, v in WORKED_EXAMPLES:
        assert bucket_hash(salt, unit) == h, (salt, unit)
        assert bucket_of(h, PERCENT_TOTAL) == b, (salt, unit)
        assert pick_variant(t905, b) == v, (salt, unit)


# --------------------------------------------------------------------------------------
# hash.json
# --------------------------------------------------------------------------------------


def hash_cases() -> list:
    spec: list[tuple[str, object, str]] = []
    add = lambda salt, unit, desc: spec.append((salt, unit, desc))  # noqa: E731

    # empty parts
    add("", "", "empty salt and empty unit: zero bytes hashed, h = 0 (evaluation never buckets an empty unit, but the primitive defines it)")
    add("", "user-123", "empty salt: the key is just the unit bytes")
    add("support-bot", "", "empty unit: the key is just the salt bytes (evaluation skips the rule; the primitive is still defined)")
    add("", "a", "empty salt, 1-byte unit (tail only)")
    add("a", "", "1-byte salt, empty unit: same bytes as the previous case, must hash equal")

    # typical keys
    add("support-bot", "user-123", "typical flag key as salt + user id")
    add("support-bot", "user-124", "neighbouring user id: must differ from user-123 (no locality)")
    add("support-bot", "User-123", "case matters: no case folding of the unit")
    add("support-bot", " user-123", "leading space is part of the unit: no trimming")
    add("support-bot", "user-123 ", "trailing space is part of the unit: no trimming")
    add("support-prompt", "user-123", "same unit, different salt: an independent flag")
    add("checkout", "conv_01HZX3J8Q4", "conversation id style unit")
    add("checkout", "550e8400-e29b-41d4-a716-446655440000", "UUID unit (36 bytes)")
    add("model-router", "sess:8f14e45f", "session id containing a colon")
    add("flag", "a\u0000b", "unit with an embedded NUL byte: all bytes are hashed (C strings must not truncate)")
    add("flag", "tab\there", "unit with a TAB control character")

    # same bytes, different split between salt and unit
    for salt, unit in (("abc", ""), ("ab", "c"), ("a", "bc"), ("", "abc")):
        add(salt, unit, f"split point test: salt {show(salt)} + unit {show(unit)} is the byte string \"abc\"; all four splits must hash equal")
    for salt, unit in (("support-botuser-", "123"), ("support-", "botuser-123")):
        add(salt, unit, "split point test: same bytes as salt \"support-bot\" + unit \"user-123\"; must hash equal to it (no separator is inserted)")

    # non-ASCII
    add("caf\u00e9", "user-1", "salt with U+00E9 (2 UTF-8 bytes)")
    add("flag", "stra\u00dfe", "unit with German sharp s U+00DF (2 bytes); not case-folded to 'ss'")
    add("flag", "\u4e2d\u6587\u7528\u6237", "unit in Chinese (4 CJK chars, 3 bytes each = 12 bytes)")
    add("\u5b9f\u9a13", "\u30e6\u30fc\u30b6\u30fc42", "Japanese salt and unit (kanji + katakana + ASCII digits)")
    add("flag", "\ud55c\uad6d\uc5b4", "Korean Hangul syllables in NFC (3 bytes each)")
    add("flag", "\u0645\u0631\u062d\u0628\u0627", "Arabic (RTL) unit, 2 bytes per letter; bytes are in logical order")
    add("flag", "\u05e9\u05dc\u05d5\u05dd", "Hebrew (RTL) unit")
    add("\u043f\u0440\u0438\u0432\u0435\u0442", "\u03b1\u03b2\u03b3", "Cyrillic salt, Greek unit")
    add("flag", "\u0928\u092e\u0938\u094d\u0924\u0947", "Devanagari with virama (combining signs inside a word)")

    # emoji
    add("flag", "\U0001F600", "single emoji U+1F600 (4 UTF-8 bytes)")
    add("flag", "\U0001F469\u200D\U0001F4BB", "ZWJ sequence woman technologist (U+1F469 U+200D U+1F4BB, 11 bytes)")
    add("flag", "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466", "ZWJ family sequence (4 people, 3 ZWJ, 25 bytes)")
    add("flag", "\U0001F1EB\U0001F1F7", "flag of France: two regional indicator symbols (8 bytes)")
    add("flag", "\U0001F1EF\U0001F1F5", "flag of Japan: two regional indicator symbols")
    add("flag", "\U0001F44D\U0001F3FD", "thumbs up with a skin tone modifier")
    add("flag", "1\ufe0f\u20e3", "keycap sequence 1 + U+FE0F + U+20E3")
    add("\U0001F680", "user-123", "emoji salt")

    # combining characters: NFC and NFD are different byte strings
    for word, label in (("caf\u00e9", "cafe-acute"), ("\u00c5ngstr\u00f6m", "Angstrom"), ("\ud55c", "Hangul HAN")):
        nfc = unicodedata.normalize("NFC", word)
        nfd = unicodedata.normalize("NFD", word)
        assert nfc != nfd
        add("flag", nfc, f"{label} in NFC ({len(nfc.encode())} bytes): different bytes from the NFD case, so a different hash; no normalization is applied")
        add("flag", nfd, f"{label} in NFD ({len(nfd.encode())} bytes): decomposed form of the NFC case; must NOT hash equal to it")

    # long keys
    add("long", "a" * 1000, "1000-byte ASCII unit (+4 byte salt = 1004 bytes, no tail)")
    add("long", "a" * 1001, "1001-byte ASCII unit (1005 bytes total, 1-byte tail)")
    add("", "x" * 1027, "1027-byte unit, empty salt (3-byte tail)")
    add("s" * 513, "u" * 514, "long salt (513 bytes) and long unit (514 bytes); boundary in the middle of a block")
    add("flag", "\u00e9" * 600, "600 x U+00E9 = 1200 bytes of 2-byte sequences")
    add("flag", "\U0001F600" * 300, "300 emoji = 1200 bytes of 4-byte sequences")
    add("flag", "".join(chr(0x20 + (i * 7) % 95) for i in range(4096)), "4096-byte printable ASCII pattern")

    # every remainder mod 4, with the salt/unit boundary at every offset within a block
    letters = "abcdefghijklmnop"
    for slen in (1, 2, 3, 4, 5):
        for ulen in (1, 2, 3, 4):
            salt = letters[:slen]
            unit = letters[slen : slen + ulen].upper()
            n = slen + ulen
            add(salt, unit, f"boundary test: salt {slen} bytes + unit {ulen} bytes = {n} bytes ({n // 4} block(s), {n % 4}-byte tail); the salt/unit boundary is at offset {slen % 4} of a block")

    # integer units
    for unit, what in (
        (0, "zero -> \"0\""),
        (1, "one -> \"1\""),
        (-1, "minus one -> \"-1\""),
        (42, "42 -> \"42\""),
        (-7, "-7 -> \"-7\""),
        (2**31 - 1, "i32::MAX -> \"2147483647\""),
        (-(2**31), "i32::MIN -> \"-2147483648\""),
        (2**32, "2^32 -> \"4294967296\""),
        (2**53 + 1, "2^53+1 -> \"9007199254740993\" (not representable as an IEEE double: JS must parse as BigInt)"),
        (I64_MAX, "i64::MAX -> \"9223372036854775807\" (parse as an exact integer, e.g. BigInt in JS)"),
        (I64_MIN, "i64::MIN -> \"-9223372036854775808\" (parse as an exact integer, e.g. BigInt in JS)"),
        (1234567890123, "a large millisecond-timestamp-like id"),
    ):
        add("support-bot", unit, f"integer unit {what}")
    add("support-bot", "42", "the string \"42\": must hash equal to the integer unit 42")
    add("support-bot", "042", "the string \"042\": leading zero is kept for strings, so differs from integer 42")
    add("flag4", 2, "salt \"flag4\" + integer 2: same bytes as salt \"flag\" + integer 42, must hash equal")
    add("flag", 42, "salt \"flag\" + integer 42")

    # the worked examples of docs/bucketing.md (support-bot/user-123 is already above)
    for salt, unit, _h, _b, _v in WORKED_EXAMPLES[1:]:
        add(salt, unit, "worked example in docs/bucketing.md")

    cases = []
    seen = set()
    for salt, unit, desc in spec:
        key = (salt, unit if not isinstance(unit, int) else ("int", unit))
        assert key not in seen, f"duplicate hash case {salt!r} {unit!r}"
        seen.add(key)
        h = bucket_hash(salt, unit)
        cases.append({"description": f"{desc}; salt {show(salt)}, unit {show(unit)} -> {h:#010x}", "salt": salt, "unit": unit, "hash": h})

    # assert the equalities the descriptions promise
    byh = {(c["salt"], c["unit"] if not isinstance(c["unit"], int) else ("int", c["unit"])): c["hash"] for c in cases}
    assert byh[("", "")] == 0
    assert byh[("", "a")] == byh[("a", "")]
    assert len({byh[(s, u)] for s, u in (("abc", ""), ("ab", "c"), ("a", "bc"), ("", "abc"))}) == 1
    assert byh[("support-botuser-", "123")] == byh[("support-bot", "user-123")] == byh[("support-", "botuser-123")]
    assert byh[("support-bot", "42")] == byh[("support-bot", ("int", 42))]
    assert byh[("support-bot", "042")] != byh[("support-bot", ("int", 42))]
    assert byh[("flag4", ("int", 2))] == byh[("flag", ("int", 42))]
    assert byh[("flag", "caf\u00e9")] != byh[("flag", unicodedata.normalize("NFD", "caf\u00e9"))]
    assert any(len(key_bytes(c["salt"], c["unit"])) >= 1000 for c in cases)
    assert {len(key_bytes(c["salt"], c["unit"])) % 4 for c in cases} == {0, 1, 2, 3}
    return number("hash", cases)


# --------------------------------------------------------------------------------------
# searches for interesting units (deterministic)
# --------------------------------------------------------------------------------------

SEARCH_SALT = "support-bot"
SEARCH_N = 2_000_000


def search_units():
    """Scan units "user-0" .. "user-<N-1>" under salt "support-bot" (mmh3 only, fast),
    returning interesting picks; every pick is re-hashed through bucket_hash()."""
    lo = (None, M32 + 1)
    hi = (None, -1)
    below_half = (None, -1)
    above_half = (None, M32 + 1)
    bnd_after = (None, 2**33)  # (h*100000) mod 2^32 smallest: just after a bucket boundary
    bnd_before = (None, -1)  # largest: just before a boundary
    want_buckets = {0, 1, 999, 1000, 4999, 5000, 24999, 25000, 49999, 50000, 89999, 90000, 94999, 95000, 99999}
    by_bucket: dict[int, int] = {}
    salt = SEARCH_SALT.encode()
    half = 2**31
    for i in range(SEARCH_N):
        h = mmh3.hash(salt + b"user-%d" % i, 0, signed=False)
        if h < lo[1]:
            lo = (i, h)
        if h > hi[1]:
            hi = (i, h)
        if h < half and h > below_half[1]:
            below_half = (i, h)
        if h >= half and h < above_half[1]:
            above_half = (i, h)
        r = (h * PERCENT_TOTAL) & M32
        if r < bnd_after[1]:
            bnd_after = (i, r)
        if r > bnd_before[1]:
            bnd_before = (i, r)
        b = (h * PERCENT_TOTAL) >> 32
        if b in want_buckets and b not in by_bucket:
            by_bucket[b] = i
    assert want_buckets <= set(by_bucket), sorted(want_buckets - set(by_bucket))
    u = lambda i: f"user-{i}"  # noqa: E731
    return {
        "min": u(lo[0]),
        "max": u(hi[0]),
        "below_half": u(below_half[0]),
        "above_half": u(above_half[0]),
        "bnd_after": u(bnd_after[0]),
        "bnd_before": u(bnd_before[0]),
        "by_bucket": {b: u(i) for b, i in sorted(by_bucket.items())},
    }


# --------------------------------------------------------------------------------------
# bucket.json
# --------------------------------------------------------------------------------------

TOTALS = (1, 2, 3, 100, 10_000, 100_000, 4_294_967_295)


def bucket_cases(picks) -> list:
    units = [
        ("support-bot", "user-123", "typical key"),
        ("support-bot", 42, "integer unit 42 (decimal \"42\")"),
        ("support-prompt", "user-123", "same unit under another salt"),
        ("", "", "empty key, h = 0 exactly: bucket 0 for every total"),
        ("flag", "\u4e2d\u6587\u7528\u6237", "CJK unit"),
        (SEARCH_SALT, picks["min"], f"smallest hash among {SEARCH_N} scanned user ids (near 0)"),
        (SEARCH_SALT, picks["max"], f"largest hash among {SEARCH_N} scanned user ids (near 2^32-1): top bucket for every total"),
        (SEARCH_SALT, picks["below_half"], "largest scanned hash below 2^31 (just under the 50% line)"),
        (SEARCH_SALT, picks["above_half"], "smallest scanned hash at or above 2^31 (negative if misread as signed i32)"),
        (SEARCH_SALT, picks["bnd_after"], "h*100000 lands just after a multiple of 2^32 (just past a W=100000 bucket boundary)"),
        (SEARCH_SALT, picks["bnd_before"], "h*100000 lands just before a multiple of 2^32 (last hash of a W=100000 bucket)"),
    ]
    cases = []
    for salt, unit, what in units:
        h = bucket_hash(salt, unit)
        for total in TOTALS:
            b = bucket_of(h, total)
            note = ""
            wrong = {f: v for f, v in float_buckets(h, total).items() if v != b}
            if wrong:
                note = "; float64 gets this wrong (" + ", ".join(f"{f} gives {v}" for f, v in wrong.items()) + "): use exact integer arithmetic"
            if total == MAX_TOTAL:
                note += "; W = 2^32-1 is the largest total: bucket = h - 1 when h > 0 (h*W needs 64-bit arithmetic)"
            cases.append(
                {
                    "description": f"{what}: salt {show(salt)}, unit {show(unit)}, h = {h:#010x} ({h}), total {total} -> bucket {b}{note}",
                    "salt": salt,
                    "unit": unit,
                    "total": total,
                    "bucket": b,
                }
            )
    assert all(c["bucket"] == 0 for c in cases if c["total"] == 1)
    return number("bucket", cases)


# --------------------------------------------------------------------------------------
# split.json
# --------------------------------------------------------------------------------------


def pct_table(pairs):
    return [[name, percent_to_weight(p)] for name, p in pairs]


def split_cases(picks) -> list:
    cases = []

    def add(salt, unit, weights, why):
        total = sum(w for _, w in weights)
        assert 1 <= total <= MAX_TOTAL
        h = bucket_hash(salt, unit)
        b = bucket_of(h, total)
        v = pick_variant(weights, b)
        assert dict(weights)[v] > 0, "a zero-weight variant can never win"
        table = ", ".join(f"{n}={w}" for n, w in weights)
        cases.append(
            {
                "description": f"{why}: salt {show(salt)}, unit {show(unit)}, weights [{table}], bucket {b} of {total} -> {v}",
                "salt": salt,
                "unit": unit,
                "weights": [list(x) for x in weights],
                "total": total,
                "bucket": b,
                "variant": v,
            }
        )
        return v

    # A: 90/5/5 in percent -> W = 100000
    t905 = pct_table([("control", "90"), ("v2", "5"), ("v3", "5")])
    for i in (1, 2, 3, 123, 124, 999):
        add("support-bot", f"user-{i}", t905, "90/5/5 percent split (W=100000)")
    add("support-bot", 42, t905, "90/5/5 split with integer unit 42")
    bb = picks["by_bucket"]
    for b, why in (
        (0, "bucket 0: first bucket of control"),
        (89999, "bucket 89999: last bucket of control (cumulative 90000 > 89999)"),
        (90000, "bucket 90000: first bucket of v2 (control's cumulative 90000 is not > 90000)"),
        (94999, "bucket 94999: last bucket of v2"),
        (95000, "bucket 95000: first bucket of v3"),
        (99999, "bucket 99999: last bucket of v3"),
    ):
        add(SEARCH_SALT, bb[b], t905, f"90/5/5 boundary, {why}")

    # B: uneven integer weights [1, 2, 3]
    t123 = [["x", 1], ["y", 2], ["z", 3]]
    got = set()
    for i in range(1, 9):
        got.add(add("exp-123", f"user-{i}", t123, "integer weights 1:2:3 (total 6)"))
    assert got == {"x", "y", "z"}, got

    # C: zero weights never win, wherever they are
    tz = [["never-first", 0], ["a", 1], ["never-mid", 0], ["b", 1], ["never-last", 0]]
    got = set()
    for i in range(1, 7):
        got.add(add("exp-zero", f"user-{i}", tz, "zero-weight variants (first, middle, last) can never win; total 2"))
    assert got == {"a", "b"}, got

    # D: monotonic ramp of v2.2 over stable: [0, p*1000) is v2.2
    ramp_units = [(SEARCH_SALT, bb[999], "in the ramp from 1%"), (SEARCH_SALT, bb[4999], "joins at 5%"), (SEARCH_SALT, bb[25000], "joins at 50%")]
    for salt, unit, when in ramp_units:
        was_in = False
        for p in ("0", "1", "5", "25", "50", "100"):
            w = percent_to_weight(p)
            t = [["v2.2", w], ["stable", PERCENT_TOTAL - w]]
            v = add(salt, unit, t, f"ramp of v2.2 at {p}% (unit {when}; once in, it stays in as p grows)")
            if was_in:
                assert v == "v2.2", "monotonic ramp violated"
            was_in = v == "v2.2"

    # E: three-way split with 0.001 % precision
    t333 = pct_table([("a", "33.333"), ("b", "33.333"), ("c", "33.334")])
    assert sum(w for _, w in t333) == PERCENT_TOTAL
    for i in (7, 8, 9, 10):
        add("three-way", f"user-{i}", t333, "33.333/33.333/33.334 percent split")

    # F: the smallest possible slice, 0.001 % = weight 1 of 100000
    ttiny = pct_table([("tiny", "0.001"), ("rest", "99.999")])
    add(SEARCH_SALT, bb[0], ttiny, "0.001% slice: only bucket 0 gets tiny")
    add(SEARCH_SALT, bb[1], ttiny, "0.001% slice: bucket 1 is already rest")

    # G: the largest total, 2^32 - 1
    tbig = [["low", 2**31], ["high", 2**31 - 1]]
    for key in ("min", "below_half", "above_half", "max"):
        add(SEARCH_SALT, picks[key], tbig, f"largest allowed total 4294967295 ({key.replace('_', ' ')} hash of the scan)")

    # H: the worked examples of docs/bucketing.md
    for salt, unit, _h, _b, _v in WORKED_EXAMPLES[1:]:  # support-bot/user-123 is split-004
        assert add(salt, unit, t905, "worked example in docs/bucketing.md, 90/5/5") == _v

    return number("split", cases)


# --------------------------------------------------------------------------------------


def explain(salt: str, unit) -> None:
    key = key_bytes(salt, unit)
    trace: list = []
    h = murmur3_x86_32(key, 0, trace)
    assert h == reference_hash(key)
    print(f"salt {salt!r} unit {unit!r}")
    print(f"bytes ({len(key)}): {key.hex(' ')}")
    for t in trace:
        if t[0] == "block":
            _, i, blk, k, km, hh = t
            print(f"  block {i}: {blk.hex(' ')} -> k = {k:#010x}, mixed k = {km:#010x}; h after block = {hh:#010x}")
        elif t[0] == "tail":
            _, tail, k, km, hh = t
            print(f"  tail: {tail.hex(' ') or '(none)'} -> k = {k:#010x}, mixed k = {km:#010x}; h after tail = {hh:#010x}")
        elif t[0] == "len":
            print(f"  h ^= len {t[1]} -> {t[2]:#010x}")
        else:
            print(f"  fmix32 -> h = {t[1]:#010x} = {t[1]}")
    b = bucket_of(h, PERCENT_TOTAL)
    print(f"  bucket(W=100000) = {b}; 90/5/5 -> {pick_variant(pct_table([('control', '90'), ('v2', '5'), ('v3', '5')]), b)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="verify the files are up to date, write nothing")
    ap.add_argument("--explain", nargs=2, metavar=("SALT", "UNIT"), help="print a byte-level trace")
    ap.add_argument("--int", action="store_true", help="with --explain: the unit is an integer")
    args = ap.parse_args()

    if args.explain:
        salt, unit = args.explain
        explain(salt, int(unit) if args.int else unit)
        return 0

    check_worked_examples()
    picks = search_units()
    docs = {
        "murmur3.json": {
            "description": "MurmurHash3 x86_32 known answers with various seeds (flagrail uses seed 0; these pin the primitive itself). key is hashed as UTF-8; hash is unsigned 32-bit.",
            "cases": murmur3_cases(),
        },
        "hash.json": {
            "description": "Bucketing hash v1: h = MurmurHash3_x86_32(UTF-8(salt) ++ UTF-8(unit), seed 0) as u32. An integer unit is written in decimal first. No separator, no normalization, no trimming. See docs/bucketing.md.",
            "hash_version": HASH_VERSION,
            "cases": hash_cases(),
        },
        "bucket.json": {
            "description": "Bucketing v1: bucket = (h as u64 * total as u64) >> 32 with h from hash.json's rule; 0 <= bucket < total, 1 <= total <= 4294967295. See docs/bucketing.md.",
            "hash_version": HASH_VERSION,
            "cases": bucket_cases(picks),
        },
        "split.json": {
            "description": "Split selection v1: total = sum of weights, bucket as in bucket.json, the first variant (in declared order) whose cumulative weight exceeds the bucket wins. Percentages are weights over 100000. See docs/bucketing.md.",
            "hash_version": HASH_VERSION,
            "cases": split_cases(picks),
        },
    }
    ok = True
    for name, doc in docs.items():
        ok &= emit(OUT_DIR / name, doc, args.check)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
