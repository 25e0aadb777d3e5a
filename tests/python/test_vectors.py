"""The shared vector corpus (tests/vectors/) through the Python API: one test per case.

Every file listed in index.json is run according to its kind (tests/vectors/README.md). A
listed file that is missing, or a kind this runner does not know, is a failing test, never a
silent skip.
"""

from __future__ import annotations

import asyncio
import json
from functools import lru_cache
from typing import Any

import pytest

from flagrail import DocumentError, Flags, Variant, bucket

from conftest import VECTORS

MAX_TOTAL = 4294967295
KINDS = {"murmur3", "hash", "bucket", "split", "eval", "errors", "state", "cache-key", "classify"}
# A `state` case runs with the in-memory pins (the spec), and again with a shared pin store
# through `call` and through `acall`: the pins a store carries decide the same way.
STATE_MODES = ("memory", "store", "store-acall")


def _collect() -> list[Any]:
    index = json.loads((VECTORS / "index.json").read_text())
    params = []
    for entry in index["files"]:
        path, kind = entry["path"], entry["kind"]
        file = VECTORS / path
        if kind not in KINDS:
            params.append(pytest.param(kind, path, None, None, id=f"{path}:unknown-kind"))
            continue
        if not file.exists():
            params.append(pytest.param(kind, path, None, None, id=f"{path}:missing"))
            continue
        data = json.loads(file.read_text())
        for case in data["cases"]:
            # murmur3 with a non-zero seed is a Rust-only check (the bindings expose bucketing,
            # whose seed is always 0, not the raw hash): no test is generated for it.
            if kind == "murmur3" and case["seed"] != 0:
                continue
            if kind == "state":
                for mode in STATE_MODES:
                    params.append(
                        pytest.param(kind, path, data, {**case, "mode": mode}, id=f"{path}:{case['id']}:{mode}")
                    )
                continue
            params.append(pytest.param(kind, path, data, case, id=f"{path}:{case['id']}"))
    return params


@lru_cache(maxsize=None)
def _document_flags(path: str) -> tuple[Flags, Flags]:
    """The file-level document of an `eval` file, loaded through both entry points."""
    document = json.loads((VECTORS / path).read_text())["document"]
    return Flags.from_json(json.dumps(document)), Flags.from_dict(document)


class DictPins:
    """A shared pin store over a dict (TTLs are recorded, not enforced)."""

    def __init__(self) -> None:
        self.pins: dict[str, str] = {}
        self.ttls: dict[str, float] = {}

    def get(self, key: str) -> str | None:
        return self.pins.get(key)

    def set(self, key: str, value: str, ttl_seconds: float) -> None:
        self.pins[key] = value
        self.ttls[key] = ttl_seconds

    def delete(self, key: str) -> None:
        self.pins.pop(key, None)


def _run_state_case(data: dict[str, Any], case: dict[str, Any]) -> None:
    why = case.get("description", "")
    # A fresh handle per case: pins and budgets start empty.
    flags = Flags.from_dict(data["document"])
    mode = case["mode"]
    store = DictPins()
    if mode != "memory":
        flags.use_pin_store(store)

    def answer(v: Variant) -> str:
        return f"answer of {v.id}"

    async def aanswer(v: Variant) -> str:
        return f"answer of {v.id}"

    for i, step in enumerate(case["steps"]):
        expected = step["expected"]
        where = f"step {i} ({mode}): {why}"
        if step["op"] == "evaluate":
            v = flags.variant(step["flag"], step["context"], step.get("default"), at=step["at"])
            got = {"variant": v.id, "reason": v.reason, "rule_id": v.rule_id, "bucket": v.bucket}
            want = {k: expected.get(k) for k in ("variant", "reason", "rule_id", "bucket")}
            assert got == want, where
        elif step["op"] == "call":
            if mode == "store-acall":
                r = asyncio.run(flags.acall(step["flag"], step["context"], aanswer))
            else:
                r = flags.call(step["flag"], step["context"], answer)
            assert (r.variant.id, r.variant.reason) == (expected["variant"], expected["reason"]), where
        else:
            pytest.fail(f"unknown op {step['op']!r} in {case['id']}")
    status = flags.status()
    assert status["sticky_store"] == {
        "kind": "memory" if mode == "memory" else "custom",
        "errors": 0,
        "last_error": None,
    }
    sticky = {key for key, flag in data["document"]["flags"].items() if "sticky" in flag}
    pinned = any(s["flag"] in sticky and "conversation_id" in s["context"] for s in case["steps"])
    # Pins went to the store in use, and only there.
    if mode == "memory":
        assert (status["sticky_pins"] > 0, store.pins) == (pinned, {})
    else:
        assert (status["sticky_pins"], bool(store.pins)) == (0, pinned)
        assert all(key.startswith("flagrail/pin/") for key in store.pins)


