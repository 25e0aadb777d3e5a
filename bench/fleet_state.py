"""Shared fleet state: what it costs a call, and how far a budget overshoots against its bound.

1. **Call overhead** (Rust, release): the same budgeted call (count the request, evaluate,
   succeed) on a handle without and with `redis=` state attached to a local redis-server; the
   median ns per call of each and the difference. Runs
   `cargo run --release -p flagrail-fleet --example call_overhead`. Target (issue 16):
   ≤ 3 µs of overhead at the median, no round trip on the hot path.
2. **Budget overshoot**: 4 Python + 4 Node processes (tests/python/fleet_redis.py) share
   `max_requests: 100` per user; for each of `--users` users every process makes 250 calls
   (10 concurrent), 2,000 per user. Printed: served (not downgraded) per user, the largest,
   and the documented bound `100 + 8 × 5` (one lease per process).

Run once: `make build-python build-node && .venv/bin/python bench/fleet_state.py [--users 5]`
(needs redis-server; loopback only; bounded by the call counts; about a minute plus the
release build).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))

import fleet_redis  # noqa: E402
from redis_server import RedisServer  # noqa: E402

PYTHON = 4
NODE = 4


def call_overhead() -> dict[str, object]:
    done = subprocess.run(
        ["cargo", "run", "-q", "--release", "-p", "flagrail-fleet", "--example", "call_overhead"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def overshoot(users: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        workers = fleet_redis.start(Path(tmp) / "fleet", server.url, python=PYTHON, node=NODE)
        try:
            for _ in range(150):
                states = [r["fleet"] for r in fleet_redis.ask_all(workers, "status")]
                if all(s["connected"] and s["fleet_size"] == PYTHON + NODE for s in states):
                    break
                __import__("time").sleep(0.1)
            served = []
            for user in range(users):
                replies = fleet_redis.ask_all(workers, f"budget 250 user-{user}")
                served.append(sum(r["served"] for r in replies))
            fleet_redis.ask_all(workers, "close")
            spend = [fleet_redis.fleet_spend(server, f"user-{user}") for user in range(users)]
        finally:
            for worker in workers:
                worker.stop()
            server.stop()
    return {
        "limit": fleet_redis.LIMIT,
        "bound": fleet_redis.LIMIT + (PYTHON + NODE) * fleet_redis.LEASE,
        "calls_per_user": 250 * (PYTHON + NODE),
        "served_per_user": served,
        "max_served": max(served),
        "max_overshoot": max(served) - fleet_redis.LIMIT,
        "spend_in_redis_per_user": spend,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=5)
    args = parser.parse_args()
    overhead = call_overhead()
    print("call overhead:", json.dumps(overhead))
    budget = overshoot(args.users)
    print("budget overshoot:", json.dumps(budget))
    print(
        f"RESULT call {overhead['median_ns_without_fleet']:.0f} ns -> {overhead['median_ns_with_fleet']:.0f} ns "
        f"(+{overhead['overhead_ns']:.0f} ns); budget served max {budget['max_served']} "
        f"of limit {budget['limit']}, bound {budget['bound']}"
    )


if __name__ == "__main__":
    main()
