"""Processes that fork after loading flags keep reloading in the children.

A real gunicorn with --preload (the app, and so the Flags handle and its watcher thread, is
created in the master and inherited by forked workers) serves a flag's variant, revision and
pid; after the document changes, both workers must serve the new revision. A plain os.fork()
child is checked the same way. Both run in subprocesses so the test process itself never forks.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import chat_document, wait_until, write_atomic

APP = '''
import json, os
from flagrail import Flags

FLAGS = Flags.from_file(os.environ["FLAGRAIL_TEST_FILE"], poll_interval=0.05)

def app(environ, start_response):
    v = FLAGS.variant("chat", {"user_id": "u-1"})
    body = json.dumps({"variant": v.id, "revision": v.revision, "pid": os.getpid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int) -> dict[str, object] | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read()
        conn.close()
        if response.status != 200:
            return None
        result: dict[str, object] = json.loads(body)
        return result
    except (OSError, http.client.HTTPException, ValueError):
        return None


def test_gunicorn_preload_workers_keep_reloading(tmp_path: Path) -> None:
    flags_file = tmp_path / "flags.json"
    write_atomic(flags_file, json.dumps(chat_document("r1")))
    (tmp_path / "flagapp.py").write_text(APP)
    port = free_port()
    env = {**os.environ, "FLAGRAIL_TEST_FILE": str(flags_file), "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "gunicorn.log", "w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "--preload", "--workers", "2",
            "--bind", f"127.0.0.1:{port}", "--chdir", str(tmp_path),
            "--graceful-timeout", "2", "flagapp:app",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        def pids_serving(revision: str, pids: dict[int, str]) -> bool:
            reply = get(port)
            if reply is not None:
                pids[int(reply["pid"])] = str(reply["revision"])  # type: ignore[call-overload]
            return len(pids) >= 2 and all(rev == revision for rev in pids.values())

        before: dict[int, str] = {}
        wait_until(lambda: pids_serving("r1", before), 30.0, "two gunicorn workers serving r1", interval=0.02)
        assert server.pid not in before  # the master does not serve
        write_atomic(flags_file, json.dumps(chat_document("r2", served="candidate")))
        after: dict[int, str] = {}
        # Only replies after the change count; both workers must show r2.
        wait_until(lambda: pids_serving("r2", after), 10.0, "both workers to serve r2", interval=0.02)
        assert set(after) == set(before), "the same two workers, reloaded (not restarted)"
        reply = get(port)
        assert reply is not None and reply["variant"] == "candidate"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()
    output = (tmp_path / "gunicorn.log").read_text()
    assert "Traceback" not in output, output


FORK_CHILD = '''
import json, os, sys, time
from flagrail import Flags

path = sys.argv[1]
flags = Flags.from_file(path, poll_interval=0.05)
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(write_end)
    os.read(read_end, 1)  # wait until the parent changed the file
    deadline = time.monotonic() + 5
    while flags.revision != "r2" and time.monotonic() < deadline:
        time.sleep(0.01)
    os._exit(0 if flags.revision == "r2" and flags.status()["watching"] else 1)
os.close(read_end)
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump({"revision": "r2", "flags": {}}, f)
os.replace(tmp, path)
os.write(write_end, b"x")
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
'''


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_plain_fork_child_keeps_reloading(tmp_path: Path) -> None:
    flags_file = tmp_path / "flags.json"
    write_atomic(flags_file, json.dumps(chat_document("r1")))
    script = tmp_path / "fork_child.py"
    script.write_text(textwrap.dedent(FORK_CHILD))
    result = subprocess.run(
        [sys.executable, str(script), str(flags_file)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


MULTIPROCESSING = '''
import json, multiprocessing as mp, os, sys, time
from flagrail import Flags

path = sys.argv[1]
flags = Flags.from_file(path, poll_interval=0.05)

def child(ready, changed, out):
    ready.set()
    changed.wait(5)
    deadline = time.monotonic() + 5
    while flags.revision != "r2" and time.monotonic() < deadline:
        time.sleep(0.01)
    out.put(flags.revision)

if __name__ == "__main__":
    ctx = mp.get_context("fork")
    ready, changed, out = ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=child, args=(ready, changed, out)) for _ in range(2)]
    for p in procs:
        p.start()
    ready.wait(5)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"revision": "r2", "flags": {}}, f)
    os.replace(tmp, path)
    changed.set()
    revisions = [out.get(timeout=10) for _ in procs]
    for p in procs:
        p.join(10)
    sys.exit(0 if revisions == ["r2", "r2"] else f"children saw {revisions}")
'''


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_multiprocessing_fork_children_keep_reloading(tmp_path: Path) -> None:
    flags_file = tmp_path / "flags.json"
    write_atomic(flags_file, json.dumps(chat_document("r1")))
    script = tmp_path / "mp_children.py"
    script.write_text(MULTIPROCESSING)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script), str(flags_file)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 60


FORK_WHILE_LOCKED = '''
import os, sys, time
from flagrail import Flags
from flagrail._flagrail import _hold_locks_for_tests

flags = Flags.from_dict(
    {
        "revision": "r1",
        "flags": {
            "chat": {
                "variants": {"big": {"model": "big"}, "small": {"model": "small"}},
                "default": "big",
                "budgets": [
                    {"id": "per-user", "per": "user_id", "max_requests": 100, "window": "1h", "action": {"serve": "small"}}
                ],
            },
            "conv": {
                "variants": {"a": {"model": "a"}, "b": {"model": "b"}},
                "default": "a",
                "sticky": {"by": "conversation_id", "ttl": "1h"},
            },
        },
    },
    exposures=True,
)
held_for = float(sys.argv[1])
# Another thread now holds every lock of the handle (aggregates, budgets, pins, exposures), as
# a request thread or a fleet thread does for one update.
_hold_locks_for_tests(flags, held_for)
pid = os.fork()
if pid == 0:
    # Each of these takes one of the locks that were held at the fork.
    served = flags.call("chat", {"user_id": "u-1"}, lambda v: v.id)
    pinned = flags.variant("conv", {"conversation_id": "c-1"})
    metrics = flags.metrics()
    exposures = flags.status()["exposures"]
    ok = (
        served.value == "big"
        and pinned.id == "a"
        and metrics["chat"]["big"]["requests"] == 1
        and exposures["reads"] >= 1
    )
    os._exit(0 if ok else 1)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(os.waitstatus_to_exitcode(status))
    time.sleep(0.01)
os.kill(pid, 9)
os.waitpid(pid, 0)
print("the child hung on a lock held at the fork")
sys.exit(3)
'''


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_another_thread_holds_the_locks_can_use_every_one(tmp_path: Path) -> None:
    # Without the before-fork hook the child inherits the four locks held and waits for ever
    # (exit 3 after the parent's 20 s guard); with it, the fork waits for the holder.
    script = tmp_path / "fork_locked.py"
    script.write_text(textwrap.dedent(FORK_WHILE_LOCKED))
    result = subprocess.run([sys.executable, str(script), "0.3"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


FORK_AFTER_SERVING = '''
import json, os, sys
from flagrail import Flags

flags = Flags.for_tests({"chat": {"big": {"model": "big"}}}, exposures=True)
for user in range(3):
    flags.call("chat", {"user_id": f"u-{user}"}, lambda v: v.id)
flags.variant("chat", {"user_id": "u-0"})
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    before = flags.metrics()
    flags.call("chat", {"user_id": "u-child"}, lambda v: v.id)
    after = flags.metrics()
    os.write(write, json.dumps({
        "before": before.get("chat"),
        "exposure_reads": before["$exposures"]["reads"],
        "after": after["chat"]["big"]["requests"],
    }).encode())
    os._exit(0)
os.close(write)
child = json.loads(os.read(read, 65536))
os.waitpid(pid, 0)
print(json.dumps({"child": child, "parent": flags.metrics()["chat"]["big"]["requests"]}))
'''


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_counts_only_its_own_requests(tmp_path: Path) -> None:
    # Metrics are per process, and a fleet adds every process's up: a child that kept its
    # parent's three requests would count them twice.
    script = tmp_path / "fork_counts.py"
    script.write_text(textwrap.dedent(FORK_AFTER_SERVING))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    seen = json.loads(result.stdout)
    assert seen["child"] == {"before": None, "exposure_reads": 0, "after": 1}
    assert seen["parent"] == 3
