"""A real nginx for tests and the fleet drill: unprivileged, on 127.0.0.1, in a temp prefix.

nginx must be installed (`.ci/run` installs nginx-light with apt-get when missing); it is
looked up on PATH and then at /usr/sbin/nginx. Tests that use it fail, not skip, without it:
the HTTP source is only proven against a real server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx-light; .ci/run does it)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Nginx:
    """nginx serving `root` (the document root) on a free loopback port; access log with the
    status of every request (`status method uri`) in `access_log`."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.root = prefix / "www"
        self.root.mkdir(parents=True, exist_ok=True)
        (prefix / "tmp").mkdir(exist_ok=True)
        self.access_log = prefix / "access.log"
        self.port = free_port()
        # master_process off: no switch to the `nobody` user (which could not read a 0700
        # home); -e stderr keeps it away from the system log path. `etag on` is the default.
        (prefix / "nginx.conf").write_text(
            f"""
daemon off; master_process off; pid nginx.pid; error_log stderr;
events {{}}
http {{
  log_format status '$status $request_method $request_uri';
  access_log {self.access_log} status;
  types {{ application/json json; text/plain sig; }}
  client_body_temp_path tmp; proxy_temp_path tmp; fastcgi_temp_path tmp;
  uwsgi_temp_path tmp; scgi_temp_path tmp;
  server {{ listen 127.0.0.1:{self.port}; root www; }}
}}
"""
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        with open(self.prefix / "nginx.stderr", "ab") as stderr:
            self.process = subprocess.Popen(
                [nginx_binary(), "-p", str(self.prefix), "-c", "nginx.conf", "-e", "stderr"],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    output = (self.prefix / "nginx.stderr").read_text(errors="replace")
                    raise RuntimeError(f"nginx did not start: {output}")
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def publish(self, name: str, data: bytes) -> None:
        """Replaces a served file atomically (temp file + rename), as a deploy would."""
        target = self.root / name
        tmp = target.with_name(f".{name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def log(self) -> list[tuple[int, str, str]]:
        """(status, method, uri) of every request so far."""
        if not self.access_log.exists():
            return []
        rows = []
        for line in self.access_log.read_text().splitlines():
            status, method, uri = line.split(" ", 2)
            rows.append((int(status), method, uri))
        return rows
