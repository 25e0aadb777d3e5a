"""Exposures of plain reads (`exposures=` on the loaders): events, deduplication per unit, flag
and revision within the window, deterministic sampling, per-variant counts (docs/runtime.md,
"Exposures of plain reads"). Windows are driven with `at=`, never with sleeps."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from flagrail import Flags, InvalidArgumentError, bucket

DOCUMENT: dict[str, Any] = {
    "revision": "r1",
    "flags": {
        "chat-model": {
            "bucket_by": "user_id",
            "variants": {"control": {"model": "m-a"}, "v2": {"model": "m-b"}},
            "default": "control",
            "rules": [
                {"id": "internal", "when": {"attr": "segment", "op": "eq", "value": "internal"}, "serve": "v2"},
                {"id": "split", "split": [{"variant": "control", "percent": 50}, {"variant": "v2", "percent": 50}]},
            ],
        },
        "tone": {
            "bucket_by": "user_id",
            "variants": {"plain": {}, "warm": {}},
            "default": "plain",
            "rules": [{"id": "split", "split": [{"variant": "plain", "percent": 50}, {"variant": "warm", "percent": 50}]}],
        },
    },
}

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)


def handle(**exposures: Any) -> tuple[Flags, list[dict[str, Any]]]:
    flags = Flags.from_dict(DOCUMENT, exposures=exposures or True)
    events: list[dict[str, Any]] = []
    flags.on_event(events.append)
    return flags, events


def reads(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "exposure" and e["source"] == "read"]


def test_a_read_sends_an_exposure_with_the_fields_of_a_call_exposure() -> None:
    flags, events = handle()
    v = flags.variant("chat-model", {"user_id": "u-1", "segment": "external"}, at=T0)
    [event] = reads(events)
    assert event == {
        "type": "exposure",
        "time": "2026-12-04T09:00:00Z",
        "run_id": None,
        "flag": "chat-model",
        "variant": v.id,
        "revision": "r1",
        "reason": "SPLIT",
        "rule_id": "split",
        "bucket": v.bucket,
        "model": v["model"],
        "shadow": False,
        "unit": "u-1",
        "segment": "external",
        "source": "read",
    }
    # A call's exposure has the same fields, with its run id and source "run".
    flags.call("chat-model", {"user_id": "u-1"}, lambda variant: "ok")
    [run] = [e for e in events if e["type"] == "exposure" and e["source"] == "run"]
    assert set(run) == set(event) and run["run_id"]
    assert len(reads(events)) == 1


def test_one_event_per_unit_flag_and_revision_within_the_window() -> None:
    flags, events = handle(window=60.0)
    user = {"user_id": "u-1", "segment": "external"}
    for offset in (0, 1, 59.999):
        flags.variant("chat-model", user, at=T0 + timedelta(seconds=offset))
    assert len(reads(events)) == 1
    # Another flag and another unit are other keys.
    flags.variant("tone", user, at=T0)
    flags.variant("chat-model", {"user_id": "u-2"}, at=T0)
    assert [(e["flag"], e["unit"]) for e in reads(events)] == [
        ("chat-model", "u-1"),
        ("tone", "u-1"),
        ("chat-model", "u-2"),
    ]
    # The window ends 60 s after the event that opened it.
    flags.variant("chat-model", user, at=T0 + timedelta(seconds=60))
    assert len(reads(events)) == 4
    assert reads(events)[-1]["time"] == "2026-12-04T09:01:00Z"
    exposures = flags.status()["exposures"]
    assert exposures["events"] == 4 and exposures["duplicates"] == 2 and exposures["reads"] == 6


def test_sampling_is_bucketing_of_flag_exposure_and_every_reread_agrees() -> None:
    flags, events = handle(sample=0.3, window=1.0)
    units = [f"user-{i}" for i in range(3000)] + ["josé", "🙂", "42"]
    for second in (0, 5):  # past the window: the second pass draws again
        for unit in units:
            flags.variant("chat-model", {"user_id": unit}, at=T0 + timedelta(seconds=second))
    expected = {u for u in units if bucket("chat-model/exposure", u, 100000) < 30000}
    got = Counter(e["unit"] for e in reads(events))
    assert set(got) == expected
    assert all(n == 2 for n in got.values())
    assert 800 < len(expected) < 1000
    # The draw is independent of the variant: both variants are sampled at about 30 %.
    by_variant = Counter(e["variant"] for e in reads(events))
    assert set(by_variant) == {"control", "v2"}
    exposures = flags.status()["exposures"]
    assert exposures["not_sampled"] == 2 * (len(units) - len(expected))


def test_integer_units_are_sampled_as_their_decimal_text() -> None:
    flags, events = handle(sample=0.5)
    for unit in range(200):
        flags.variant("chat-model", {"user_id": unit}, at=T0)
    expected = {str(u) for u in range(200) if bucket("chat-model/exposure", str(u), 100000) < 50000}
    assert {e["unit"] for e in reads(events)} == expected


def test_counts_every_read_per_variant_in_status_and_prometheus() -> None:
    flags, events = handle(sample=0.0)
    served: Counter[str | None] = Counter()
    for i in range(100):
        served[flags.variant("chat-model", {"user_id": f"u-{i % 10}"}, at=T0).id] += 1
    served[flags.variants({"user_id": "u-1"}, ["chat-model", "tone"], at=T0)["chat-model"].id] += 1
    served[flags.all({"user_id": "u-2"}, at=T0)["chat-model"].id] += 1
    flags.variant("missing", {"user_id": "u-1"})  # an unknown flag is not counted
    exposures = flags.status()["exposures"]
    assert reads(events) == []  # sample 0: counts only
    chat = exposures["flags"]["chat-model"]
    assert chat == dict(served)
    assert sum(exposures["flags"]["tone"].values()) == 2
    assert exposures["reads"] == 104
    assert (exposures["window_ms"], exposures["sample"], exposures["max_keys"]) == (3_600_000, 0.0, 100_000)
    text = flags.metrics_text()
    assert f'flagrail_exposures_total{{flag="chat-model",variant="control"}} {chat["control"]}\n' in text
    assert "flagrail_exposure_events_total 0\n" in text
    assert flags.metrics()["$exposures"] == flags.status()["exposures"]


def test_a_flag_that_decides_without_the_unit_still_exposes_it() -> None:
    # `plan` only: evaluation reads neither `user_id` nor `segment`, a read with exposures on does.
    document = {
        "revision": "r1",
        "flags": {
            "by-plan": {
                "variants": {"basic": {}, "pro": {}},
                "default": "basic",
                "rules": [{"id": "pro", "when": {"attr": "plan", "op": "eq", "value": "pro"}, "serve": "pro"}],
            }
        },
    }
    flags = Flags.from_dict(document, exposures=True)
    events: list[dict[str, Any]] = []
    flags.on_event(events.append)
    flags.variant("by-plan", {"user_id": "u-7", "plan": "pro", "segment": "beta"})
    flags.flag("by-plan").variant({"user_id": 8, "plan": "free"})
    # Several flags at once read the unit and the label too, with `at` and without.
    flags.variants({"user_id": "u-10", "plan": "pro", "segment": "beta"}, ["by-plan"])
    flags.all({"user_id": "u-11", "segment": "gamma"})
    flags.variants({"user_id": 12, "plan": "pro"}, ["by-plan"], at=T0)
    assert [(e["unit"], e["segment"], e["variant"], e["reason"]) for e in reads(events)] == [
        ("u-7", "beta", "pro", "TARGETING_MATCH"),
        ("8", None, "basic", "DEFAULT"),
        ("u-10", "beta", "pro", "TARGETING_MATCH"),
        ("u-11", "gamma", "basic", "DEFAULT"),
        ("12", None, "pro", "TARGETING_MATCH"),
    ]
    assert flags.status()["exposures"]["no_unit"] == 0


def test_reads_without_a_unit_are_counted_without_an_event() -> None:
    flags, events = handle()
    flags.variant("chat-model", {"segment": "internal"}, at=T0)
    assert reads(events) == []
    assert flags.status()["exposures"]["no_unit"] == 1


def test_off_by_default_and_overrides_are_not_exposures() -> None:
    flags = Flags.from_dict(DOCUMENT)
    events: list[dict[str, Any]] = []
    flags.on_event(events.append)
    flags.variant("chat-model", {"user_id": "u-1"})
    assert events == [] and flags.status()["exposures"] is None
    assert "$exposures" not in flags.metrics()
    assert "flagrail_exposures_total" not in flags.metrics_text()
    on, on_events = handle()
    with on.override("chat-model", "v2"):
        on.variant("chat-model", {"user_id": "u-1"})
    assert reads(on_events) == []


def test_hashed_units_in_read_exposures() -> None:
    flags, events = handle()
    flags.hash_units(b"key")
    flags.variant("chat-model", {"user_id": "u-1"})
    assert reads(events)[0]["unit"].startswith("h:")


@pytest.mark.parametrize(
    ("exposures", "message"),
    [
        ({"window": 0}, "window must be a duration"),
        ({"sample": 1.5}, "sample must be a share from 0 to 1, got 1.5"),
        ({"sample": float("nan")}, "sample"),
        ({"max_keys": 1}, "max_keys must be a whole number from 2"),
        ({"max_keys": 10.5}, "max_keys"),
        ({"windw": 1}, 'unknown option "windw"'),
        ({"sample": "all"}, "sample must be a number"),
        ({"sample": True}, "sample must be a number"),
        ("yes", "exposures must be a dict"),
    ],
)
def test_bad_options_raise_invalid_argument(exposures: Any, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message) as caught:
        Flags.from_dict(DOCUMENT, exposures=exposures)
    assert caught.value.code == "INVALID_ARGUMENT"


def test_every_loader_takes_the_option(tmp_path: Any) -> None:
    import json

    path = tmp_path / "flags.json"
    path.write_text(json.dumps(DOCUMENT))
    for flags in (
        Flags.from_file(path, reload=False, exposures={"window": 10}),
        Flags.from_json(json.dumps(DOCUMENT), exposures={"window": 10}),
        Flags.for_tests({"chat-model": "v2"}, exposures=True),
    ):
        flags.variant("chat-model", {"user_id": "u-1"})
        assert flags.status()["exposures"]["reads"] == 1
        flags.close()
