"""Shared helpers of the Python package tests (run against the installed build)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "flags.json"
VECTORS = REPO / "tests" / "vectors"

T = TypeVar("T")


def wait_until(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.01) -> T:
    """Polls `predicate` until it returns a truthy value, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def write_atomic(path: Path, text: str) -> None:
    """Replaces `path` in one rename, the way deploy tools should."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_in_place(path: Path, text: str) -> None:
    """Rewrites `path` in place (truncate + write), the way editors and careless scripts do."""
    with open(path, "w") as f:
        f.write(text)


def chat_document(revision: str, *, served: str = "control", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A one-flag document whose every variant payload carries the revision."""
    return {
        "revision": revision,
        "flags": {
            "chat": {
                "variants": {
                    "control": {"model": "model-a", "rev": revision},
                    "candidate": {"model": "model-b", "rev": revision},
                },
                "default": served,
                **(extra or {}),
            }
        },
    }


@pytest.fixture
def flags_file(tmp_path: Path) -> Path:
    path = tmp_path / "flags.json"
    write_atomic(path, json.dumps(chat_document("r1")))
    return path


class LookupContext(Mapping[str, Any]):
    """A context (a non-dict mapping) whose every lookup calls ``lookup``: for tests whose
    attribute reads run Python code, e.g. a re-entrant flag read from inside a lookup."""

    def __init__(self, lookup: Callable[[str], Any]) -> None:
        self._lookup = lookup

    def __getitem__(self, key: str) -> Any:
        return self._lookup(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0
