"""Demo step 9: a process follows a document served over HTTP and sees a kill within one poll.

Serves a directory with Python's http.server on 127.0.0.1 (any static host works the same:
nginx, a CDN, an object store), loads it with ``Flags.from_url``, then kills the flag on the
server's copy with the CLI (which writes the file atomically) and waits for the process to
serve the kill variant; then unkills it.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from flagrail import Flags


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    root, flagrail = sys.argv[1], sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=root))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/flags.json"
    user = {"user_id": "user-14", "plan": "pro"}
    try:
        with Flags.from_url(url, poll_interval=0.5, startup_timeout=5) as flags:
            print(f"$ python: Flags.from_url({url!r}, poll_interval=0.5)")
            v = flags.variant("support-bot", user)
            print(f"  serves {v.id} ({v.reason}), revision {v.revision}, source {flags.status()['source']}")
            for action, args in (
                ("kill", ["--reason", "provider returns garbage", "--actor", "oncall-ana"]),
                ("unkill", ["--reason", "provider fixed", "--actor", "oncall-ana"]),
            ):
                before = flags.revision
                print(f"$ flagrail {action} <server root>/flags.json --flag support-bot {' '.join(args[:2])!s} …")
                subprocess.run([flagrail, action, f"{root}/flags.json", "--flag", "support-bot", *args], check=True,
                               capture_output=True)
                started = time.monotonic()
                while flags.revision == before and time.monotonic() - started < 10:
                    time.sleep(0.01)
                v = flags.variant("support-bot", user)
                remote = flags.status()["remote"]
                print(
                    f"  after {time.monotonic() - started:.2f} s: serves {v.id} ({v.reason}), revision {v.revision}; "
                    f"polls {remote['polls']}, 304s {remote['not_modified']}, failures {remote['consecutive_failures']}"
                )
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
