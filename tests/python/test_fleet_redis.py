"""The fleet test of shared state: 4 Python and 4 Node processes, one redis-server.

Budgets, guardrails and pins are shared by every process, whatever its language, a
`flagrail kill --redis` reaches all of them, and a Redis
that dies mid-traffic costs the app no exception and the budget no spend. Every wait is a
bounded poll; nothing asserts on wall-clock time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import fleet_redis
from fleet_redis import LEASE, LIMIT, Worker, ask_all
from flagrail import Flags
from redis_server import RedisServer

PYTHON = 4
NODE = 4
def cli_metrics(url: str, *extra: str) -> str:
    return fleet_redis.flagrail(None, "metrics", "--redis", url, *extra)


def wait_until(what: str, check: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.1)


def fleet_states(workers: list[Worker]) -> list[dict[str, Any]]:
    return [reply["fleet"] for reply in ask_all(workers, "status")]


def test_a_fleet_of_python_and_node_processes_shares_budgets_guardrails_pins_and_kills(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    # The document lives in Redis too: each process is `from_redis(url, redis=url)`.
    workers = fleet_redis.start(tmp_path / "fleet", server.url, python=PYTHON, node=NODE, from_redis=True)
    try:
        wait_until(
            "every process sees the whole fleet",
            lambda: all(s["connected"] and s["fleet_size"] == PYTHON + NODE for s in fleet_states(workers)),
        )

        # Budget: 2,000 calls of one user over 8 processes, 10 concurrent in each.
        replies = ask_all(workers, "budget 250 alice")
        served = sum(r["served"] for r in replies)
        assert sum(r["errors"] for r in replies) == 0
        bound = (PYTHON + NODE) * LEASE
        assert 1 <= served <= LIMIT + bound, f"served {served}, limit {LIMIT} + bound {bound}"

        # Guardrail: 8 failures per process, below min_samples (20) in each, 64 in the fleet.
        replies = ask_all(workers, "fail 8 0")
        assert all(r["errors"] == 0 for r in replies), "a fallback served every failed call"
        wait_until(
            "every process stops serving the candidate",
            lambda: all(r["new"] == 0 for r in ask_all(workers, "probe 50")),
        )
        assert all(r["new"] == 0 for r in ask_all(workers, "probe 200"))

        # The fleet's metrics from outside any process: all 64 failures, the trip.
        wait_until(
            "flagrail metrics --redis adds up every process",
            lambda: json.loads(cli_metrics(server.url, "--json")).get("candidate", {}).get("new", {}).get("errors") == 64,
        )
        text = cli_metrics(server.url)
        assert 'flagrail_fleet_guardrail_state{flag="candidate",variant="new",guardrail="errors"} 1' in text
        assert f"flagrail_fleet_processes {PYTHON + NODE}" in text
        # ... and from inside every process, Python and Node alike.
        wait_until(
            "fleet_metrics() / fleetMetrics() in every process add up the fleet",
            lambda: all(r == {"errors": 64, "processes": PYTHON + NODE} for r in ask_all(workers, "fleet")),
        )

        # Pins written from Python are honoured from Node (and the other way round).
        first = workers[0].ask("pins 20")
        assert set(first["reasons"]) <= {"SPLIT", "STICKY"}
        wait_until(
            "pins reach Redis",
            lambda: all(reason == "STICKY" for reason in workers[-1].ask("pins 20")["reasons"]),
        )
        for worker in workers:
            assert worker.ask("pins 20")["variants"] == first["variants"], worker.kind
        assert len(set(first["variants"])) == 2, "the split should use both variants"

        # A kill pushed to Redis is seen by all 8 processes, and so is the unkill.
        assert {r["reason"] for r in ask_all(workers, "reason conv")} != {"KILLED"}
        fleet_redis.flagrail(tmp_path / "fleet", "kill", "--redis", server.url, "--flag", "conv",
                             "--reason", "fleet test", "--actor", "ci")  # fmt: skip
        wait_until(
            "every process serves the kill",
            lambda: all(r["reason"] == "KILLED" for r in ask_all(workers, "reason conv")),
        )
        assert len({r["revision"] for r in ask_all(workers, "reason conv")}) == 1, "one revision fleet-wide"
        fleet_redis.flagrail(tmp_path / "fleet", "unkill", "--redis", server.url, "--flag", "conv",
                             "--reason", "fleet test over", "--actor", "ci")  # fmt: skip
        wait_until(
            "every process serves the flag again",
            lambda: all(r["reason"] != "KILLED" for r in ask_all(workers, "reason conv")),
        )

        # Every call was reported, served or downgraded, except those downgraded only for want
        # of a lease while the fleet had room: once every process has closed, they add up.
        denied = sum(s["denied_for_lease"] for s in fleet_states(workers))
        ask_all(workers, "close")
        assert fleet_redis.fleet_spend(server, "alice") + denied == 2_000
    finally:
        for worker in workers:
            worker.stop()
        server.stop()


def test_redis_killed_mid_traffic_costs_no_exception_and_no_spend(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    workers = fleet_redis.start(tmp_path / "fleet", server.url, python=PYTHON, node=NODE)
    try:
        wait_until(
            "every process sees the whole fleet",
            lambda: all(s["connected"] and s["fleet_size"] == PYTHON + NODE for s in fleet_states(workers)),
        )
        for worker in workers:
            worker.send("budget 100 carol")
        server.stop()  # mid-traffic
        replies = [worker.receive() for worker in workers]
        assert sum(r["errors"] for r in replies) == 0
        wait_until("every process in local mode", lambda: all(s["mode"] == "local" for s in fleet_states(workers)))
        # Traffic while Redis is down: local enforcement, no exception.
        replies = ask_all(workers, "budget 50 carol")
        assert sum(r["errors"] for r in replies) == 0
        # Each process: what its lease still held, then at most limit / fleet size.
        for reply in replies:
            assert reply["served"] <= LEASE + LIMIT / (PYTHON + NODE) + LEASE
        server.start()  # same port, no data
        wait_until(
            "every process reconnected and flushed",
            lambda: all(s["mode"] == "shared" and s["pending_spend"] == 0 for s in fleet_states(workers)),
            seconds=30,
        )
        # The restarted server is empty: what it holds now is what was spent while it was down
        # (or not yet reported when it died), so at least the 400 offline calls.
        assert fleet_redis.fleet_spend(server, "carol") >= (PYTHON + NODE) * 50
        ask_all(workers, "close")
        assert fleet_redis.fleet_spend(server, "carol") >= (PYTHON + NODE) * 50
    finally:
        for worker in workers:
            worker.stop()
        server.stop()


FORK_CHILD = r"""
import json, os, sys, time
from flagrail import Flags

