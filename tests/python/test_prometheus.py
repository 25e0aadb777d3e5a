"""metrics_text() read by the real Prometheus parser: one family per metric, label sets that
partition it (summing over `segment` gives the variant's total, nothing counted twice), and the
live document's revision, reloads and rejected loads as metrics; reload events alongside."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from flagrail import DocumentError, Flags

from conftest import chat_document, write_atomic


def guarded_document() -> dict[str, Any]:
    return {
        "revision": "p1",
        "flags": {
            "bot": {
                "variants": {"a": {"model": "m-a"}, "b": {"model": "m-b"}, "human": {"ai": False}},
                "default": "a",
                "fallback": ["b", "human"],
                "guardrails": [
                    {"metric": "error_rate", "max": 0.5, "min_samples": 50, "action": "fallback", "variants": ["a"]}
                ],
                "budgets": [{"per": "user_id", "max_requests": 1000, "window": "1h", "action": {"serve": "human"}}],
            }
        },
    }


class ProviderError(Exception):
    status_code = 503


def families(flags: Flags) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(flags.metrics_text())}


def test_label_sets_partition_every_family() -> None:
    flags = Flags.from_dict(guarded_document())
    for i in range(30):
        segment = ("internal", "external", None)[i % 3]
        context: dict[str, Any] = {"user_id": f"u{i}"}
        if segment is not None:
            context["segment"] = segment

        def answer(v: Any, i: int = i) -> str:
            if v.id == "a" and i % 4 == 0:
                raise ProviderError("down")
            return "ok"

        result = flags.call("bot", context, answer)
        flags.feedback(result.run_id, score=1.0, quality=0.5)

    parsed = families(flags)
    assert parsed, "the text parses"
    for family in parsed.values():
        by_name: dict[str, list[frozenset[tuple[str, str]]]] = defaultdict(list)
        for sample in family.samples:
            by_name[sample.name].append(frozenset(sample.labels.items()))
        for name, label_sets in by_name.items():
            # No two series of one name with the same labels, and every series of a name has
            # the same label names: none is a total of the others.
            assert len(set(label_sets)) == len(label_sets), name
            assert len({frozenset(k for k, _ in labels) for labels in label_sets}) == 1, name

    totals = flags.metrics()["bot"]
    requests = parsed["flagrail_requests"]
    for variant in ("a", "b"):
        summed = sum(s.value for s in requests.samples if s.labels["variant"] == variant)
        assert summed == totals[variant]["requests"]
    segments = {s.labels["segment"] for s in requests.samples if s.labels["variant"] == "a"}
    assert segments == {"internal", "external", "_none"}
    errors = sum(s.value for s in parsed["flagrail_errors"].samples if s.labels["variant"] == "a")
    assert errors == totals["a"]["errors"] == 8
    quality = sum(s.value for s in parsed["flagrail_quality"].samples if s.name == "flagrail_quality_count")
    assert quality == 30
    assert {s.labels["guardrail"] for s in parsed["flagrail_guardrail_state"].samples} == {"error_rate"}
    assert parsed["flagrail_budget_limit"].samples[0].value == 1000


def test_revision_reloads_and_rejected_loads_are_metrics_and_events(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    write_atomic(path, json.dumps(chat_document("r1")))
    flags = Flags.from_file(path, reload=False)
    events: list[dict[str, Any]] = []
    flags.on_event(events.append)

    def value(name: str, labels: dict[str, str] | None = None) -> float:
        for sample in families(flags)[name].samples:
            if labels is None or sample.labels == labels:
                return float(sample.value)
        raise AssertionError(f"no sample {name} {labels}")

    assert value("flagrail_document_info", {"revision": "r1"}) == 1
    assert value("flagrail_reloads") == 0 and value("flagrail_reloads_rejected") == 0
    write_atomic(path, json.dumps(chat_document("r2")))
    assert flags.reload_if_changed()
    write_atomic(path, '{"revision": "r3", "flags": ')
    with pytest.raises(DocumentError):
        flags.reload_if_changed()
    assert value("flagrail_document_info", {"revision": "r2"}) == 1
    assert value("flagrail_reloads") == 1 and value("flagrail_reloads_rejected") == 1
    assert value("flagrail_document_loaded_timestamp_seconds") > 0
    kinds = [e["type"] for e in events]
    assert kinds == ["reload", "reload_rejected"]
    assert (events[0]["previous"], events[0]["revision"]) == ("r1", "r2")
    assert events[1]["revision"] == "r2" and events[1]["code"] == "INVALID_DOCUMENT"
    assert events[1]["problems"][0]["code"] == "INVALID_JSON"
