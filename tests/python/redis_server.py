"""Throwaway Redis for tests: one redis-server, or a 3-node Redis Cluster, on 127.0.0.1.

The twin of the Rust helper `flagrail_fleet::testing`. redis-server and redis-cli must be
installed (`.ci/run` installs them with apt-get when missing); tests that use them fail, not
skip, without them: the fleet is only proven against a real server.

    with RedisServer.started(tmp_path) as server: ...   # server.url == "redis://127.0.0.1:P"
    with RedisCluster.started(tmp_path) as cluster: ... # cluster.url == "redis+cluster://..."
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

START_TIMEOUT_S = 20.0


def binary(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/local/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise RuntimeError(f"{name} is not installed (apt-get install redis-server; .ci/run does it)")
    return found


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(with_bus: bool = False) -> int:
    """A loopback port nothing listens on; with `with_bus`, port + 10000 (the cluster bus) too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not with_bus or (port < 55000 and _bindable(port + 10000)):
            return port
    raise RuntimeError("no free loopback port found")


def redis_cli(port: int, *args: str) -> str:
    done = subprocess.run(
        [binary("redis-cli"), "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"redis-cli {args} failed: {done.stderr}")
    return done.stdout


class RedisServer:
    """redis-server on a free loopback port, without persistence, in `directory`."""

    def __init__(self, directory: Path, cluster: bool = False) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.cluster = cluster
        self.port = free_port(with_bus=cluster)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        """Starts (or restarts, on the same port) and waits until our process answers there."""
        self.stop()
        args = [
            binary("redis-server"),
            "--bind", "127.0.0.1", "--port", str(self.port),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--loglevel", "warning", "--logfile", "redis.log",
        ]  # fmt: skip
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"]
        self.process = subprocess.Popen(
            args, cwd=self.directory, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._answers_as(self.process.pid):
                return self
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log")
                text = log.read_text(errors="replace") if log.exists() else ""
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start: {text}") from None
            time.sleep(0.02)

    def _answers_as(self, pid: int) -> bool:
        """Whether the server on our port is the process we started: another server may hold
        the port (ours then exits on "address in use"), and a loopback connect to an
        ephemeral port can connect a socket to itself. `INFO server` names the process."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.settimeout(1.0)
                conn.sendall(b"INFO server\r\n")
                reply = b""
                while b"\r\nrun_id:" not in reply and len(reply) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
        except OSError:
            return False
        return f"process_id:{pid}\r\n".encode() in reply

    def stop(self) -> None:
        """Kills the server (a crash, not a clean shutdown) and waits for it."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def cli(self, *args: str) -> str:
        return redis_cli(self.port, *args)

    @classmethod
    @contextmanager
    def started(cls, directory: Path) -> Iterator[RedisServer]:
        server = cls(directory).start()
        try:
            yield server
        finally:
            server.stop()


class RedisCluster:
    """Three cluster-enabled servers joined by `redis-cli --cluster create` (no replicas)."""

    def __init__(self, directory: Path) -> None:
        self.nodes = [RedisServer(directory / f"node{i}", cluster=True) for i in range(3)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        redis_cli(self.nodes[0].port, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all("cluster_state:ok" in node.cli("cluster", "info") for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the 3-node cluster did not reach state ok")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def key_slot(self, key: str) -> int:
        return int(self.nodes[0].cli("cluster", "keyslot", key).strip())

    @classmethod
    @contextmanager
    def started(cls, directory: Path) -> Iterator[RedisCluster]:
        cluster = cls(directory)
        try:
            yield cluster.start()
        finally:
            cluster.stop()