flags = Flags.from_file(sys.argv[1], redis=sys.argv[2])
time.sleep(0.3)
parent = flags.status()["fleet"]["process"]
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    for _ in range(200):
        fleet = flags.status()["fleet"]
        if fleet["connected"]:
            break
        time.sleep(0.05)
    r = flags.call("chat", {"user_id": "forked"}, lambda v: v.id)
    flags.close()
    os.write(write, json.dumps({"process": fleet["process"], "connected": fleet["connected"],
                                "served": r.variant.id}).encode())
    os._exit(0)
os.close(write)
child = json.loads(os.read(read, 65536))
os.waitpid(pid, 0)
print(json.dumps({"parent": parent, "child": child}))
flags.close()
"""


def test_a_forked_child_joins_the_fleet_as_a_new_process(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        document = tmp_path / "flags.json"
        document.write_text(json.dumps(fleet_redis.DOCUMENT))
        done = subprocess.run(
            [sys.executable, "-c", FORK_CHILD, str(document), server.url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["child"]["connected"] is True
        assert report["child"]["process"] != report["parent"], "the child must not reuse the parent's leases"
        assert report["child"]["served"] == "opus"
        # The child's call reached Redis (reported on close) under its own process.
        assert fleet_redis.fleet_spend(server, "forked") == 1
    finally:
        server.stop()


def test_a_process_started_while_redis_is_down_serves_locally_then_joins_the_fleet(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")  # a free port, nothing listening yet
    document = tmp_path / "flags.json"
    document.write_text(json.dumps(fleet_redis.DOCUMENT))
    flags = Flags.from_file(document, redis=server.url)  # never waits for Redis
    try:
        fleet = flags.status()["fleet"]
        assert (fleet["connected"], fleet["mode"]) == (False, "local"), fleet
        served = [flags.call("chat", {"user_id": "dave"}, lambda v: v.id) for _ in range(10)]
        assert [r.variant.reason for r in served] == ["DEFAULT"] * 10, "local enforcement serves"
        server.start()
        wait_until(
            "the process joins the fleet and reports what it spent offline",
            lambda: flags.status()["fleet"]["mode"] == "shared" and flags.status()["fleet"]["pending_spend"] == 0,
            seconds=30,
        )
        flags.close()
        assert fleet_redis.fleet_spend(server, "dave") == 10
    finally:
        flags.close()
        server.stop()
