"""Flags.from_redis and `flagrail push/kill --redis` against a real redis-server and a local
3-node Redis Cluster (both started here on 127.0.0.1 by redis_server.py).

Waits are bounded and wait for state (the push counter, the revision, the rejected count),
never for a wall-clock deadline to pass.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, chat_document, wait_until
from flagrail import Flags
from redis_server import RedisCluster, RedisServer

KEY = "flagrail:document"
CHANNEL = "flagrail:{flagrail:document}:changed"
AUDIT = "flagrail:{flagrail:document}:audit"


def flagrail_cli() -> Path:
    path = REPO / "target" / "debug" / "flagrail"
    if not path.exists():
        raise RuntimeError("target/debug/flagrail is missing: run `make build-cli`")
    return path


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(flagrail_cli()), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def push(cwd: Path, url: str, document: dict[str, Any], name: str = "flags.json") -> None:
    (cwd / name).write_text(json.dumps(document))
    done = cli(cwd, "push", name, "--redis", url, "--actor", "test")
    assert done.returncode == 0, done.stderr


def remote(flags: Flags) -> dict[str, Any]:
    result: dict[str, Any] = flags.status()["remote"]
    return result


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer.started(tmp_path / "redis") as server:
        yield server


@pytest.fixture(params=["single", "cluster"])
def any_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "single":
        with RedisServer.started(tmp_path / "redis") as server:
            yield server.url
    else:
        with RedisCluster.started(tmp_path / "cluster") as cluster:
            yield cluster.url


def test_a_push_reaches_every_subscriber_at_once(any_redis: str, tmp_path: Path) -> None:
    push(tmp_path, any_redis, chat_document("r1"))
    # The safety-net poll is 10 minutes away: only the pub/sub message can reload them.
    subscribers = [Flags.from_redis(any_redis, poll_interval=600) for _ in range(3)]
    try:
        for flags in subscribers:
            assert flags.revision == "r1"
            assert remote(flags)["kind"] == "redis"
            assert flags.status()["source"].startswith("redis:")
            wait_until(lambda: remote(flags)["subscribed"], 20, "the subscription")
        push(tmp_path, any_redis, chat_document("r2"))
        for flags in subscribers:
            wait_until(lambda: flags.revision == "r2", 20, "the pushed revision")
            assert remote(flags)["redis_revision"] == 2
            assert remote(flags)["messages"] >= 1
    finally:
        for flags in subscribers:
            flags.close()


def test_a_lost_message_is_covered_by_the_safety_net_poll(redis: RedisServer) -> None:
    redis.cli("set", KEY, json.dumps(chat_document("r1")))
    with Flags.from_redis(redis.url, poll_interval=0.2) as flags:
        assert flags.revision == "r1"
        # A write without PUBLISH: as if the message had been dropped.
        redis.cli("set", KEY, json.dumps(chat_document("r2-silent")))
        wait_until(lambda: flags.revision == "r2-silent", 20, "the poll")
        assert remote(flags)["messages"] == 0


def test_a_bad_document_is_rejected_with_its_path_and_the_last_good_one_stays(redis: RedisServer, tmp_path: Path) -> None:
    push(tmp_path, redis.url, chat_document("r1"))
    with Flags.from_redis(redis.url, poll_interval=600) as flags:
        wait_until(lambda: remote(flags)["subscribed"], 20, "the subscription")
        bad = chat_document("r2-bad")
        bad["flags"]["chat"]["default"] = "missing-variant"
        # `push` refuses it (validated before anything is written) …
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        refused = cli(tmp_path, "push", "bad.json", "--redis", redis.url)
        assert refused.returncode == 1 and "flags.chat.default" in refused.stderr, refused.stderr
        # … so write it behind flagrail's back and announce it.
        redis.cli("set", KEY, json.dumps(bad))
        redis.cli("publish", CHANNEL, "99")
        wait_until(lambda: flags.status()["rejected"] >= 1, 20, "the rejection")
        assert flags.revision == "r1"
        error = remote(flags)["last_error"]
        assert error["code"] == "INVALID_DOCUMENT" and error["kind"] == "invalid_document"
        assert "flags.chat.default" in error["message"]
        push(tmp_path, redis.url, chat_document("r3-good"))
        wait_until(lambda: flags.revision == "r3-good", 20, "recovery")


def test_signatures_are_required_and_checked(redis: RedisServer, tmp_path: Path) -> None:
    assert cli(tmp_path, "keygen", "--out", str(tmp_path / "keys")).returncode == 0
    public = (tmp_path / "keys" / "flagrail.pub").read_text().strip()
    (tmp_path / "flags.json").write_text(json.dumps(chat_document("r1")))
    assert cli(tmp_path, "sign", "--key", "keys/flagrail.key", "flags.json").returncode == 0
    done = cli(tmp_path, "push", "flags.json", "--redis", redis.url, "--verify-key", "keys/flagrail.pub")
    assert done.returncode == 0, done.stderr
    with Flags.from_redis(redis.url, verify_key=public, poll_interval=600) as flags:
        assert flags.revision == "r1" and remote(flags)["signed"] is True
        wait_until(lambda: remote(flags)["subscribed"], 20, "the subscription")
        # Unsigned (the old signature does not cover these bytes).
        redis.cli("set", KEY, json.dumps(chat_document("r2-unsigned")))
        redis.cli("publish", CHANNEL, "2")
        wait_until(lambda: flags.status()["rejected"] >= 1, 20, "the rejection")
        assert remote(flags)["last_error"]["code"] == "SIGNATURE_INVALID"
        assert flags.revision == "r1"
        # A signed push goes live.
        (tmp_path / "flags.json").write_text(json.dumps(chat_document("r3-signed")))
        assert cli(tmp_path, "sign", "--key", "keys/flagrail.key", "flags.json").returncode == 0
        done = cli(tmp_path, "push", "flags.json", "--redis", redis.url, "--verify-key", "keys/flagrail.pub")
        assert done.returncode == 0, done.stderr
        wait_until(lambda: flags.revision == "r3-signed", 20, "the signed document")


NODE_WATCHER = """
const { Flags } = require(process.argv[1])
const flags = Flags.fromRedis(process.argv[2], { pollIntervalMs: 600000 })
const ready = setInterval(() => {
  if (flags.status().remote.subscribed) { clearInterval(ready); console.log('ready ' + flags.status().revision) }
}, 5)
const watch = setInterval(() => {
  const v = flags.variant('chat', {}, null)
  if (v.reason === 'KILLED') {
    console.log('killed ' + flags.status().revision + ' ' + flags.status().remote.redis_revision)
    clearInterval(watch)
    flags.close()
  }
}, 5)
setTimeout(() => { console.log('timeout'); process.exit(1) }, 30000).unref()
"""


def test_kill_over_redis_is_seen_by_python_and_node_with_an_audit_stream_entry(any_redis: str, tmp_path: Path) -> None:
    push(tmp_path, any_redis, chat_document("r1"))
    node = subprocess.Popen(
        ["node", "-e", NODE_WATCHER, str(REPO / "bindings-node"), any_redis],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert node.stdout is not None
        assert node.stdout.readline().strip() == "ready r1"
        with Flags.from_redis(any_redis, poll_interval=600) as flags:
            wait_until(lambda: remote(flags)["subscribed"], 20, "the subscription")
            assert flags.variant("chat").reason == "DEFAULT"
            killed = cli(tmp_path, "kill", "--redis", any_redis, "--flag", "chat", "--reason", "bad answers", "--actor", "ana")
            assert killed.returncode == 0, killed.stderr
            wait_until(lambda: flags.variant("chat").reason == "KILLED", 20, "the kill in Python")
            assert remote(flags)["redis_revision"] == 2
            out, err = node.communicate(timeout=30)
            assert node.returncode == 0, err
            assert out.strip().startswith("killed ") and out.strip().endswith(" 2"), out
        status = json.loads(cli(tmp_path, "status", "--redis", any_redis).stdout)
        records = [entry["record"] for entry in status["audit"]]
        assert [r["action"] for r in records] == ["kill", "push"]
        assert records[0]["actor"] == "ana" and records[0]["reason"] == "bad answers"
        local = [json.loads(line) for line in (tmp_path / "flagrail.audit.jsonl").read_text().splitlines()]
        assert [r["action"] for r in local] == ["push", "kill"]
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()


def test_redis_down_at_start_does_not_raise_and_loads_when_it_returns(redis: RedisServer, tmp_path: Path) -> None:
    redis.stop()
    with Flags.from_redis(redis.url, startup_timeout=0.2) as flags:
        assert flags.revision == "redis:waiting"
        status = remote(flags)
        assert status["connected"] is False and status["document_loaded"] is False
        assert status["last_error"]["code"] == "SOURCE_UNREACHABLE"
        assert "REDIS_UNAVAILABLE" in status["last_error"]["message"]
        # Evaluation never raises: the caller's default serves.
        assert flags.variant("chat", default="control").reason == "FLAG_NOT_FOUND"
        redis.start()
        push(tmp_path, redis.url, chat_document("r1-after"))
        wait_until(lambda: flags.revision == "r1-after", 20, "the document after Redis returned")
        assert remote(flags)["connected"] is True and remote(flags)["document_loaded"] is True


def test_arguments_are_checked() -> None:
    from flagrail import InvalidArgumentError

    for url in ("http://x", "redis://h:1,h:2", "rediss://h:1"):
        with pytest.raises(InvalidArgumentError, match="REDIS_URL_INVALID"):
            Flags.from_redis(url)
    with pytest.raises(InvalidArgumentError):
        Flags.from_redis("redis://127.0.0.1:1", key="")
    with pytest.raises(InvalidArgumentError):
        Flags.from_redis("redis://127.0.0.1:1", poll_interval=0)
