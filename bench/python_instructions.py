"""Instructions per evaluation of the Python scenario, for callgrind (docs/benchmarks.md).

Wall-clock time on a shared machine is noise; instruction counts are not. This runs the
benchmark's loop (build the dict, ``flags.variant``, read ``.id``) or the PyO3 floor's, one
warm-up pass and then ``PASSES`` passes over ``N`` users; the difference between a run with
``PASSES=2`` and one with ``PASSES=1``, divided by ``N``, is the cost of one iteration with
start-up cancelled out::

    for p in 1 2; do PYTHONHASHSEED=0 WHICH=variant PASSES=$p N=20000 \\
      valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$p.out \\
      .venv/bin/python bench/python_instructions.py; done
    # (summary of cg.2.out - summary of cg.1.out) / 20000

``PYTHONHASHSEED=0``: string hashes decide how often a dict probe collides, which moves the
count by up to ~100 instructions per iteration between runs. ``WHICH=floor`` times
bench/pyo3-floor instead (``make build-pyo3-floor``).
"""

from __future__ import annotations

import os
import sys

N = int(os.environ.get("N", "20000"))
PASSES = int(os.environ.get("PASSES", "1"))
WHICH = os.environ.get("WHICH", "variant")

# The scenario of bench/python_eval.py, users included.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ["N"] = str(max(N, 1000))
from python_eval import DOCUMENT, USERS  # noqa: E402

from flagrail import Flags  # noqa: E402


def main() -> None:
    flags = Flags.from_dict(DOCUMENT)
    users = USERS[:N]
    if WHICH == "floor":
        import flagrail_pyo3_floor  # type: ignore[import-not-found]

        floor_variant = flagrail_pyo3_floor.variant

        def one_pass() -> int:
            sink = 0
            for uid, seg in users:
                sink += len(floor_variant("chat-model", {"user_id": uid, "segment": seg}))
            return sink

    elif WHICH == "variant":

        def one_pass() -> int:
            sink = 0
            for uid, seg in users:
                v = flags.variant("chat-model", {"user_id": uid, "segment": seg})
                sink += len(v.id or "")
            return sink

    else:
        sys.exit("WHICH must be variant or floor")
    one_pass()  # warm-up: caches, result pools, specialised bytecode
    for _ in range(PASSES):
        one_pass()


if __name__ == "__main__":
    main()
