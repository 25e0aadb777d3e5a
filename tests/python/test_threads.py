"""Threads evaluating while the file is rewritten: every result belongs to one valid revision."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from flagrail import Flags, Variant

from conftest import chat_document, wait_until, write_atomic, write_in_place

READERS = 8
REWRITES = 60


def served(revision: str) -> str:
    # Even revisions serve the candidate, odd ones the control: a result whose variant does not
    # match its revision would be a torn read.
    return "candidate" if int(revision[1:]) % 2 == 0 else "control"


def test_eight_threads_while_the_file_is_rewritten(flags_file: Path) -> None:
    flags = Flags.from_file(flags_file, poll_interval=0.005)
    chat = flags.flag("chat")
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[set[str]] = [set() for _ in range(READERS)]
    counts = [0] * READERS
    bad: list[Variant] = []

    def reader(index: int) -> None:
        try:
            i = 0
            while not stop.is_set():
                ctx = {"user_id": f"user-{index}-{i}", "segment": "external"}
                v = chat.variant(ctx) if i % 2 else flags.variant("chat", ctx)
                if v.id != served(v.revision) or v["rev"] != v.revision or v.payload["rev"] != v.revision:
                    bad.append(v)
                seen[index].add(v.revision)
                if i % 50 == 0:
                    explained = flags.explain("chat", ctx)
                    if explained["variant"] != served(explained["revision"]):
                        bad.append(v)
                    flags.status()
                counts[index] += 1
                i += 1
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(READERS)]
    # Eight busy readers would hold the GIL 5 ms each in turn; the writer needs it more often.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    for t in threads:
        t.start()
    written = {"r1"}
    try:
        for k in range(2, REWRITES + 2):
            revision = f"r{k}"
            text = json.dumps(chat_document(revision, served=served(revision)))
            # Alternate atomic renames with in-place rewrites (which a reader can catch half
            # written: such a read is rejected and the previous revision stays live).
            (write_atomic if k % 2 else write_in_place)(flags_file, text)
            written.add(revision)
            time.sleep(0.01)
        final = f"r{REWRITES + 1}"
        wait_until(lambda: flags.revision == final, 2.0, "the last revision to go live")
        # Let every reader see the final revision at least once.
        wait_until(lambda: all(final in s for s in seen), 2.0, "every reader to see the last revision")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        sys.setswitchinterval(switch_interval)
    assert not errors, errors
    assert not bad, bad[:5]
    assert all(not t.is_alive() for t in threads)
    assert all(counts), counts
    all_seen = set().union(*seen)
    assert all_seen <= written
    assert len(all_seen) > 2, "the readers should have seen several revisions"
    status = flags.status()
    assert status["reloads"] >= len(all_seen) - 1
