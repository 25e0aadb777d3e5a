"""A fleet sharing state through one redis-server: Python and Node worker processes opened with
``redis=URL`` / ``{ redis: URL }`` on the same document file, or on the document pushed to that
Redis (``from_redis(URL, redis=URL)`` / ``fromRedis(URL, { redis: URL })``, which follows
``flagrail kill --redis``), driven line by line.

Each worker reads one command per line on stdin and answers one JSON line on stdout:

- ``status`` -> ``{"fleet": status()["fleet"]}``
- ``budget N USER`` -> N calls of ``chat`` for USER, 10 at a time (threads / promises), with a
  20 ms pause every 50 calls: ``{"served": calls not downgraded by the budget, "errors": app
  exceptions}``
- ``fail N BASE`` -> N calls of ``candidate`` for users BASE..BASE+N whose function fails on
  ``new``: ``{"errors": ...}``
- ``probe N`` -> evaluates ``candidate`` for N users: ``{"new": how many got "new"}``
- ``pins N`` -> evaluates the sticky flag ``conv`` for conversations c0..cN-1:
  ``{"variants": [...], "reasons": [...]}``
- ``fleet`` -> from ``fleet_metrics()`` / ``fleetMetrics()``: ``{"errors": candidate/new's
  errors, "processes": ...}`` (``null`` before the first read)
- ``reason FLAG`` -> ``{"reason": the reason FLAG is served for one user, "revision": ...}``
- ``close`` -> closes the handle (spend reported, leases returned) and exits.

Used by tests/python/test_fleet_redis.py and bench/fleet_budget.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]

DOCUMENT: dict[str, Any] = {
    "revision": "fleet-redis-1",
    "flags": {
        "chat": {
            "variants": {"opus": {"model": "opus"}, "haiku": {"model": "haiku"}},
            "default": "opus",
            "budgets": [
                {"id": "per-user", "per": "user_id", "max_requests": 100, "window": "1h", "action": {"serve": "haiku"}}
            ],
        },
        "candidate": {
            "variants": {"new": {"model": "new"}, "old": {"model": "old"}},
            "default": "new",
            "fallback": ["old"],
            "guardrails": [
                {"id": "errors", "metric": "error_rate", "max": 0.05, "min_samples": 20, "action": "fallback", "variants": ["new"]}
            ],
        },
        "conv": {
            "bucket_by": "conversation_id",
            "variants": {"a": {"model": "a"}, "b": {"model": "b"}},
            "default": "a",
            "rules": [{"id": "ab", "split": [{"variant": "a", "percent": 50}, {"variant": "b", "percent": 50}]}],
            "sticky": {"by": "conversation_id", "ttl": "1h"},
        },
    },
}

# Budget limit and the lease a process takes (5 % of it): the documented overshoot bound is one
# lease per process (docs/fleet.md, "Budgets").
LIMIT = 100
LEASE = 5

PYTHON_WORKER = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from flagrail import Flags

if sys.argv[1] == "-":
    flags = Flags.from_redis(sys.argv[2], redis=sys.argv[2])
else:
    flags = Flags.from_file(sys.argv[1], redis=sys.argv[2])
pool = ThreadPoolExecutor(10)

def chat(user):
    try:
        r = flags.call("chat", {"user_id": user}, lambda v: v.id)
        return (r.variant.reason != "BUDGET", 0)
    except Exception:
        return (False, 1)

def failing(v):
    if v.id == "new":
        raise RuntimeError("candidate is broken")
    return v.id

def candidate(unit):
    try:
        flags.call("candidate", {"user_id": f"u{unit}"}, failing)
        return 0
    except Exception:
        return 1

for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    command = words[0]
    if command == "status":
        reply = {"fleet": flags.status()["fleet"]}
    elif command == "budget":
        n, user = int(words[1]), words[2]
        served = errors = 0
        for start in range(0, n, 50):
            for ok, err in pool.map(chat, [user] * min(50, n - start)):
                served += ok
                errors += err
            time.sleep(0.02)
        reply = {"served": served, "errors": errors}
    elif command == "fail":
        n, base = int(words[1]), int(words[2])
        reply = {"errors": sum(pool.map(candidate, range(base, base + n)))}
    elif command == "probe":
        n = int(words[1])
        reply = {"new": sum(flags.variant("candidate", {"user_id": f"p{i}"}).id == "new" for i in range(n))}
    elif command == "pins":
        vs = [flags.variant("conv", {"conversation_id": f"c{i}"}) for i in range(int(words[1]))]
        reply = {"variants": [v.id for v in vs], "reasons": [v.reason for v in vs]}
    elif command == "fleet":
        m = flags.fleet_metrics()
        reply = {"errors": m.get("candidate", {}).get("new", {}).get("errors"),
                 "processes": m.get("$fleet", {}).get("processes")}  # fmt: skip
    elif command == "reason":
        reply = {"reason": flags.variant(words[1], {"user_id": "k"}).reason, "revision": flags.revision}
    elif command == "close":
        flags.close()
        print(json.dumps({"closed": True}), flush=True)
        break
    else:
        reply = {"unknown": command}
    print(json.dumps(reply), flush=True)
"""

