"""Fleet kill drill: how long until the last process of a fleet serves the kill variant.

8 processes (4 Python, 4 Node, the built packages) poll one document from a local nginx at a
1 s interval (`Flags.from_url` / `Flags.fromUrl`). Each drill publishes a killed document
(temp file + rename), waits until every process serves the kill variant, then publishes the
live document again and waits for that too; publishes start at a random offset so they fall
anywhere in the poll cycle. Printed: p50 and p100 over the drills of the time from the publish
to the last process's switch (the figure docs/benchmarks.md and the runbook's fire drill
quote), and the same for the first process. Target: ≤ poll interval + 250 ms.

Run: `make build-python build-node && .venv/bin/python bench/fleet_drill.py [--drills 20]`
(needs nginx; loopback only; about 1.5 minutes).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))

import fleet  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--drills", type=int, default=20)
    parser.add_argument("--python", type=int, default=4)
    parser.add_argument("--node", type=int, default=4)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        nginx, processes = fleet.start(Path(tmp) / "nginx", args.python, args.node, args.poll_interval)
        try:
            last: list[float] = []
            first: list[float] = []
            restore: list[float] = []
            for drill in range(1, args.drills + 1):
                time.sleep(random.uniform(0, args.poll_interval))
                switched = processes.publish_and_wait(fleet.document(drill, killed=True), "human")
                last.append(max(switched))
                first.append(min(switched))
                time.sleep(random.uniform(0, args.poll_interval))
                back = processes.publish_and_wait(fleet.document(drill, killed=False), "model")
                restore.append(max(back))
                print(f"drill {drill:2d}: last process killed after {max(switched) * 1000:7.1f} ms", flush=True)
            statuses = [status for status, _, uri in nginx.log() if uri == "/flags.json"]
        finally:
            processes.stop()
            nginx.stop()
    ms = lambda values, q: (statistics.median(values) if q == 50 else max(values)) * 1000  # noqa: E731
    print()
    print(
        f"fleet: {args.python} Python + {args.node} Node processes, poll interval "
        f"{args.poll_interval * 1000:.0f} ms, {args.drills} drills"
    )
    print(f"time to the LAST process serving the kill:  p50 {ms(last, 50):7.1f} ms   p100 {ms(last, 100):7.1f} ms")
    print(f"time to the FIRST process serving the kill: p50 {ms(first, 50):7.1f} ms   p100 {ms(first, 100):7.1f} ms")
    print(f"time to the last process back on the model: p50 {ms(restore, 50):7.1f} ms   p100 {ms(restore, 100):7.1f} ms")
    target = args.poll_interval * 1000 + 250
    print(f"target ≤ {target:.0f} ms: {'met' if max(last) * 1000 <= target else 'NOT met'} (p100)")
    print(f"nginx answered {len(statuses)} polls: {statuses.count(304)} × 304, {statuses.count(200)} × 200")


if __name__ == "__main__":
    main()
