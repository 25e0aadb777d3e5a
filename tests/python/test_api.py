"""The public Python API: Variant, flag handles, kill switches, explain, status, bucket."""

from __future__ import annotations

import collections
import copy
import json
import pickle
import threading
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Callable

import pytest

import flagrail
from flagrail import (
    DocumentError,
    Flag,
    FlagrailError,
    Flags,
    InvalidArgumentError,
    SourceError,
    Variant,
    bucket,
)

from conftest import EXAMPLE

STAFF = {"user_id": "u-1", "email": "ada@acme.com", "plan": "pro"}
ENTERPRISE = {"user_id": "u-2", "plan": "enterprise"}
CANARY_START = datetime(2026, 11, 21, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def flags() -> Flags:
    return Flags.from_file(EXAMPLE, reload=False)


def test_public_names() -> None:
    assert set(flagrail.__all__) == {
        "HASH_VERSION",
        "AllAttemptsFailedError",
        "CallDepthError",
        "Attempt",
        "CallError",
        "CallResult",
        "DocumentError",
        "Flag",
        "FlagNotFoundError",
        "FlagrailError",
        "Flags",
        "InvalidArgumentError",
        "Output",
        "Override",
        "PinStore",
        "Problem",
        "Reject",
        "SourceError",
        "Tracker",
        "Variant",
        "__version__",
        "bucket",
        "diff",
    }
    for name in flagrail.__all__:
        assert hasattr(flagrail, name), name
    assert flagrail.HASH_VERSION == 1
    assert flagrail.__version__.count(".") == 2


def test_variant_fields_targeting(flags: Flags) -> None:
    v = flags.variant("support-bot", STAFF)
    assert isinstance(v, Variant)
    assert v.id == "v2.2"
    assert v.flag == "support-bot"
    assert v.reason == "TARGETING_MATCH"
    assert v.rule_id == "dogfood"
    assert v.bucket is None
    assert v.revision == "2026-11-21.1"
    assert v.kill_source is None
    assert v["model"] == "claude-opus-4"
    assert v.get("prompt") == "support/v2.2"
    assert v.get("missing") is None
    assert v.get("missing", 0.7) == 0.7
    with pytest.raises(KeyError):
        v["missing"]


def test_variant_fields_default_and_split(flags: Flags) -> None:
    v = flags.variant("support-bot", ENTERPRISE)
    assert (v.id, v.reason, v.rule_id) == ("stable", "TARGETING_MATCH", "enterprise-stays-stable")
    # Before the canary starts, the ramp is at 0 %: everyone else gets the default.
    before = flags.variant("support-bot", {"user_id": "u-3"}, at=CANARY_START - timedelta(hours=1))
    assert (before.id, before.reason, before.rule_id, before.bucket) == ("stable", "DEFAULT", None, None)
    # At the final step everyone is in the ramp.
    done = flags.variant("support-bot", {"user_id": "u-3"}, at="2026-12-31T00:00:00Z")
    assert (done.id, done.reason, done.rule_id) == ("v2.2", "SPLIT", "canary")
    assert isinstance(done.bucket, int) and 0 <= done.bucket < 100000
    assert done.bucket == bucket("support-bot", "u-3")


def test_payload_is_read_only_and_shared(flags: Flags) -> None:
    v = flags.variant("support-bot", ENTERPRISE)
    payload = v.payload
    assert isinstance(payload, MappingProxyType)
    assert dict(payload)["model"] == "claude-sonnet-4"
    assert payload["tools"] == ("search",)  # arrays are tuples: nothing in a payload can change
    with pytest.raises(TypeError):
        payload["model"] = "gpt"  # type: ignore[index]
    with pytest.raises(AttributeError):
        payload["tools"].append("x")
    with pytest.raises(AttributeError):
        v.id = "x"  # type: ignore[misc]
    # Converted once per document and variant: the same object every time.
    assert flags.variant("support-bot", ENTERPRISE).payload is payload
    assert flags.variant("support-bot", {"user_id": "u-9", "plan": "enterprise"}).payload is payload
    # to_dict gives plain, mutable, JSON-ready copies.
    plain = v.to_dict()
    assert plain["payload"]["tools"] == ["search"]
    plain["payload"]["tools"].append("x")
    assert payload["tools"] == ("search",)
    assert json.loads(json.dumps(plain)) == plain
    assert plain == {
        "flag": "support-bot",
        "variant": "stable",
        "payload": plain["payload"],
        "reason": "TARGETING_MATCH",
        "rule_id": "enterprise-stays-stable",
        "bucket": None,
        "revision": "2026-11-21.1",
        "kill_source": None,
        "budget": None,
        "shadow": None,
    }


def test_non_object_payload() -> None:
    flags = Flags.from_dict(
        {"flags": {"on-off": {"variants": {"on": True, "off": False}, "default": "on"}}}
    )
    v = flags.variant("on-off")
    assert v.payload is True
    assert v.get("anything", 1) == 1
    with pytest.raises(KeyError):
        v["anything"]


def test_flag_not_found_uses_the_callers_default(flags: Flags) -> None:
    v = flags.variant("no-such-flag", STAFF, "fallback")
    assert (v.id, v.flag, v.reason, v.rule_id, v.bucket) == ("fallback", "no-such-flag", "FLAG_NOT_FOUND", None, None)
    assert v.revision == "2026-11-21.1"
    assert v.payload is None
    assert v.get("model", "x") == "x"
    assert flags.variant("no-such-flag").id is None
    assert flags.variant("no-such-flag", default="d").id == "d"
    # A key that cannot be UTF-8 names no flag; it is not an error.
    assert flags.variant("bad\udc80key").reason == "FLAG_NOT_FOUND"


def test_flag_keys_resolve_by_value_whatever_the_key_object() -> None:
    # The binding remembers flag indices by key object; equal keys built at run time (more of
    # them than it remembers), str subclasses, and the same object in another document (where
    # the flag sits at another index) must all resolve by value.
    def doc(order: list[str]) -> dict[str, object]:
        return {
            "revision": "-".join(order),
            "flags": {k: {"variants": {k + "-v": {}, "other": {}}, "default": k + "-v"} for k in order},
        }

    keys = [f"flag-{i}" for i in range(100)]
    forward = Flags.from_dict(doc(keys))
    backward = Flags.from_dict(doc(keys[::-1]))

    class Key(str):
        pass

    for key in keys:
        for candidate in (key, "".join(list(key)), Key(key)):
            assert forward.variant(candidate).id == key + "-v"
            assert backward.variant(candidate).id == key + "-v"
            assert forward.variant(candidate + "x").reason == "FLAG_NOT_FOUND"


def test_variant_equality_hash_and_repr(flags: Flags) -> None:
    a = flags.variant("support-bot", STAFF)
    b = flags.variant("support-bot", {"user_id": "other", "email": "bob@acme.dev"})
    c = flags.variant("support-bot", ENTERPRISE)
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert a != "v2.2"
    assert len({a, b, c}) == 2
    r1 = flags.variant("support-bot", {"user_id": "u-1"}, at="2026-12-31T00:00:00Z")
    r2 = flags.variant("support-bot", {"user_id": "u-1"}, at="2026-12-31T00:00:00Z")
    r3 = flags.variant("support-bot", {"user_id": "u-2"}, at="2026-12-31T00:00:00Z")
    assert r1 == r2
    assert r1 != r3 or r1.bucket == r3.bucket
    assert repr(a) == (
        "Variant(flag='support-bot', id='v2.2', reason='TARGETING_MATCH', rule_id='dogfood', "
        "revision='2026-11-21.1')"
    )
    assert "bucket=" in repr(r1)
    assert repr(flags.variant("nope")) == "Variant(flag='nope', id=None, reason='FLAG_NOT_FOUND', revision='2026-11-21.1')"


def test_variant_is_not_constructible() -> None:
    with pytest.raises(TypeError):
        Variant()


def test_flag_handle(flags: Flags) -> None:
    chat = flags.flag("support-bot")
    assert isinstance(chat, Flag)
    assert chat.key == "support-bot"
    assert repr(chat) == "<flagrail.Flag 'support-bot'>"
    assert chat.variant(STAFF) == flags.variant("support-bot", STAFF)
    assert chat.variant(ENTERPRISE).id == "stable"
    assert chat.variant({"user_id": "u-3"}, at="2026-12-31T00:00:00Z").reason == "SPLIT"
    assert chat.explain(STAFF)["variant"] == "v2.2"
    missing = flags.flag("not-yet")
    assert missing.variant(STAFF, "dflt").id == "dflt"


def test_context_types(flags: Flags) -> None:
    # bool is not an int, a list of str is a list, a tuple of str too.
    doc = {
        "flags": {
            "f": {
                "variants": {"a": {}, "b": {}, "c": {}, "d": {}, "e": {}},
                "default": "a",
                "rules": [
                    {"id": "is-true", "when": {"attr": "beta", "op": "eq", "value": True}, "serve": "b"},
                    {"id": "count", "when": {"attr": "n", "op": "gte", "value": 10}, "serve": "c"},
                    {"id": "groups", "when": {"attr": "groups", "op": "contains", "value": "staff"}, "serve": "d"},
                    {"id": "score", "when": {"attr": "score", "op": "lt", "value": 0.5}, "serve": "e"},
                ],
            }
        }
    }
    f = Flags.from_dict(doc)
    assert f.variant("f", {"beta": True}).id == "b"
    assert f.variant("f", {"beta": 1}).id == "a"  # 1 is not True
    assert f.variant("f", {"n": True}).id == "a"  # True is not 1
    assert f.variant("f", {"n": 12}).id == "c"
    assert f.variant("f", {"n": 12.5}).id == "c"
    assert f.variant("f", {"n": 2**70}).id == "c"  # beyond i64: compared as a float
    assert f.variant("f", {"groups": ["a", "staff"]}).id == "d"
    assert f.variant("f", {"groups": ("staff",)}).id == "d"
    assert f.variant("f", {"score": 0.25}).id == "e"
    assert f.variant("f", collections.OrderedDict(score=0.25)).id == "e"
    assert f.variant("f", MappingProxyType({"score": 0.25})).id == "e"
    assert f.variant("f", {}).id == "a"
    assert f.variant("f", None).id == "a"
    assert f.variant("f").id == "a"


@pytest.mark.parametrize(
    "value",
    [
        {"nested": "dict"},
        [1, 2],
        ["staff", 3],
        {1, 2},
        b"bytes",
        object(),
        datetime.now(timezone.utc),
        None,
        "bad\udc80surrogate",
        ["bad\udc80surrogate"],
    ],
    ids=repr,
)
def test_wrong_typed_context_values_are_ignored(flags: Flags, value: object) -> None:
    ctx = {"user_id": value, "plan": value, "email": value, "groups": value}
    v = flags.variant("support-bot", ctx, at="2026-12-31T00:00:00Z")
    # Nothing matches and the unit cannot be bucketed: the default, no exception.
    assert (v.id, v.reason) == ("stable", "DEFAULT")
    explained = flags.explain("support-bot", ctx, at="2026-12-31T00:00:00Z")
    assert explained["variant"] == "stable"
    assert any(step.get("attr") == "plan" for step in explained["steps"])


def test_wrong_typed_values_are_visible_in_explain(flags: Flags) -> None:
    explained = flags.explain("support-bot", {"user_id": "u-1", "plan": {"tier": "gold"}})
    plan = next(step for step in explained["steps"] if step.get("attr") == "plan")
    assert plan["actual"] == "<dict>"
    assert plan["matched"] is False
    assert "dict" in plan["ignored"]
    missing = next(step for step in explained["steps"] if step.get("attr") == "email")
    assert missing["ignored"] == "attribute is missing"
    bucket_step = flags.explain("support-bot", {"user_id": 3.5}, at="2026-12-31T00:00:00Z")
    assert any("skipped" in step for step in bucket_step["steps"])


def test_bad_argument_types_raise_type_error(flags: Flags) -> None:
    with pytest.raises(TypeError):
        flags.variant("support-bot", ["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        flags.variant("support-bot", "user")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        flags.variant(42, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        flags.variant("support-bot", {}, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        flags.variant("support-bot", {}, at=12345)  # type: ignore[arg-type]


def test_variant_arguments_by_position_and_keyword(flags: Flags) -> None:
    # `variant` is a raw C entry point (fast.rs): it must take its arguments like any method.
    by_position = flags.variant("support-bot", ENTERPRISE, "d")
    assert by_position == flags.variant(flag="support-bot", context=ENTERPRISE, default="d")
    assert flags.variant(context=ENTERPRISE, flag="support-bot") == by_position
    assert flags.variant("nope", None, None).id is None
    assert flags.variant("nope", default=None, at=None).reason == "FLAG_NOT_FOUND"
    assert flags.variant("nope", {}, default="d").id == "d"
    chat = flags.flag("support-bot")
    assert chat.variant(ENTERPRISE) == chat.variant(context=ENTERPRISE) == by_position
    assert chat.variant() == flags.variant("support-bot")
    assert flags.flag("nope").variant(None, "d").id == "d"
    at = "2026-12-31T00:00:00Z"
    assert chat.variant({"user_id": "u-3"}, at=at) == flags.variant("support-bot", {"user_id": "u-3"}, at=at)
    # Deliberately wrong calls: the checker is told, the runtime must refuse them.
    wrong: list[tuple[Callable[[], object], str]] = [
        (lambda: flags.variant(), "missing required argument 'flag'"),  # type: ignore[call-arg]
        (lambda: flags.variant("a", {}, None, None), "at most 3 positional arguments"),  # type: ignore[call-arg]
        (lambda: flags.variant("a", colour=1), "unexpected keyword argument 'colour'"),  # type: ignore[call-arg]
        (lambda: flags.variant("a", flag="b"), "multiple values for argument 'flag'"),  # type: ignore[misc]
        (lambda: flags.variant("a", {}, default=3), "argument 'default' must be str, not int"),  # type: ignore[arg-type]
        (lambda: chat.variant({}, None, None), "at most 2 positional arguments"),  # type: ignore[call-arg]
        (lambda: chat.variant(flag="x"), "unexpected keyword argument 'flag'"),  # type: ignore[call-arg]
    ]
    for call, message in wrong:
        with pytest.raises(TypeError, match=message):
            call()
    signature = "($self, flag, context=None, default=None, *, at=None)"
    assert getattr(Flags.variant, "__text_signature__") == signature
    assert getattr(Flag.variant, "__text_signature__") == "($self, context=None, default=None, *, at=None)"
    assert (Flags.variant.__doc__ or "").startswith("The variant of ``flag`` for ``context``.")
    with pytest.raises(TypeError):
        Flags.variant(object(), "support-bot")  # type: ignore[arg-type]


def test_results_that_are_kept_never_change() -> None:
    # Result objects that the caller has let go of are given out again (live.rs); ones that
    # are still referenced anywhere must keep their own outcome.
    doc = {
        "revision": "r1",
        "flags": {
            "f": {
                "bucket_by": "user_id",
                "variants": {"a": {"n": 1}, "b": {"n": 2}},
                "default": "a",
                "rules": [{"id": "s", "split": [{"variant": "a", "percent": 50}, {"variant": "b", "percent": 50}]}],
            }
        },
    }
    flags = Flags.from_dict(doc)
    users = [f"user-{i}" for i in range(2000)]
    kept = [flags.variant("f", {"user_id": u}) for u in users]
    for user, v in zip(users, kept):
        assert v.bucket == bucket("f", user)
        assert v.id == ("a" if bucket("f", user) < 50000 else "b")
    # Interleaved: the previous result is still bound while the next call runs.
    previous, previous_user = flags.variant("f", {"user_id": users[0]}), users[0]
    for user in users[1:200]:
        current = flags.variant("f", {"user_id": user})
        assert previous is not current
        assert previous.bucket == bucket("f", previous_user)
        assert current.bucket == bucket("f", user)
        previous, previous_user = current, user
    # Kept in other containers, as attributes, across threads: never rewritten.
    held = {u: flags.variant("f", {"user_id": u}) for u in users[:300]}
    seen: list[Variant] = []

    def churn() -> None:
        for u in users:
            v = flags.variant("f", {"user_id": u})
            assert v.bucket == bucket("f", u)
        seen.append(flags.variant("f", {"user_id": users[7]}))

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(v.bucket == bucket("f", u) for u, v in held.items())
    assert len(seen) == 4 and all(v.bucket == bucket("f", users[7]) for v in seen)
    assert len({id(v) for v in kept}) == len(kept)


def test_at_accepts_aware_datetimes_and_rfc3339(flags: Flags) -> None:
    ctx = {"user_id": "u-3"}
    by_text = flags.variant("support-bot", ctx, at="2026-12-31T00:00:00Z")
    by_datetime = flags.variant("support-bot", ctx, at=datetime(2026, 12, 31, tzinfo=timezone.utc))
    by_offset = flags.variant(
        "support-bot", ctx, at=datetime(2026, 12, 31, 2, tzinfo=timezone(timedelta(hours=2)))
    )
    assert by_text == by_datetime == by_offset
    with pytest.raises(InvalidArgumentError) as raised:
        flags.variant("support-bot", ctx, at=datetime(2026, 12, 31))
    assert raised.value.code == "INVALID_ARGUMENT"
    assert "naive" in str(raised.value)
    with pytest.raises(InvalidArgumentError):
        flags.variant("support-bot", ctx, at="tomorrow")
    # explain follows the same instant
    assert flags.explain("support-bot", ctx, at="2026-12-31T00:00:00Z")["reason"] == "SPLIT"


def test_kill_and_unkill_are_local_overrides() -> None:
    flags = Flags.from_file(EXAMPLE, reload=False)
    assert flags.variant("support-bot", STAFF).id == "v2.2"
    flags.kill("support-bot", reason="bad answers")
    killed = flags.variant("support-bot", STAFF)
    assert (killed.id, killed.reason, killed.kill_source, killed.rule_id) == ("human", "KILLED", "local-flag", None)
    assert killed["ai"] is False
    # other flags are untouched
    assert flags.variant("support-prompt", STAFF).reason != "KILLED"
    status = flags.status()
    assert status["local_kills"]["flags"]["support-bot"]["reason"] == "bad answers"
    flags.unkill("support-bot")
    assert flags.variant("support-bot", STAFF).id == "v2.2"
    flags.kill()
    assert flags.variant("support-prompt", STAFF).reason == "KILLED"
    assert flags.variant("support-bot", STAFF).kill_source == "local-all"
    assert flags.status()["local_kills"]["all"] is not None
    flags.unkill()
    assert flags.variant("support-bot", STAFF).reason == "TARGETING_MATCH"
    assert flags.status()["local_kills"] == {"all": None, "flags": {}}
    # a kill of an unknown flag is harmless
    flags.kill("no-such-flag")
    assert flags.variant("no-such-flag", default="x").reason == "FLAG_NOT_FOUND"


def test_document_kill_cannot_be_lifted_locally() -> None:
    doc = json.loads(EXAMPLE.read_text())
    doc["flags"]["support-bot"]["kill"]["active"] = True
    flags = Flags.from_dict(doc)
    v = flags.variant("support-bot", STAFF)
    assert (v.id, v.reason, v.kill_source) == ("human", "KILLED", "flag")
    flags.unkill()
    assert flags.variant("support-bot", STAFF).reason == "KILLED"


def test_explain_content(flags: Flags) -> None:
    explained = flags.explain("support-bot", STAFF)
    for key in ("flag", "variant", "payload", "reason", "rule_id", "bucket", "revision", "kill_source", "steps"):
        assert key in explained
    assert explained["flag"] == "support-bot"
    assert explained["variant"] == "v2.2"
    assert explained["reason"] == "TARGETING_MATCH"
    assert explained["rule_id"] == "dogfood"
    assert explained["payload"]["tools"] == ["search", "rewrite"]
    assert {"step": "rule", "rule_id": "enterprise-stays-stable", "matched": False} in explained["steps"]
    assert {"segment": "internal", "matched": True} in explained["steps"]
    assert json.dumps(explained)  # plain JSON types
    unknown = flags.explain("no-such-flag", STAFF)
    assert (unknown["variant"], unknown["reason"]) == (None, "FLAG_NOT_FOUND")


def test_status_fields(flags_file) -> None:  # type: ignore[no-untyped-def]
    flags = Flags.from_file(flags_file, poll_interval=0.05)
    status = flags.status()
    assert status["source"] == f"file:{flags_file}"
    assert status["revision"] == "r1" == flags.revision
    assert status["watching"] is True
    assert status["last_error"] is None
    assert (status["reloads"], status["rejected"]) == (0, 0)
    assert status["age_seconds"] >= 0
    assert status["loaded_at"].endswith("Z")
    static = Flags.from_dict(json.loads(flags_file.read_text()))
    assert static.status()["source"] == "static"
    assert static.status()["watching"] is False
    assert static.reload_if_changed() is False
    assert "static" in repr(static) and "'r1'" in repr(static)


def test_from_json_from_dict_and_from_file_agree() -> None:
    text = EXAMPLE.read_text()
    loaded = [Flags.from_json(text), Flags.from_dict(json.loads(text)), Flags.from_file(str(EXAMPLE), reload=False)]
    for ctx in (STAFF, ENTERPRISE, {"user_id": "u-7", "groups": ["beta"], "country": "US", "conversation_id": "c-1"}):
        for flag in ("support-bot", "support-prompt", "support-temperature"):
            results = {f.variant(flag, ctx, at="2026-11-24T00:00:00Z") for f in loaded}
            assert len(results) == 1, (flag, ctx, results)


def test_from_dict_rejects_values_without_json_form() -> None:
    doc = json.loads(EXAMPLE.read_text())
    doc["flags"]["support-bot"]["variants"]["stable"]["when"] = datetime(2026, 1, 1)
    doc["flags"]["support-bot"]["variants"]["stable"]["ratio"] = float("nan")
    doc["flags"]["support-bot"]["variants"]["stable"][1] = "int key"
    with pytest.raises(DocumentError) as raised:
        Flags.from_dict(doc)
    paths = {(p.path, p.code) for p in raised.value.problems}
    assert ("flags.support-bot.variants.stable.when", "WRONG_TYPE") in paths
    assert ("flags.support-bot.variants.stable.ratio", "INVALID_VALUE") in paths
    assert ("flags.support-bot.variants.stable", "WRONG_TYPE") in paths
    cyclic: dict[str, object] = {"flags": {}}
    cyclic["self"] = cyclic
    with pytest.raises(DocumentError):
        Flags.from_dict(cyclic)
    # tuples and read-only mappings are fine
    assert Flags.from_dict(MappingProxyType({"flags": {"f": {"variants": {"a": {"t": (1, 2)}}, "default": "a"}}})).variant("f")["t"] == (1, 2)


def test_bucket_str_and_int_units() -> None:
    assert bucket("support-bot", "user-123", 100) == 86
    assert bucket("support-bot", "user-123") == bucket("support-bot", "user-123", 100000)
    assert 0 <= bucket("support-bot", "user-123") < 100000
    assert bucket("s", 42) == bucket("s", "42")
    assert bucket("s", -7, 1000) == bucket("s", "-7", 1000)
    assert bucket("s", 2**63 - 1) == bucket("s", str(2**63 - 1))
    assert bucket("s", -(2**63)) == bucket("s", str(-(2**63)))
    assert bucket("s", "u", 1) == 0
    assert 0 <= bucket("s", "u", 4294967295) < 4294967295


@pytest.mark.parametrize("total", [0, -1, 4294967296])
def test_bucket_total_bounds(total: int) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        bucket("s", "u", total)
    assert raised.value.code == "INVALID_ARGUMENT"
    assert isinstance(raised.value, (ValueError, FlagrailError))


def test_bucket_unit_types() -> None:
    with pytest.raises(InvalidArgumentError):
        bucket("s", 2**63)
    with pytest.raises(InvalidArgumentError):
        bucket("s", -(2**63) - 1)
    for bad in (1.5, True, None, b"u", ["u"]):
        with pytest.raises(TypeError):
            bucket("s", bad)  # type: ignore[arg-type]


def test_exceptions_pickle_and_hierarchy() -> None:
    with pytest.raises(DocumentError) as raised:
        Flags.from_json('{"flags": {"a": {"variants": {}, "default": "x"}}}')
    err = raised.value
    assert isinstance(err, FlagrailError) and isinstance(err, ValueError)
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is DocumentError
    assert (clone.code, clone.problems, str(clone)) == (err.code, err.problems, str(err))
    assert copy.copy(err).problems == err.problems
    with pytest.raises(SourceError) as missing:
        Flags.from_file("/definitely/not/here.json")
    assert pickle.loads(pickle.dumps(missing.value)).source == "/definitely/not/here.json"


def test_handle_is_shared_across_threads(flags: Flags) -> None:
    errors: list[BaseException] = []
    results: set[str | None] = set()

    def work() -> None:
        try:
            for i in range(2000):
                results.add(flags.variant("support-bot", {"user_id": f"u-{i}", "email": "x@acme.com"}).id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == {"v2.2"}
