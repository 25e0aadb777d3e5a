"""The shared vector corpus (tests/vectors/) through the Python API: one test per case.

Every file listed in index.json is run according to its kind (tests/vectors/README.md). A
listed file that is missing, or a kind this runner does not know, is a failing test, never a
silent skip.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import pytest

from flagrail import DocumentError, Flags, bucket

from conftest import VECTORS

MAX_TOTAL = 4294967295
KINDS = {"murmur3", "hash", "bucket", "split", "eval", "errors"}


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
            params.append(pytest.param(kind, path, data, case, id=f"{path}:{case['id']}"))
    return params


@lru_cache(maxsize=None)
def _document_flags(path: str) -> tuple[Flags, Flags]:
    """The file-level document of an `eval` file, loaded through both entry points."""
    document = json.loads((VECTORS / path).read_text())["document"]
    return Flags.from_json(json.dumps(document)), Flags.from_dict(document)


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

