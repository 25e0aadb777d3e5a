"""Handles end cleanly (issue 13): close() and ``with`` stop a file watcher, and however many
file-backed handles are created and dropped, the process keeps one watcher thread."""

from __future__ import annotations

import gc
import json
from pathlib import Path

from conftest import chat_document, wait_until, write_atomic
from flagrail import Flags


def comm(task: Path) -> str | None:
    try:
        return (task / "comm").read_text().strip()
    except OSError:  # the thread ended between the listing and the read
        return None


def reload_threads() -> int:
    return sum(1 for task in Path("/proc/self/task").iterdir() if comm(task) == "flagrail-reload")


def one_watcher_thread() -> bool:
    """Never more than one; exactly one once it runs. A new thread takes its name when it is
    first scheduled, so right after a spawn it may not be counted yet: callers wait for it."""
    count = reload_threads()
    assert count <= 1, f"{count} watcher threads"
    return count == 1


def test_many_file_handles_share_one_watcher_thread(tmp_path: Path) -> None:
    paths = []
    for i in range(50):
        path = tmp_path / f"f{i}.json"
        write_atomic(path, json.dumps(chat_document("r1")))
        paths.append(path)
    for _ in range(6):  # 300 handles created and dropped
        handles = [Flags.from_file(p, poll_interval=0.02) for p in paths]
        wait_until(one_watcher_thread, 5, "one watcher thread")
        del handles
        gc.collect()
    handles = [Flags.from_file(p, poll_interval=0.02) for p in paths]
    for p in paths:
        write_atomic(p, json.dumps(chat_document("r2-longer")))
    wait_until(lambda: all(h.revision == "r2-longer" for h in handles), 20, "every handle to reload")
    assert one_watcher_thread()
    del handles
    gc.collect()
    wait_until(lambda: reload_threads() == 0, 5, "the watcher to end with the last handle")


def test_close_and_with_stop_a_file_watcher(flags_file: Path) -> None:
    with Flags.from_file(flags_file, poll_interval=0.02) as flags:
        assert flags.status()["watching"] is True
        write_atomic(flags_file, json.dumps(chat_document("r2-in-block")))
        wait_until(lambda: flags.revision == "r2-in-block", 10, "the reload")
    assert flags.status()["watching"] is False
    write_atomic(flags_file, json.dumps(chat_document("r3-after-close")))
    wait_until(lambda: reload_threads() == 0, 5, "the watcher to end")
    assert flags.revision == "r2-in-block"
    assert flags.reload_if_changed() is True  # an explicit check still works after close()
    assert flags.revision == "r3-after-close"
