"""Hot reload of a file source: new revisions go live, invalid ones never do, and both are logged."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from flagrail import DocumentError, Flags, SourceError

from conftest import LookupContext, chat_document, wait_until, write_atomic, write_in_place

LIVE_WITHIN = 2.0  # seconds: the product promise for the default poll interval


def test_edit_goes_live_within_two_seconds(flags_file: Path) -> None:
    flags = Flags.from_file(flags_file)  # default poll interval
    assert flags.variant("chat").revision == "r1"
    write_atomic(flags_file, json.dumps(chat_document("r2", served="candidate")))
    wait_until(lambda: flags.revision == "r2", LIVE_WITHIN, "revision r2 to go live")
    v = flags.variant("chat")
    assert (v.id, v.revision, v["rev"]) == ("candidate", "r2", "r2")
    # In-place rewrites are picked up too.
    write_in_place(flags_file, json.dumps(chat_document("r3")))
    wait_until(lambda: flags.revision == "r3", LIVE_WITHIN, "revision r3 to go live")
    status = flags.status()
    assert status["reloads"] == 2
    assert status["last_error"] is None


def test_invalid_document_keeps_the_old_revision(flags_file: Path) -> None:
    flags = Flags.from_file(flags_file, poll_interval=0.05)
    bad = chat_document("r2", served="no-such-variant")
    bad["flags"]["chat"]["rules"] = [{"id": "r", "when": {"attr": "x", "op": "equalz", "value": 1}, "serve": "control"}]
    write_atomic(flags_file, json.dumps(bad))
    def rejected() -> dict[str, Any] | None:
        status = flags.status()
        return status if status["last_error"] is not None else None

    status = wait_until(rejected, LIVE_WITHIN, "the rejection")
    assert flags.revision == "r1"
    assert flags.variant("chat").revision == "r1"
    error = status["last_error"]
    assert error["code"] == "INVALID_DOCUMENT"
    assert {(p["path"], p["code"]) for p in error["problems"]} == {
        ("flags.chat.default", "UNKNOWN_VARIANT"),
        ("flags.chat.rules[0].when.op", "UNKNOWN_OPERATOR"),
    }
    assert "equalz" in error["message"]
    assert status["rejected"] >= 1
    assert status["revision"] == "r1"
    # A broken JSON file is rejected the same way.
    write_atomic(flags_file, '{"revision": "r3", "flags": ')
    wait_until(
        lambda: (flags.status()["last_error"] or {}).get("problems", [{}])[0].get("code") == "INVALID_JSON",
        LIVE_WITHIN,
        "the INVALID_JSON rejection",
    )
    assert flags.revision == "r1"
    # Fixing the file recovers and clears the error.
    write_atomic(flags_file, json.dumps(chat_document("r4")))
    wait_until(lambda: flags.revision == "r4", LIVE_WITHIN, "revision r4 to go live")
    assert flags.status()["last_error"] is None


def test_deleted_file_keeps_the_old_revision(flags_file: Path) -> None:
    flags = Flags.from_file(flags_file, poll_interval=0.05)
    flags_file.unlink()
    error = wait_until(lambda: flags.status()["last_error"], LIVE_WITHIN, "the unreachable source")
    assert error["code"] == "SOURCE_UNREACHABLE"
    assert flags.variant("chat").id == "control"
    write_atomic(flags_file, json.dumps(chat_document("r2")))
    wait_until(lambda: flags.revision == "r2", LIVE_WITHIN, "revision r2 to go live")


def test_reload_false_and_explicit_reload(flags_file: Path) -> None:
    flags = Flags.from_file(flags_file, reload=False)
    assert flags.status()["watching"] is False
    write_atomic(flags_file, json.dumps(chat_document("r2")))
    assert flags.revision == "r1"
    assert flags.reload_if_changed() is True
    assert flags.revision == "r2"
    assert flags.reload_if_changed() is False
    write_atomic(flags_file, json.dumps({"flags": {"chat": {"variants": {}, "default": "x"}}}))
    with pytest.raises(DocumentError):
        flags.reload_if_changed()
    assert flags.revision == "r2"
    flags_file.unlink()
    with pytest.raises(SourceError):
        flags.reload_if_changed()


def test_reloads_are_logged(flags_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flagrail")
    flags = Flags.from_file(flags_file, poll_interval=0.05)

    def records(level: int) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "flagrail" and r.levelno == level]

    write_atomic(flags_file, json.dumps(chat_document("r2")))
    (applied,) = wait_until(lambda: records(logging.INFO), LIVE_WITHIN, "the reload log record")
    assert "r1 -> r2" in applied.getMessage()
    assert str(flags_file) in applied.getMessage()
    assert applied.flagrail_event == "reload_applied"  # type: ignore[attr-defined]
    assert (applied.flagrail_previous_revision, applied.flagrail_revision) == ("r1", "r2")  # type: ignore[attr-defined]

    bad = chat_document("r3", served="nope")
    write_atomic(flags_file, json.dumps(bad))
    (rejected,) = wait_until(lambda: records(logging.ERROR), LIVE_WITHIN, "the rejection log record")
    message = rejected.getMessage()
    assert "rejected" in message and "flags.chat.default" in message and "UNKNOWN_VARIANT" in message
    # The core's text, the one Node logs too (bindings-node/__test__/reload_log.test.js).
    assert message.startswith(f"flag document from file:{flags_file} rejected, the previous revision stays live: ")
    assert message.endswith("[INVALID_DOCUMENT]")
    assert rejected.flagrail_code == "INVALID_DOCUMENT"  # type: ignore[attr-defined]

    flags_file.unlink()
    (unreachable,) = wait_until(lambda: records(logging.WARNING), LIVE_WITHIN, "the unreachable log record")
    assert unreachable.flagrail_code == "SOURCE_UNREACHABLE"  # type: ignore[attr-defined]
    assert flags.revision == "r2"


def test_dropping_the_handle_stops_its_watcher(flags_file: Path) -> None:
    import gc
    import threading

    def watchers() -> int:
        # The core names its thread; Python does not list foreign threads, so count via /proc.
        try:
            return sum(
                1
                for task in Path("/proc/self/task").iterdir()
                if (task / "comm").read_text().strip() == "flagrail-reload"
            )
        except OSError:  # pragma: no cover - not Linux
            pytest.skip("needs /proc")

    gc.collect()
    # Handles dropped by earlier tests end their watchers at their next tick.
    wait_until(lambda: watchers() == 0, LIVE_WITHIN, "earlier watchers to exit")
    flags = Flags.from_file(flags_file, poll_interval=0.02)
    wait_until(lambda: watchers() == 1, LIVE_WITHIN, "the watcher thread to start")
    python_threads = threading.active_count()
    del flags
    gc.collect()
    wait_until(lambda: watchers() == 0, LIVE_WITHIN, "the watcher thread to exit")
    assert threading.active_count() == python_threads


def test_handles_evaluated_in_turn_on_one_thread_each_serve_their_own_live_revision(tmp_path: Path) -> None:
    # Each thread keeps the documents it evaluated on last (bindings-python/src/handle.rs,
    # RECENT_ENTRIES): three handles in turn on one thread, reloads of one of them, and a
    # flag read from inside another's context lookup must each still see their own document.
    paths = [tmp_path / f"flags{i}.json" for i in range(3)]
    for i, path in enumerate(paths):
        write_atomic(path, json.dumps(chat_document(f"h{i}-r1")))
    handles = [Flags.from_file(path, reload=False) for path in paths]
    for round_ in range(2, 5):
        for i, flags in enumerate(handles):
            assert flags.variant("chat")["rev"] == f"h{i}-r{round_ - 1}"
        for i, path in enumerate(paths):
            write_atomic(path, json.dumps(chat_document(f"h{i}-r{round_}", served="candidate")))
        assert handles[1].reload_if_changed() is True
        assert (handles[1].variant("chat").id, handles[1].variant("chat")["rev"]) == ("candidate", f"h1-r{round_}")
        assert handles[0].reload_if_changed() is True
        assert handles[2].reload_if_changed() is True

    # A context whose lookups evaluate another handle's flag (a re-entrant call).
    nested = LookupContext(lambda key: handles[2].variant("chat")["rev"])
    write_atomic(paths[0], json.dumps({**chat_document("h0-nested"), "flags": {"chat": {
        "variants": {"control": {"rev": "h0-nested"}, "candidate": {"rev": "h0-nested"}},
        "default": "control",
        "rules": [{"id": "r", "when": {"attr": "who", "op": "eq", "value": "h2-r4"}, "serve": "candidate"}],
    }}}))
    assert handles[0].reload_if_changed() is True
    v = handles[0].variant("chat", nested)
    assert (v.id, v["rev"]) == ("candidate", "h0-nested")