def _split_document(case: dict[str, Any]) -> dict[str, Any]:
    names = [name for name, _ in case["weights"]]
    return {
        "revision": "split-vector",
        "flags": {
            "f": {
                "salt": case["salt"],
                "bucket_by": "unit",
                "variants": {name: {} for name in names},
                "default": names[0],
                "rules": [
                    {"id": "split", "split": [{"variant": n, "weight": w} for n, w in case["weights"]]}
                ],
            }
        },
    }


CLASSIFY_DOCUMENT = {
    "flags": {
        "bot": {
            "variants": {"a": {"model": "m"}, "human": {"ai": False}},
            "default": "a",
            "fallback": ["human"],
        }
    }
}


def _run_classify_case(case: dict[str, Any]) -> None:
    """Raises an exception carrying the case's facts from `call`; the attempt's kind must match."""
    facts = case["facts"]
    error_type = type(facts["name"], (Exception,), {})
    error = error_type(facts["message"])
    for attribute, key in (("status_code", "status"), ("code", "code"), ("error_kind", "declared_kind")):
        if facts[key] is not None:
            setattr(error, attribute, facts[key])

    def fail(variant: Variant) -> str:
        raise error

    result = Flags.from_dict(CLASSIFY_DOCUMENT).call("bot", {"user_id": "u"}, fail)
    assert result.variant.id == "human", case["description"]
    assert result.attempts[0].error_kind == case["kind"], case["description"]


@pytest.mark.parametrize(("kind", "path", "data", "case"), _collect())
def test_vector(kind: str, path: str, data: dict[str, Any] | None, case: dict[str, Any] | None) -> None:
    if kind not in KINDS:
        pytest.fail(f"{path}: kind {kind!r} is listed in index.json but this runner does not know it")
    if case is None:
        pytest.fail(f"{path} is listed in tests/vectors/index.json but does not exist")
    why = case.get("description", "")

    if kind == "murmur3":
        # The bindings expose bucketing, not the raw hash; with seed 0 and an empty salt the
        # hash is visible through bucket(): bucket("", key, 2**32 - 1) == max(h - 1, 0).
        assert bucket("", case["key"], MAX_TOTAL) == max(case["hash"] - 1, 0), why

    elif kind == "hash":
        assert bucket(case["salt"], case["unit"], MAX_TOTAL) == max(case["hash"] - 1, 0), why

    elif kind == "bucket":
        assert bucket(case["salt"], case["unit"], case["total"]) == case["bucket"], why

    elif kind == "split":
        flags = Flags.from_dict(_split_document(case))
        v = flags.variant("f", {"unit": case["unit"]})
        assert (v.id, v.bucket, v.reason) == (case["variant"], case["bucket"], "SPLIT"), why
        assert bucket(case["salt"], case["unit"], case["total"]) == case["bucket"], why

    elif kind == "eval":
        expected = case["expected"]
        for flags in _document_flags(path):
            v = flags.variant(case["flag"], case.get("context"), case.get("default"), at=case["at"])
            got = {"variant": v.id, "reason": v.reason, "rule_id": v.rule_id, "bucket": v.bucket}
            want = {k: expected.get(k) for k in ("variant", "reason", "rule_id", "bucket")}
            assert got == want, why
            # explain makes the same decision as evaluation.
            explained = flags.explain(case["flag"], case.get("context"), at=case["at"])
            assert explained["reason"] == expected["reason"], why

    elif kind == "state":
        assert data is not None
        _run_state_case(data, case)

    elif kind == "cache-key":
        flags = _document_flags(path)[0]
        v = flags.variant(case["flag"], {"pick": case["variant"]})
        assert v.id == case["variant"], why
        assert v.cache_key(*case["parts"]) == case["key"], why
        # Without parts the key ends on the variant's payload hash.
        assert v.cache_key().rsplit(":", 1)[1] == case["payload_hash"], why
        assert case["key"].startswith(v.cache_key()), why

    elif kind == "classify":
        _run_classify_case(case)

    elif kind == "errors":
        document = case["document"]
        want_problems = sorted((p["path"], p["code"]) for p in case["problems"])
        # A string is JSON text (possibly invalid); an object also goes through from_dict.
        sources: list[Any] = [document if isinstance(document, str) else json.dumps(document)]
        if not isinstance(document, str):
            sources.append(document)
        for source in sources:
            with pytest.raises(DocumentError) as raised:
                if isinstance(source, str):
                    Flags.from_json(source)
                else:
                    Flags.from_dict(source)
            assert raised.value.code == "INVALID_DOCUMENT", why
            got_problems = sorted((p.path, p.code) for p in raised.value.problems)
            assert got_problems == want_problems, why


def test_every_listed_kind_is_known() -> None:
    """The runner knows every kind the README documents (and index.json uses)."""
    readme = (VECTORS / "README.md").read_text()
    for kind in KINDS:
        assert f"`{kind}`" in readme
    listed = {entry["kind"] for entry in json.loads((VECTORS / "index.json").read_text())["files"]}
    assert listed <= KINDS

