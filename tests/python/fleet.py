"""A fleet for kill drills: Python and Node processes polling one document from nginx.

Each process loads the document with ``from_url`` / ``fromUrl`` and evaluates the same flag
every 2 ms; whenever the served variant changes it prints ``<variant> <unix ns>``. A drill
publishes a new document (temp file + rename, as a deploy would) and waits until every
process reports the expected variant. Used by tests/python/test_fleet_drill.py (correctness)
and bench/fleet_drill.py (the time until the last process switched).
"""

from __future__ import annotations

import json
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from nginx_server import Nginx

REPO = Path(__file__).resolve().parents[2]
FLAG = "assistant"

PYTHON_WORKER = """
import sys, time
from flagrail import Flags
flags = Flags.from_url(sys.argv[1], poll_interval=float(sys.argv[2]))
print("ready", flush=True)
last = None
while True:
    variant = flags.variant("assistant", {"user_id": "u-1"}).id
    if variant != last:
        print(variant, time.time_ns(), flush=True)
        last = variant
    time.sleep(0.002)
"""

NODE_WORKER = """
const { Flags } = require(process.argv[1])
const flags = Flags.fromUrl(process.argv[2], { pollIntervalMs: Number(process.argv[3]) })
console.log('ready')
let last = null
setInterval(() => {
  const variant = flags.variant('assistant', { user_id: 'u-1' }).id
  if (variant !== last) {
    last = variant
    const ns = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6))
    console.log(`${variant} ${ns}`)
  }
}, 2)
"""


def document(drill: int, killed: bool) -> bytes:
    """The fleet's document; revisions are fixed-width, and a kill changes the size too."""
    return json.dumps(
        {
            "revision": f"drill-{drill:04d}-{'killed' if killed else 'live'}",
            "flags": {
                FLAG: {
                    "variants": {"model": {"model": "model-a"}, "human": {"ai": False, "message": "Talk to a person"}},
                    "default": "model",
                    "kill": {"active": killed, "serve": "human"},
                }
            },
        },
        indent=2,
    ).encode()


class Fleet:
    """`python` + `node` processes polling `nginx` every `poll_interval` seconds."""

    def __init__(self, nginx: Nginx, python: int, node: int, poll_interval: float) -> None:
        self.nginx = nginx
        self.url = nginx.url("flags.json")
        self.events: queue.Queue[tuple[int, str, int]] = queue.Queue()
        self.processes: list[subprocess.Popen[str]] = []
        commands = [[sys.executable, "-c", PYTHON_WORKER, self.url, str(poll_interval)]] * python + [
            ["node", "-e", NODE_WORKER, str(REPO / "bindings-node"), self.url, str(int(poll_interval * 1000))]
        ] * node
        for index, command in enumerate(commands):
            process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            self.processes.append(process)
            assert process.stdout is not None
            threading.Thread(target=self._read, args=(index, process.stdout), daemon=True).start()
        self.current: dict[int, str] = {}
        self._expect_ready()

    def _read(self, index: int, stream: IO[str]) -> None:
        for line in stream:
            parts = line.split()
            if parts == ["ready"]:
                self.events.put((index, "ready", 0))
            elif len(parts) == 2:
                self.events.put((index, parts[0], int(parts[1])))

    def _next(self, deadline: float) -> tuple[int, str, int]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the fleet did not converge; last variants {self.current}")
        try:
            return self.events.get(timeout=left)
        except queue.Empty:
            raise TimeoutError(f"the fleet did not converge; last variants {self.current}") from None

    def _expect_ready(self) -> None:
        ready: set[int] = set()
        deadline = time.monotonic() + 60
        while len(ready) < len(self.processes) or len(self.current) < len(self.processes):
            index, variant, _ = self._next(deadline)
            if variant == "ready":
                ready.add(index)
            else:
                self.current[index] = variant

    def publish_and_wait(self, data: bytes, variant: str, timeout: float = 30) -> list[float]:
        """Publishes `data` and waits until every process serves `variant`; returns each
        process's seconds from the publish to its switch."""
        published = time.time_ns()
        self.nginx.publish("flags.json", data)
        switched: dict[int, int] = {i: published for i, v in self.current.items() if v == variant}
        deadline = time.monotonic() + timeout
        while len(switched) < len(self.processes):
            index, seen, at = self._next(deadline)
            if seen == "ready":
                continue
            self.current[index] = seen
            if seen == variant:
                switched[index] = at
            else:
                switched.pop(index, None)
        return [(at - published) / 1e9 for at in switched.values()]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def start(prefix: Path, python: int = 4, node: int = 4, poll_interval: float = 1.0) -> tuple[Nginx, Fleet]:
    nginx = Nginx(prefix).start()
    try:
        nginx.publish("flags.json", document(0, killed=False))
        return nginx, Fleet(nginx, python, node, poll_interval)
    except BaseException:
        nginx.stop()
        raise


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": statistics.median(values), "p100": max(values)}
