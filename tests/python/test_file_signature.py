"""Signed file sources: ``Flags.from_file(path, verify_key=...)`` serves only a document whose
``<path>.sig`` is its signature by the key, with the codes of ``from_url``; a document replaced
before its signature is rejected (status and event say why) until the pair matches, then
accepted; ``flagrail kill --key`` re-signs under the lock so that a watching process takes the
kill. Keys and signatures are made by the CLI (``flagrail keygen`` / ``sign``)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, chat_document, wait_until
from flagrail import Flags, InvalidArgumentError, SourceError


def cli() -> Path:
    path = REPO / "target" / "debug" / "flagrail"
    if not path.exists():
        raise RuntimeError("target/debug/flagrail is missing: run `make build-cli`")
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([cli(), *args], capture_output=True, text=True, check=False)


def replace(path: Path, data: bytes) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


def publish(path: Path, revision: str) -> bytes:
    body = json.dumps(chat_document(revision)).encode()
    replace(path, body)
    return body


def sign(path: Path, key: Path) -> None:
    out = run("sign", "--key", key / "flagrail.key", path)
    assert out.returncode == 0, out.stderr


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, str]:
    out = run("keygen", "--out", tmp_path / "keys")
    assert out.returncode == 0, out.stderr
    return tmp_path / "keys", (tmp_path / "keys" / "flagrail.pub").read_text().strip()


def test_unsigned_wrong_key_tampered_and_older_signatures_are_refused_at_startup(
    tmp_path: Path, keys: tuple[Path, str]
) -> None:
    key, public = keys
    path = tmp_path / "flags.json"
    publish(path, "r1")
    with pytest.raises(SourceError) as missing:
        Flags.from_file(path, verify_key=public)
    assert missing.value.code == "SIGNATURE_INVALID"
    assert "no signature" in str(missing.value)

    sign(path, key)
    with Flags.from_file(path, verify_key=public, reload=False) as flags:
        assert flags.revision == "r1"

    other = run("keygen", "--out", tmp_path / "other")
    assert other.returncode == 0, other.stderr
    other_public = (tmp_path / "other" / "flagrail.pub").read_text()
    with pytest.raises(SourceError) as wrong:
        Flags.from_file(path, verify_key=other_public)
    assert wrong.value.code == "SIGNATURE_INVALID"

    signed = path.read_bytes()
    replace(path, signed.replace(b"model-a", b"model-x"))
    with pytest.raises(SourceError) as tampered:
        Flags.from_file(path, verify_key=public)
    assert tampered.value.code == "SIGNATURE_INVALID"

    replace(path, signed)
    old_signature = (tmp_path / "flags.json.sig").read_bytes()
    publish(path, "r2")
    replace(tmp_path / "flags.json.sig", old_signature)
    with pytest.raises(SourceError) as older:
        Flags.from_file(path, verify_key=public)
    assert older.value.code == "SIGNATURE_INVALID"

    with pytest.raises(InvalidArgumentError):
        Flags.from_file(path, verify_key="ssh-ed25519 AAAA")


def test_a_document_replaced_before_its_signature_goes_live_only_with_it(
    tmp_path: Path, keys: tuple[Path, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flagrail")
    key, public = keys
    path = tmp_path / "flags.json"
    publish(path, "r1")
    sign(path, key)
    events: list[dict[str, Any]] = []
    with Flags.from_file(path, verify_key=public, poll_interval=0.02) as flags:
        flags.on_event(events.append)
        publish(path, "r2")
        wait_until(lambda: flags.status()["last_error"], 10, "the rejection")
        status = flags.status()
        assert status["last_error"]["code"] == "SIGNATURE_INVALID"
        assert flags.revision == "r1"
        assert flags.variant("chat", {"user_id": "u"})["rev"] == "r1"
        # Events reach the callback from the watcher thread, just after the status changes.
        rejected = wait_until(lambda: [e for e in events if e["type"] == "reload_rejected"], 10, "the event")
        assert [e["code"] for e in rejected] == ["SIGNATURE_INVALID"]
        (logged,) = wait_until(
            lambda: [r for r in caplog.records if r.name == "flagrail" and r.levelno == logging.ERROR], 10, "the log"
        )
        assert logged.getMessage().endswith("[SIGNATURE_INVALID]")

        sign(path, key)
        wait_until(lambda: flags.revision == "r2", 10, "the signed pair")
        assert flags.status()["last_error"] is None
        wait_until(lambda: len(events) == 2, 10, "the reload event")
        assert [e["type"] for e in events] == ["reload_rejected", "reload"]


def test_kill_with_the_key_reaches_a_verifying_process(tmp_path: Path, keys: tuple[Path, str]) -> None:
    key, public = keys
    path = tmp_path / "flags.json"
    document = chat_document("r1", extra={"kill": {"active": False, "serve": "control"}})
    replace(path, json.dumps(document, indent=2).encode())
    sign(path, key)
    with Flags.from_file(path, verify_key=public, poll_interval=0.02) as flags:
        refused = run("kill", path, "--flag", "chat", "--reason", "drill")
        assert refused.returncode == 1 and "--key" in refused.stderr
        killed = run("kill", path, "--flag", "chat", "--reason", "drill", "--key", key / "flagrail.key")
        assert killed.returncode == 0, killed.stderr
        wait_until(lambda: flags.variant("chat", {"user_id": "u"}).reason == "KILLED", 10, "the kill")
        assert flags.status()["rejected"] == 0
