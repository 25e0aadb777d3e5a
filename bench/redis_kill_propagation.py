"""Kill propagation over Redis: how long from `flagrail kill --redis` until each of 16
processes serves the kill.

16 processes (8 Python `Flags.from_redis`, 8 Node `Flags.fromRedis`, the built packages)
follow one document in a local redis-server, with the safety-net poll set to 10 minutes so
that only pub/sub can deliver. Each round runs the CLI (`flagrail kill --redis`, then
`unkill` on the next round); every process checks its flag every millisecond and reports the
wall-clock time (this machine's clock, shared by all processes) at which it first sees the new
state. Two latencies per process and round:

- from the CLI's start (what an operator sees: includes starting the CLI and connecting);
- from the write (the audit stream entry's ID is Redis's clock in ms at the write).

Printed: p50 / p99 / max over all samples of each, and a RESULT line.
Target (issue 16): p99 <= 100 ms on loopback.

Run: `make build-cli-release build-python-release build-node-release && .venv/bin/python
bench/redis_kill_propagation.py`
(bounded: --rounds, default 30, and 20 s per round at most; needs redis-server).
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))

from redis_server import RedisServer  # noqa: E402

# The release CLI when built (make build-cli-release), else the debug one.
CLI = next(
    (path for path in (REPO / "target" / "release" / "flagrail", REPO / "target" / "debug" / "flagrail") if path.exists()),
    REPO / "target" / "debug" / "flagrail",
)
AUDIT = "flagrail:{flagrail:document}:audit"

PYTHON_WATCHER = """
import sys, time
from flagrail import Flags
flags = Flags.from_redis(sys.argv[1], poll_interval=600)
while not flags.status()["remote"]["subscribed"]:
    time.sleep(0.001)
print("ready", flush=True)
killed = False
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    now_killed = flags.variant("chat").reason == "KILLED"
    if now_killed != killed:
        killed = now_killed
        print(f"{'killed' if killed else 'live'} {time.time_ns()}", flush=True)
    time.sleep(0.001)
"""

NODE_WATCHER = """
const { Flags } = require(process.argv[1])
const flags = Flags.fromRedis(process.argv[2], { pollIntervalMs: 600000 })
const end = Date.now() + Number(process.argv[3]) * 1000
let killed = false
let ready = false
const tick = setInterval(() => {
  if (!ready) {
    if (flags.status().remote.subscribed) { ready = true; console.log('ready') }
    return
  }
  const now = flags.variant('chat').reason === 'KILLED'
  if (now !== killed) {
    killed = now
    // Wall-clock microseconds (the same clock as Python's time.time_ns), printed as ns.
    const micros = Math.round((performance.timeOrigin + performance.now()) * 1000)
    console.log(`${killed ? 'killed' : 'live'} ${micros}000`)
  }
  if (Date.now() > end) { clearInterval(tick); flags.close() }
}, 1)
"""


def document() -> str:
    return json.dumps(
        {
            "revision": "bench-1",
            "flags": {
                "chat": {
                    "variants": {"control": {"model": "model-a"}, "human": {}},
                    "default": "control",
                    "kill": {"active": False, "serve": "human"},
                }
            },
        }
    )


def reader(index: int, stream: IO[str], lines: queue.Queue[tuple[int, str]]) -> None:
    for line in stream:
        lines.put((index, line.strip()))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--python", type=int, default=8)
    parser.add_argument("--node", type=int, default=8)
    args = parser.parse_args()
    lifetime = 60 + 20 * args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "flags.json").write_text(document())
        with RedisServer.started(work / "redis") as redis:
            done = subprocess.run([str(CLI), "push", "flags.json", "--redis", redis.url], cwd=work, capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stderr
            lines: queue.Queue[tuple[int, str]] = queue.Queue()
            processes: list[subprocess.Popen[str]] = []
            commands = [[sys.executable, "-c", PYTHON_WATCHER, redis.url, str(lifetime)]] * args.python
            commands += [["node", "-e", NODE_WATCHER, str(REPO / "bindings-node"), redis.url, str(lifetime)]] * args.node
            try:
                for index, command in enumerate(commands):
                    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                    processes.append(process)
                    assert process.stdout is not None
                    threading.Thread(target=reader, args=(index, process.stdout, lines), daemon=True).start()
                ready = 0
                deadline = time.monotonic() + 60
                while ready < len(commands):
                    _, line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                    ready += line == "ready"
                from_cli: list[float] = []
                from_write: list[float] = []
                for round_ in range(1, args.rounds + 1):
                    kill = round_ % 2 == 1
                    verb = ["kill", "--flag", "chat", "--reason", "bench"] if kill else ["unkill", "--flag", "chat"]
                    started = time.time_ns()
                    done = subprocess.run([str(CLI), verb[0], "--redis", redis.url, *verb[1:]], cwd=work, capture_output=True, text=True, check=False)
                    assert done.returncode == 0, done.stderr
                    newest = redis.cli("xrevrange", AUDIT, "+", "-", "count", "1").split()[0]
                    written_ms = int(newest.split("-")[0])
                    expected = "killed" if kill else "live"
                    seen: dict[int, int] = {}
                    round_deadline = time.monotonic() + 20
                    while len(seen) < len(commands):
                        index, line = lines.get(timeout=max(0.1, round_deadline - time.monotonic()))
                        state, _, at = line.partition(" ")
                        if state == expected:
                            seen[index] = int(at)
                    from_cli += [(at - started) / 1e6 for at in seen.values()]
                    from_write += [at / 1e6 - written_ms for at in seen.values()]
                    print(f"round {round_:2d} ({expected}): last process after {max(seen.values()) / 1e6 - started / 1e6:6.1f} ms from the CLI start", flush=True)
            finally:
                for process in processes:
                    process.kill()
                    process.wait()
    print()
    print(f"kill propagation over Redis to {args.python} Python + {args.node} Node processes, {args.rounds} rounds, {len(from_cli)} samples; CLI {CLI.relative_to(REPO)}")
    for name, values in (("from the CLI start", from_cli), ("from the write (ms clock)", from_write)):
        print(
            f"  {name:26s}: p50 {statistics.median(values):6.1f} ms   p99 {percentile(values, 99):6.1f} ms   max {max(values):6.1f} ms"
        )
    print(
        "RESULT "
        + json.dumps(
            {
                "name": "redis_kill_propagation",
                "processes": len(commands),
                "samples": len(from_cli),
                "p50_ms_from_cli": round(statistics.median(from_cli), 2),
                "p99_ms_from_cli": round(percentile(from_cli, 99), 2),
                "p50_ms_from_write": round(statistics.median(from_write), 2),
                "p99_ms_from_write": round(percentile(from_write, 99), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
