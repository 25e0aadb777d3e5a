"""`Flags.variants(context, keys)` and `Flags.all(context)`: several flags for one context."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from flagrail import Flags

from conftest import LookupContext, write_atomic

SPLIT = [
    {"variant": "control", "percent": 50},
    {"variant": "treatment", "percent": 50},
]


def flag(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "bucket_by": "user_id",
        "variants": {"control": {"n": 1}, "treatment": {"n": 2}},
        "default": "control",
        "rules": [{"id": "split", "split": SPLIT}],
    }
    body.update(extra)
    return body


DOCUMENT: dict[str, Any] = {
    "revision": "r1",
    "flags": {
        "by-user": flag(),
        "by-plan": flag(
            rules=[
                {"id": "pro", "when": {"attr": "plan", "op": "eq", "value": "pro"}, "serve": "treatment"}
            ]
        ),
        "by-org": flag(bucket_by="org_id"),
        "static": flag(rules=[]),
    },
}

CONTEXTS: list[dict[str, object]] = [
    {"user_id": f"u-{i}", "plan": "pro" if i % 3 == 0 else "free", "org_id": i % 7}
    for i in range(300)
]


@pytest.fixture(scope="module")
def flags() -> Flags:
    return Flags.from_dict(DOCUMENT)


def same(a: Any, b: Any) -> bool:
    return (a.flag, a.id, a.reason, a.rule_id, a.bucket, a.revision) == (
        b.flag,
        b.id,
        b.reason,
        b.rule_id,
        b.bucket,
        b.revision,
    )


def test_variants_agree_with_variant_for_every_context(flags: Flags) -> None:
    keys = ["by-user", "by-plan", "by-org", "static"]
    for context in CONTEXTS:
        results = flags.variants(context, keys)
        assert list(results) == keys
        for key in keys:
            assert same(results[key], flags.variant(key, context)), (key, context)


def test_all_is_every_flag_in_document_order(flags: Flags) -> None:
    for context in CONTEXTS[:50]:
        results = flags.all(context)
        assert list(results) == ["by-user", "by-plan", "by-org", "static"]
        for key, result in results.items():
            assert same(result, flags.variant(key, context))


def test_unknown_keys_are_not_found_and_repeats_appear_once(flags: Flags) -> None:
    results = flags.variants({"user_id": "u-1"}, ("nope", "by-user", "nope"))
    assert list(results) == ["nope", "by-user"]
    assert results["nope"].id is None
    assert results["nope"].reason == "FLAG_NOT_FOUND"
    assert results["by-user"].reason == "SPLIT"


def test_a_key_list_seen_before_answers_as_a_new_one_after_any_change(tmp_path: Path) -> None:
    # A list or tuple of known, distinct keys is resolved once per document and recognised by
    # its key objects (bindings-python/src/handle.rs, Plan): every change must be seen.
    path = tmp_path / "flags.json"
    write_atomic(path, json.dumps(DOCUMENT))
    flags = Flags.from_file(path, reload=False)
    context = CONTEXTS[3]

    def expected(keys: list[str]) -> dict[str, tuple[Any, ...]]:
        return {key: (flags.variant(key, context).id, flags.variant(key, context).reason) for key in keys}

    def answer(keys: Any) -> dict[str, tuple[Any, ...]]:
        return {key: (v.id, v.reason) for key, v in flags.variants(context, keys).items()}

    keys = ["by-user", "by-plan"]
    assert answer(keys) == answer(keys) == expected(["by-user", "by-plan"])
    keys[1] = "by-org"  # same first key, same length, another flag
    assert answer(keys) == expected(["by-user", "by-org"])
    keys.append("static")
    assert answer(keys) == expected(["by-user", "by-org", "static"])
    del keys[1:]
    assert answer(keys) == expected(["by-user"])
    keys.append("by-user")  # a repeat: decided once
    assert list(flags.variants(context, keys)) == ["by-user"]
    keys[1] = "nope"  # an unknown key: never planned, still answered
    assert flags.variants(context, keys)["nope"].reason == "FLAG_NOT_FOUND"
    assert answer(("by-plan", "static")) == answer(("by-plan", "static")) == expected(["by-plan", "static"])
    # Equal strings that are other objects than the planned ones.
    rebuilt = ["".join(["by-", "user"]), "".join(["by-", "org"])]
    assert answer(rebuilt) == expected(["by-user", "by-org"])

    class Keys(list[str]):
        pass

    assert answer(Keys(["by-user", "by-org"])) == expected(["by-user", "by-org"])
    # A reload is a new document: its answers, not the old plan's.
    assert list(flags.all(context)) == list(flags.all(context)) == list(DOCUMENT["flags"])
    changed = {**DOCUMENT["flags"], "by-org": flag(rules=[]), "extra": flag()}
    write_atomic(path, json.dumps({**DOCUMENT, "revision": "r2", "flags": changed}))
    assert flags.reload_if_changed() is True
    assert list(flags.all(context)) == list(changed)
    assert flags.variants(context, ["by-user", "by-org"])["by-org"].revision == "r2"
    assert answer(["by-user", "by-org"]) == expected(["by-user", "by-org"])


def wide_document() -> dict[str, Any]:
    """20 flags reading 17 attributes: past the stack sizes of a key list and of a context."""
    return {
        "revision": "wide",
        "flags": {
            f"f{i}": {
                "bucket_by": f"a{i % 12}",
                "variants": {"x": {}, "y": {}},
                "default": "x",
                "rules": [
                    {"id": "t", "when": {"attr": f"b{i % 5}", "op": "eq", "value": "on"}, "serve": "y"},
                    {"id": "s", "split": [{"variant": "x", "percent": 50}, {"variant": "y", "percent": 50}]},
                ],
            }
            for i in range(20)
        },
    }


def test_many_keys_and_attributes_answer_as_variant_on_every_call() -> None:
    # Mirrored in bindings-node/__test__/variants.test.js.
    flags = Flags.from_dict(wide_document())
    keys = [f"f{i}" for i in range(20)]
    for u in range(120):
        context = {
            **{f"a{j}": f"u{u}-{j}" for j in range(12)},
            **{f"b{j}": "on" if (u + j) % 3 == 0 else "off" for j in range(5)},
        }
        for _ in range(2):  # the first call of a key list, then its plan
            for results in (flags.variants(context, keys), flags.all(context)):
                assert list(results) == keys
                for key in keys:
                    assert same(results[key], flags.variant(key, context)), (key, context)


def test_only_the_requested_flags_attributes_are_read(flags: Flags) -> None:
    reads: list[str] = []

    class Spy:
        def __init__(self, data: dict[str, object]) -> None:
            self.data = data

        def __getitem__(self, key: str) -> object:
            reads.append(key)
            return self.data[key]

        def __iter__(self) -> Any:  # pragma: no cover - not read
            return iter(self.data)

        def __len__(self) -> int:
            return len(self.data)

    import collections.abc

    collections.abc.Mapping.register(Spy)
    spy = Spy({"user_id": "u-1", "plan": "pro", "org_id": 3})
    flags.variants(spy, ["by-plan"])  # type: ignore[arg-type]
    assert reads == ["plan"]
    reads.clear()
    flags.variants(spy, ["by-plan", "by-user", "by-user"])  # type: ignore[arg-type]
    assert sorted(reads) == ["plan", "user_id"]
    reads.clear()
    flags.all(spy)  # type: ignore[arg-type]
    assert sorted(reads) == ["org_id", "plan", "user_id"]


def test_an_empty_or_missing_context(flags: Flags) -> None:
    assert flags.all(None)["static"].reason == "DEFAULT"
    assert flags.variants({}, []) == {}
    assert flags.all()["by-user"].id == "control"


def test_keys_must_be_an_iterable_of_str(flags: Flags) -> None:
    with pytest.raises(TypeError, match="not a single str"):
        flags.variants({}, "by-user")
    with pytest.raises(TypeError, match="str flag keys"):
        flags.variants({}, ["by-user", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="context must be a dict"):
        flags.variants(3, ["by-user"])  # type: ignore[arg-type]


def test_at_is_passed_to_every_flag() -> None:
    ramp = {
        "revision": "ramps",
        "flags": {
            "ramped": {
                "bucket_by": "user_id",
                "variants": {"old": {}, "new": {}},
                "default": "old",
                "rules": [
                    {
                        "id": "ramp",
                        "ramp": {
                            "variant": "new",
                            "baseline": "old",
                            "start": "2026-11-21T09:00:00Z",
                            "steps": [{"percent": 100}],
                        },
                    }
                ],
            }
        },
    }
    flags = Flags.from_dict(ramp)
    before = datetime(2026, 11, 20, tzinfo=timezone.utc)
    after = datetime(2026, 11, 22, tzinfo=timezone.utc)
    ctx = {"user_id": "u-1"}
    assert flags.variants(ctx, ["ramped"], at=before)["ramped"].id == "old"
    assert flags.variants(ctx, ["ramped"], at=after)["ramped"].id == "new"


def test_results_kept_by_the_caller_are_never_rewritten(flags: Flags) -> None:
    kept = [flags.variants(c, ["by-user", "by-plan"]) for c in CONTEXTS[:40]]
    for context, results in zip(CONTEXTS[:40], kept):
        for key, result in results.items():
            assert same(result, flags.variant(key, context))


def test_a_test_override_applies_to_variants_and_all() -> None:
    flags = Flags.from_dict(DOCUMENT)
    ctx = {"user_id": "u-1", "plan": "free"}
    with flags.override("by-plan", "treatment"):
        assert flags.variants(ctx, ["by-plan", "static"])["by-plan"].id == "treatment"
        assert flags.all(ctx)["by-plan"].id == "treatment"
        assert flags.all(ctx)["static"].id == "control"
    assert flags.variants(ctx, ["by-plan"])["by-plan"].id == "control"


# --------------------------------------------------------------------------- against variant()

def _vector_documents() -> list[tuple[str, dict[str, Any], list[tuple[Any, str | None]]]]:
    """Every `eval` document of the shared vectors and examples/flags.json, each with the
    contexts (and instants) its cases use."""
    import json

    from conftest import VECTORS

    index = json.loads((VECTORS / "index.json").read_text())
    found = []
    for entry in index["files"]:
        if entry["kind"] != "eval":
            continue
        data = json.loads((VECTORS / entry["path"]).read_text())
        cases = [(case["context"], case.get("at")) for case in data["cases"]]
        found.append((entry["path"], data["document"], cases))
    example = VECTORS.parent.parent / "examples" / "flags.json"
    found.append(("examples/flags.json", json.loads(example.read_text()), []))
    return found


# Contexts no case uses: odd types, lone surrogates, non-str keys, None and a non-dict mapping.
ODD_CONTEXTS: list[Any] = [
    None,
    {},
    {"user_id": None, "plan": 3, "org_id": True, "segment": ["a", "b"], "country": 2.5},
    {"user_id": "u-\ud800", "plan": "pro\udfff", "conversation_id": "c-1"},
    {"user_id": 2**70, "plan": {"nested": 1}, "email": object(), 1: "x"},
    {"user_id": "ü-ñ-😀", "plan": "", "segment": ("t", 1), "version": "1.2.3"},
]


def _contexts(cases: list[tuple[Any, str | None]]) -> list[tuple[Any, str | None]]:
    import types

    generated = [({"user_id": f"u-{i}", "plan": ("pro", "free", "team")[i % 3], "org_id": i % 5}, None) for i in range(60)]
    mapping = [(types.MappingProxyType({"user_id": "u-7", "plan": "pro"}), None)]
    return cases + generated + [(c, None) for c in ODD_CONTEXTS] + mapping


def _assert_agree(many: Flags, single: Flags, context: Any, at: str | None, keys: list[str]) -> None:
    distinct = list(dict.fromkeys(keys))
    results = many.variants(context, keys, at=at)
    assert list(results) == distinct
    for key in distinct:
        want = single.variant(key, context, at=at)
        got = results[key]
        assert type(got) is type(want)
        assert got.to_dict() == want.to_dict(), (key, context, at)
        assert (got.kill_source, got.shadow, got.budget) == (want.kill_source, want.shadow, want.budget)


@pytest.mark.parametrize("path, document, cases", _vector_documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_variants_and_all_equal_per_key_variant(path: str, document: dict[str, Any], cases: list[Any]) -> None:
    # Two handles on the same document, called in the same order: in-memory pins (sticky
    # flags) evolve the same way in both, so every result must be equal field by field.
    many, single = Flags.from_dict(document), Flags.from_dict(document)
    keys = list(document["flags"])
    asked = [keys[-1], "no-such-flag", *keys, keys[0], "no-such-flag"]
    for context, at in _contexts(cases):
        _assert_agree(many, single, context, at, asked)
        _assert_agree(many, single, context, at, keys[:3])
        everything = many.all(context, at=at)
        assert list(everything) == keys
        for key in keys:
            assert everything[key].to_dict() == single.variant(key, context, at=at).to_dict(), (key, context)


def test_variants_equal_variant_under_kills_and_overrides() -> None:
    _, document, cases = next(d for d in _vector_documents() if d[0] == "examples/flags.json")
    many, single = Flags.from_dict(document), Flags.from_dict(document)
    keys = list(document["flags"])
    contexts = _contexts(cases)[:30]
    for handle in (many, single):
        handle.kill(keys[0], reason="drill")
    for context, at in contexts:
        _assert_agree(many, single, context, at, keys)
    assert many.variants({}, keys)[keys[0]].reason == "KILLED"
    override = next(iter(document["flags"][keys[1]]["variants"]))
    with many.override(keys[1], override), single.override(keys[1], override):
        for context, at in contexts:
            _assert_agree(many, single, context, at, keys)
        assert many.variants({}, [keys[1]])[keys[1]].id == override
    for handle in (many, single):
        handle.kill(reason="everything")
    for context, at in contexts:
        _assert_agree(many, single, context, at, keys)
    assert {v.reason for v in many.all({}).values()} == {"KILLED"}


def test_variants_on_handles_in_turn_and_reentrant_serve_each_handles_live_revision(tmp_path: Path) -> None:
    # `variants` / `all` take the same per-thread entries as `variant` (RECENT_ENTRIES in
    # bindings-python/src/handle.rs): three handles in turn on one thread, replaced documents,
    # and a context whose lookup calls another handle's `variants` must each see their own
    # live document.
    def document(revision: str) -> dict[str, Any]:
        return {
            "revision": revision,
            "flags": {
                "a": {"variants": {"x": {"rev": revision}}, "default": "x"},
                "b": {
                    "variants": {"x": {"rev": revision}, "y": {"rev": revision}},
                    "default": "x",
                    "rules": [{"id": "who", "when": {"attr": "who", "op": "eq", "value": "h2-r4"}, "serve": "y"}],
                },
            },
        }

    paths = [tmp_path / f"flags{i}.json" for i in range(3)]
    for i, path in enumerate(paths):
        write_atomic(path, json.dumps(document(f"h{i}-r1")))
    handles = [Flags.from_file(path, reload=False) for path in paths]
    for round_ in range(2, 5):
        for i, handle in enumerate(handles):
            results = handle.variants({}, ["a", "b"])
            assert [results[k]["rev"] for k in ("a", "b")] == [f"h{i}-r{round_ - 1}"] * 2
            assert [v.revision for v in handle.all({}).values()] == [f"h{i}-r{round_ - 1}"] * 2
        for i, (path, handle) in enumerate(zip(paths, handles)):
            write_atomic(path, json.dumps(document(f"h{i}-r{round_}")))
            assert handle.reload_if_changed() is True

    # A context whose lookup reads another handle's flags (a re-entrant call).
    nested = LookupContext(lambda key: handles[2].variants({}, ["a"])["a"]["rev"])
    results = handles[0].variants(nested, ["b", "a"])
    assert (results["b"].id, results["b"]["rev"], results["a"]["rev"]) == ("y", "h0-r4", "h0-r4")
