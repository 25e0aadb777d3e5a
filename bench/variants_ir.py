"""Three flags for one request, as instructions per loop iteration (docs/benchmarks.md, "Three
flags for one request"): the loops of bench/python_eval.py's ``three_flags`` without timing, for
``valgrind --tool=callgrind`` on a machine too loaded for wall-clock numbers.

    MODE=one|many|separate P=1 valgrind --tool=callgrind .venv/bin/python bench/variants_ir.py
    MODE=one|many|separate P=2 valgrind --tool=callgrind .venv/bin/python bench/variants_ir.py

Instructions per iteration = (Ir(P=2) - Ir(P=1)) / N: start-up and the untimed warm-up pass
cancel out. ``one``: one ``variant``; ``separate``: three ``variant`` calls; ``many``: one
``variants(context, keys)`` reading the three results; ``one_key``: ``variants`` with one key.

``floor``: the ``many`` loop with no flag logic at all, the least any ``variants`` returning the
documented ``{key: Variant}`` dict can cost: the context dict is built and passed to the
cheapest C call there is (``isinstance``), and the result is the cheapest three-key dict there is
(a dict display, built by the interpreter without a call), holding a result object made before
the loop, whose ids are read as in ``many``. docs/benchmarks.md compares it with 1.5 x ``one``.
``floor_tuple``: the same with a tuple in the order of the keys (not the documented API).
"""

from __future__ import annotations

import os

from flagrail import Flags

N = int(os.environ.get("N", "20000"))
P = int(os.environ.get("P", "1"))
MODE = os.environ.get("MODE", "many")

SAME = {
    "bucket_by": "user_id",
    "variants": {"control": {"model": "model-a"}, "v2": {"model": "model-b"}, "v3": {"model": "model-c"}},
    "default": "control",
    "rules": [
        {"id": "internal", "when": {"attr": "segment", "op": "eq", "value": "internal"}, "serve": "v3"},
        {
            "id": "split",
            "split": [
                {"variant": "control", "percent": 90},
                {"variant": "v2", "percent": 5},
                {"variant": "v3", "percent": 5},
            ],
        },
    ],
}
THREE = Flags.from_dict({"revision": "bench-3", "flags": {"chat-model": SAME, "prompt": SAME, "temperature": SAME}})
USERS = [(f"user-{i}", "internal" if i % 10 == 0 else "external") for i in range(N)]
KEYS = ["chat-model", "prompt", "temperature"]
variant, variants = THREE.variant, THREE.variants


def one() -> int:
    sink = 0
    for uid, seg in USERS:
        v = variant("chat-model", {"user_id": uid, "segment": seg})
        sink += len(v.id)
    return sink


def many() -> int:
    sink = 0
    for uid, seg in USERS:
        r = variants({"user_id": uid, "segment": seg}, KEYS)
        sink += len(r["chat-model"].id) + len(r["prompt"].id) + len(r["temperature"].id)
    return sink


ONE_KEY = ["chat-model"]


def one_key() -> int:
    sink = 0
    for uid, seg in USERS:
        r = variants({"user_id": uid, "segment": seg}, ONE_KEY)
        sink += len(r["chat-model"].id)
    return sink


MADE_BEFORE = variant("chat-model", {"user_id": "user-0", "segment": "external"})


def floor() -> int:
    sink = 0
    made = MADE_BEFORE
    for uid, seg in USERS:
        r = isinstance({"user_id": uid, "segment": seg}, tuple) or {"chat-model": made, "prompt": made, "temperature": made}
        sink += len(r["chat-model"].id) + len(r["prompt"].id) + len(r["temperature"].id)
    return sink


def floor_tuple() -> int:
    """``floor`` with a tuple in the order of ``keys`` instead of the dict (not the API)."""
    sink = 0
    made = MADE_BEFORE
    for uid, seg in USERS:
        a, b, c = isinstance({"user_id": uid, "segment": seg}, tuple) or (made, made, made)
        sink += len(a.id) + len(b.id) + len(c.id)
    return sink


def separate() -> int:
    sink = 0
    for uid, seg in USERS:
        ctx = {"user_id": uid, "segment": seg}
        a, b, c = variant("chat-model", ctx), variant("prompt", ctx), variant("temperature", ctx)
        sink += len(a.id) + len(b.id) + len(c.id)
    return sink


if __name__ == "__main__":
    loop = {"one": one, "many": many, "separate": separate, "one_key": one_key, "floor": floor, "floor_tuple": floor_tuple}[MODE]
    loop()  # warm-up (result objects, key slots, interned ids)
    for _ in range(P):
        loop()