NODE_WORKER = r"""
const { Flags } = require(process.argv[1])
const readline = require('node:readline')
const flags = process.argv[2] === '-'
  ? Flags.fromRedis(process.argv[3], { redis: process.argv[3] })
  : Flags.fromFile(process.argv[2], { redis: process.argv[3] })
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const failing = async (v) => { if (v.id === 'new') throw new Error('candidate is broken'); return v.id }
const lines = readline.createInterface({ input: process.stdin })
let queue = Promise.resolve()
lines.on('line', (line) => { queue = queue.then(() => handle(line.trim().split(/\s+/))) })
async function handle(words) {
  const command = words[0]
  let reply
  if (command === 'status') {
    reply = { fleet: flags.status().fleet }
  } else if (command === 'budget') {
    const n = Number(words[1]), user = words[2]
    let served = 0, errors = 0
    for (let start = 0; start < n; start += 10) {
      const batch = []
      for (let i = start; i < Math.min(n, start + 10); i++) batch.push(flags.call('chat', { user_id: user }, async (v) => v.id))
      for (const outcome of await Promise.allSettled(batch)) {
        if (outcome.status === 'rejected') errors++
        else if (outcome.value.variant.reason !== 'BUDGET') served++
      }
      if (start % 50 === 40) await sleep(20)
    }
    reply = { served, errors }
  } else if (command === 'fail') {
    const n = Number(words[1]), base = Number(words[2])
    const outcomes = await Promise.allSettled(
      Array.from({ length: n }, (_, i) => flags.call('candidate', { user_id: `u${base + i}` }, failing)))
    reply = { errors: outcomes.filter((o) => o.status === 'rejected').length }
  } else if (command === 'probe') {
    let count = 0
    for (let i = 0; i < Number(words[1]); i++) if (flags.variant('candidate', { user_id: `p${i}` }).id === 'new') count++
    reply = { new: count }
  } else if (command === 'pins') {
    const vs = Array.from({ length: Number(words[1]) }, (_, i) => flags.variant('conv', { conversation_id: `c${i}` }))
    reply = { variants: vs.map((v) => v.id), reasons: vs.map((v) => v.reason) }
  } else if (command === 'fleet') {
    const m = flags.fleetMetrics()
    reply = { errors: m.candidate?.new?.errors ?? null, processes: m.$fleet?.processes ?? null }
  } else if (command === 'reason') {
    reply = { reason: flags.variant(words[1], { user_id: 'k' }).reason, revision: flags.revision }
  } else if (command === 'close') {
    flags.close()
    console.log(JSON.stringify({ closed: true }))
    process.exit(0)
  } else {
    reply = { unknown: command }
  }
  console.log(JSON.stringify(reply))
}
"""


class Worker:
    """One worker process and its command pipe."""

    def __init__(self, kind: str, document: Path | None, redis_url: str) -> None:
        """`document` None: the worker reads the document Redis holds."""
        self.kind = kind
        if kind == "python":
            args = [sys.executable, "-c", PYTHON_WORKER, str(document or "-"), redis_url]
        else:
            args = ["node", "-e", NODE_WORKER, str(REPO / "bindings-node"), str(document or "-"), redis_url]
        self.process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )

    def send(self, command: str) -> None:
        stdin: IO[str] | None = self.process.stdin
        assert stdin is not None
        stdin.write(command + "\n")
        stdin.flush()

    def receive(self) -> dict[str, Any]:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            stderr = self.process.stderr.read() if self.process.stderr else ""
            raise RuntimeError(f"{self.kind} worker exited: {stderr}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def ask(self, command: str) -> dict[str, Any]:
        self.send(command)
        return self.receive()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def ask_all(workers: list[Worker], command: str) -> list[dict[str, Any]]:
    """Sends `command` to every worker at once, then collects the answers (in order)."""
    for worker in workers:
        worker.send(command)
    return [worker.receive() for worker in workers]


CLI = REPO / "target" / "debug" / "flagrail"


def flagrail(directory: Path | None, *args: str) -> str:
    """Runs the CLI in `directory` (where a write's local audit log goes; None: here) and
    returns its stdout."""
    if not CLI.exists():
        raise RuntimeError("target/debug/flagrail is missing: run `make build-cli`")
    done = subprocess.run([str(CLI), *args], cwd=directory, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def start(directory: Path, redis_url: str, python: int, node: int, from_redis: bool = False) -> list[Worker]:
    """Starts the workers on a document file, or (`from_redis`) on the document pushed to Redis
    with `flagrail push`."""
    directory.mkdir(parents=True, exist_ok=True)
    document = directory / "flags.json"
    document.write_text(json.dumps(DOCUMENT))
    source: Path | None = document
    if from_redis:
        flagrail(directory, "push", "flags.json", "--redis", redis_url, "--actor", "ci")
        source = None
    return [Worker("python", source, redis_url) for _ in range(python)] + [
        Worker("node", source, redis_url) for _ in range(node)
    ]


def fleet_spend(server: Any, user: str) -> float:
    """The fleet's spend of `chat`'s per-user budget for `user`, as Redis holds it."""
    fields = server.cli("HGETALL", f"flagrail:{{flagrail:document}}:budget:chat/per-user:{user}").split()
    return sum(float(value) for key, value in zip(fields[::2], fields[1::2]) if key.startswith("s:"))
