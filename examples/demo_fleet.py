"""`make demo` step 11: two processes, one Python and one Node, share a budget and see a kill
pushed over Redis.

A throwaway redis-server on 127.0.0.1 holds the document (`flagrail push --redis`) and the
fleet's shared state. Both processes open it with `from_redis(url, redis=url)` /
`fromRedis(url, { redis: url })`. One user makes 60 calls in each process against a
`max_requests: 50` per-user budget: the fleet serves about 50 of the 120 (at most 50 plus one
5 % lease per process), not 50 in each. Then `flagrail kill --redis` kills the flag and both
processes serve the kill variant at once (pub/sub).

Usage: demo_fleet.py FLAGRAIL_BINARY (run by examples/demo.sh).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DOCUMENT = {
    "revision": "fleet-demo-1",
    "flags": {
        "support-bot": {
            "variants": {
                "opus": {"model": "claude-opus-4"},
                "haiku": {"model": "claude-haiku-4"},
                "human": {"ai": False, "message": "Talk to a person"},
            },
            "default": "opus",
            "kill": {"active": False, "serve": "human"},
            "budgets": [
                {"id": "per-user", "per": "user_id", "max_requests": 50, "window": "1h", "action": {"serve": "haiku"}}
            ],
        }
    },
}

PYTHON = r"""
import json, sys, time
from flagrail import Flags
flags = Flags.from_redis(sys.argv[1], redis=sys.argv[1])
for line in sys.stdin:
    if line.strip() == "calls":
        served = {}
        for _ in range(60):
            r = flags.call("support-bot", {"user_id": "dana"}, lambda v: v.id)
            served[r.variant.id] = served.get(r.variant.id, 0) + 1
            time.sleep(0.01)
        print(json.dumps(served), flush=True)
    elif line.strip() == "wait-kill":
        for _ in range(500):
            v = flags.variant("support-bot", {"user_id": "dana"})
            if v.reason == "KILLED":
                break
            time.sleep(0.01)
        print(json.dumps({"variant": v.id, "reason": v.reason}), flush=True)
    elif line.strip() == "close":
        flags.close()
        print("{}", flush=True)
        break
"""

NODE = r"""
const { Flags } = require(process.argv[1])
const flags = Flags.fromRedis(process.argv[2], { redis: process.argv[2] })
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const lines = require('node:readline').createInterface({ input: process.stdin })
let queue = Promise.resolve()
lines.on('line', (line) => { queue = queue.then(() => handle(line.trim())) })
async function handle(command) {
  if (command === 'calls') {
    const served = {}
    for (let i = 0; i < 60; i++) {
      const r = await flags.call('support-bot', { user_id: 'dana' }, async (v) => v.id)
      served[r.variant.id] = (served[r.variant.id] || 0) + 1
      await sleep(10)
    }
    console.log(JSON.stringify(served))
  } else if (command === 'wait-kill') {
    let v
    for (let i = 0; i < 500; i++) {
      v = flags.variant('support-bot', { user_id: 'dana' })
      if (v.reason === 'KILLED') break
      await sleep(10)
    }
    console.log(JSON.stringify({ variant: v.id, reason: v.reason }))
  } else if (command === 'close') {
    flags.close()
    console.log('{}')
    process.exit(0)
  }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> None:
    flagrail = sys.argv[1]
    server_binary = shutil.which("redis-server")
    if server_binary is None:
        print("redis-server is not installed (apt-get install redis-server): step skipped")
        return
    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [server_binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        workers: list[subprocess.Popen[str]] = []
        try:
            for _ in range(250):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.02)
            document = Path(tmp) / "flags.json"
            document.write_text(json.dumps(DOCUMENT))
            print(f"$ flagrail push flags.json --redis {url}")
            subprocess.run([flagrail, "push", str(document), "--redis", url, "--actor", "demo",
                            "--audit-log", str(Path(tmp) / "audit.jsonl")], check=True)
            workers = [
                subprocess.Popen([sys.executable, "-c", PYTHON, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True),
                subprocess.Popen(["node", "-e", NODE, str(REPO / "bindings-node"), url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True),
            ]
            names = ["python", "node  "]

            def ask(command: str) -> list[dict[str, object]]:
                for w in workers:
                    assert w.stdin is not None
                    w.stdin.write(command + "\n")
                    w.stdin.flush()
                replies = []
                for w in workers:
                    assert w.stdout is not None
                    replies.append(json.loads(w.stdout.readline()))
                return replies

            time.sleep(1.0)  # both join the fleet (heartbeat every second)
            print("\nuser dana: 60 calls in each process, budget max_requests 50 per user (shared)")
            replies = ask("calls")
            total = 0
            for name, reply in zip(names, replies):
                print(f"  {name} served by {json.dumps(reply, sort_keys=True)}")
                total += int(str(reply.get("opus", 0)))
            print(f"  the fleet served opus {total} times of 120 calls (limit 50, bound 50 + 2 x 3 lease)")
            print(f"\n$ flagrail kill --redis {url} --flag support-bot --reason 'demo' --actor oncall")
            subprocess.run([flagrail, "kill", "--redis", url, "--flag", "support-bot", "--reason", "demo",
                            "--actor", "oncall", "--audit-log", str(Path(tmp) / "audit.jsonl")], check=True)
            for name, reply in zip(names, ask("wait-kill")):
                print(f"  {name} now serves {reply['variant']} ({reply['reason']})")
            ask("close")
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
                w.wait(timeout=10)
            server.kill()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
