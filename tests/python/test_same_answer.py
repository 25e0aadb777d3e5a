"""Behaviours that must be identical in Python and Node (bindings-node/__test__/same-answer.test.js
asserts the same things there): lone surrogates, unknown flags, interrupts, document limits."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from flagrail import DocumentError, Flags, InvalidArgumentError, bucket

DOCUMENT: dict[str, Any] = {
    "revision": "same-1",
    "flags": {
        "split": {
            "variants": {"a": {"model": "m-a"}, "b": {"model": "m-b"}},
            "default": "a",
            "rules": [{"id": "all", "split": [{"variant": "b", "percent": 100}]}],
        },
        "match": {
            "variants": {"a": {}, "b": {}},
            "default": "a",
            "rules": [{"id": "x", "when": {"attr": "name", "op": "eq", "value": "x\ufffd"}, "serve": "b"}],
        },
    },
}


@pytest.fixture(scope="module")
def flags() -> Flags:
    return Flags.from_dict(DOCUMENT)


@pytest.mark.parametrize("unit", ["\ud800", "user-\udfff", "\udc80x"])
def test_a_unit_with_a_lone_surrogate_skips_the_split(flags: Flags, unit: str) -> None:
    # docs/bucketing.md §2: no UTF-8 form, so no bucket: the rule is skipped, never a guess.
    v = flags.variant("split", {"user_id": unit})
    assert (v.id, v.reason, v.bucket) == ("a", "DEFAULT", None)
    assert flags.variant("split", {"user_id": "u"}).reason == "SPLIT"


def test_a_lone_surrogate_never_equals_a_replacement_character(flags: Flags) -> None:
    assert flags.variant("match", {"name": "x\ufffd"}).id == "b"
    assert flags.variant("match", {"name": "x\ud800"}).id == "a"


@pytest.mark.parametrize(("salt", "unit"), [("s", "\ud800"), ("s", "u\udc00"), ("\udfff", "u")])
def test_bucket_refuses_a_lone_surrogate_with_invalid_argument(salt: str, unit: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        bucket(salt, unit)
    assert raised.value.code == "INVALID_ARGUMENT"
    assert "unpaired surrogates" in str(raised.value)


def test_feedback_for_a_lone_surrogate_is_an_unknown_run(flags: Flags) -> None:
    assert flags.feedback("\ud800") is False
    assert flags.feedback("\ud800", score=1.0) is False


def test_an_unknown_flag_has_a_null_payload(flags: Flags) -> None:
    v = flags.variant("no-such-flag", {"user_id": "u"}, "fallback")
    assert v.payload is None
    assert v.to_dict()["payload"] is None
    assert v.get("model", "x") == "x"
    with pytest.raises(KeyError):
        v["model"]
    assert flags.variant("split", {"user_id": "u"}).payload == {"model": "m-b"}


class Raising(Mapping[str, Any]):
    """A context whose every read raises `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __getitem__(self, key: str) -> Any:
        raise self.error

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def test_an_exception_from_a_context_mapping_reads_as_absent(flags: Flags) -> None:
    assert flags.variant("split", Raising(RuntimeError("db down"))).reason == "DEFAULT"
    assert flags.explain("split", Raising(ValueError("no")))["reason"] == "DEFAULT"


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_an_interrupt_from_a_context_mapping_propagates(flags: Flags, interrupt: type[BaseException]) -> None:
    with pytest.raises(interrupt):
        flags.variant("split", Raising(interrupt()))
    with pytest.raises(interrupt):
        flags.flag("split").variant(Raising(interrupt()))
    with pytest.raises(interrupt):
        flags.explain("split", Raising(interrupt()))
def padded(size: int) -> dict[str, Any]:
    """DOCUMENT with a description that makes its compact JSON text `size` bytes long."""
    doc: dict[str, Any] = json.loads(json.dumps(DOCUMENT))
    doc["flags"]["split"]["description"] = ""
    base = len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode())
    doc["flags"]["split"]["description"] = "d" * (size - base)
    return doc


def test_from_dict_enforces_the_document_size_limit_like_from_json() -> None:
    limit = 16 * 1024 * 1024
    over = padded(limit + 1)
    with pytest.raises(DocumentError) as from_text:
        Flags.from_json(json.dumps(over, separators=(",", ":"), ensure_ascii=False))
    with pytest.raises(DocumentError) as from_value:
        Flags.from_dict(over)
    assert [p.code for p in from_value.value.problems] == ["DOCUMENT_TOO_LARGE"]
    assert [p.code for p in from_text.value.problems] == ["DOCUMENT_TOO_LARGE"]
    # At the limit both load.
    at = padded(limit)
    assert Flags.from_dict(at).variant("split", {"user_id": "u"}).reason == "SPLIT"
    assert Flags.from_json(json.dumps(at, separators=(",", ":"), ensure_ascii=False)).variant("split").reason == "DEFAULT"
