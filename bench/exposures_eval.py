"""Instructions per ``flags.variant`` of the evaluation benchmark, with exposures off or on.

    python bench/exposures_eval.py PASSES [on]

Runs PASSES passes over 20,000 users of the scenario of bench/python_eval.py (build the
context dict, evaluate, read the id), after one warm-up pass. Run it under
``valgrind --tool=callgrind`` with 1 and 2 passes: (Ir(2) - Ir(1)) / 20,000 is the instructions
per iteration, independent of machine load (docs/benchmarks.md, "Exposures"). ``on`` builds the
handle with ``exposures={"window": 3600.0, "sample": 1.0}`` and an ``on_event`` callback that
counts events.
"""

from __future__ import annotations

import sys

from flagrail import Flags

USERS = 20_000
DOCUMENT = {
    "revision": "bench-1",
    "flags": {
        "chat-model": {
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
    },
}

passes = int(sys.argv[1])
on = len(sys.argv) > 2 and sys.argv[2] == "on"
if on:
    flags = Flags.from_dict(DOCUMENT, exposures={"window": 3600.0, "sample": 1.0})
    seen = [0]

    def count(event: object) -> None:
        seen[0] += 1

    flags.on_event(count)
else:
    flags = Flags.from_dict(DOCUMENT)
users = [(f"user-{i}", "internal" if i % 10 == 0 else "external") for i in range(USERS)]


def one_pass() -> int:
    n = 0
    for uid, seg in users:
        n += len(flags.variant("chat-model", {"user_id": uid, "segment": seg}).id or "")
    return n


one_pass()
for _ in range(passes):
    one_pass()
