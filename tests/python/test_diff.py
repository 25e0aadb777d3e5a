"""`flagrail.diff(old, new, ...)`: the change review of ``flagrail diff`` from Python
(tests/cross/test_diff_cross.py checks that it equals the CLI's and Node's; this checks the
Python side of the arguments)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterator

import pytest

import flagrail
from flagrail import InvalidArgumentError


def document(revision: str, salt: str) -> dict[str, Any]:
    return {
        "revision": revision,
        "flags": {
            "chat": {
                "bucket_by": "user_id",
                "salt": salt,
                "variants": {"control": {}, "treatment": {}},
                "default": "control",
                "rules": [
                    {"id": "split", "split": [{"variant": "control", "percent": 50}, {"variant": "treatment", "percent": 50}]}
                ],
            }
        },
    }


OLD = document("r1", "chat")
NEW = document("r2", "chat/2")
AT = datetime(2026, 12, 1, tzinfo=timezone.utc)


def test_a_salt_change_rebuckets_about_half_the_units_and_is_dangerous() -> None:
    review = flagrail.diff(OLD, NEW, users=2000, seed=3, at=AT)
    assert (review["units"], review["at"], review["dangerous"]) == (2000, "2026-12-01T00:00:00Z", True)
    assert [d["code"] for d in review["dangers"]] == ["REBUCKET"]
    # Two independent 50/50 draws disagree for about half the units.
    assert 800 < review["flags"][0]["moved"] < 1200
    assert flagrail.diff(OLD, NEW, users=2000, seed=3, at="2026-12-01T00:00:00Z") == review


def test_an_unchanged_document_moves_nobody_and_is_not_dangerous() -> None:
    review = flagrail.diff(OLD, {**OLD, "revision": "r1b"}, users=100, at=AT)
    assert (review["dangerous"], review["flags"], review["dangers"]) == (False, [], [])


def test_a_population_may_be_any_iterable_of_mappings() -> None:
    def units() -> Iterator[dict[str, str]]:
        yield from ({"user_id": u} for u in "abc")

    review = flagrail.diff(OLD, NEW, population=units(), at=AT)
    assert review["units"] == 3
    assert flagrail.diff(OLD, NEW, population=list(units()), at=AT) == review


def test_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="naive datetime is ambiguous"):
        flagrail.diff(OLD, NEW, at=datetime(2026, 12, 1))
    with pytest.raises(InvalidArgumentError, match="users must be a whole number from 1 to 1000000, got -3"):
        flagrail.diff(OLD, NEW, users=-3)
    with pytest.raises(TypeError):
        flagrail.diff(OLD, NEW, population=5)  # type: ignore[arg-type]
