"""``flagrail.openfeature.FlagrailProvider`` through the real OpenFeature SDK (``openfeature``):
the evaluation details the SDK documents (value, variant, reason, error code and message, flag
metadata; the caller's default on any error), provider events on reload and on a rejected
document, and ``track`` forwarded to feedback."""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.provider import ProviderStatus
from openfeature.track import TrackingEventDetails

from flagrail import Flags
from flagrail.openfeature import FlagrailProvider

from conftest import wait_until, write_atomic


def document(revision: str = "r1") -> dict[str, Any]:
    return {
        "revision": revision,
        "flags": {
            "support-bot": {
                "variants": {
                    "stable": {"model": "model-a", "temperature": 0.2, "max_tokens": 800, "tools": ["search"]},
                    "candidate": {"model": "model-b", "temperature": 0.7, "max_tokens": 800, "tools": []},
                    "human": {"ai": False},
                },
                "default": "stable",
                "kill": {"active": False, "serve": "human"},
                "rules": [
                    {"id": "pro-first", "when": {"attr": "plan", "op": "eq", "value": "pro"}, "serve": "candidate"},
                    {"id": "half", "split": [{"variant": "stable", "percent": 50}, {"variant": "candidate", "percent": 50}]},
                ],
            },
            "dark-mode": {"variants": {"on": True, "off": False}, "default": "on"},
            "retries": {"variants": {"few": 2, "many": 5}, "default": "many"},
            "ratio": {"variants": {"low": 0.25}, "default": "low"},
            "launch": {
                "variants": {"before": "old", "after": "new"},
                "default": "before",
                "rules": [
                    {"id": "dated", "when": {"attr": "now", "op": "after", "value": "2026-01-01T00:00:00Z"}, "serve": "after"}
                ],
            },
        },
    }


@pytest.fixture
def flags() -> Flags:
    return Flags.from_dict(document())


@pytest.fixture(autouse=True)
def clean_api() -> Iterator[None]:
    yield
    api.shutdown()
    api.clear_providers()


def client_for(provider: FlagrailProvider) -> Any:
    api.set_provider(provider)
    return api.get_client()


def test_object_resolution_is_the_payload_with_variant_reason_and_metadata(flags: Flags) -> None:
    client = client_for(FlagrailProvider(flags))
    details = client.get_object_details("support-bot", {}, EvaluationContext("u-1", {"plan": "pro"}))
    assert details.value == {"model": "model-b", "temperature": 0.7, "max_tokens": 800, "tools": []}
    assert type(details.value) is dict  # a plain dict, as the SDK's type check wants
    assert details.variant == "candidate"
    assert details.reason == Reason.TARGETING_MATCH
    assert details.error_code is None and details.error_message is None
    assert details.flag_metadata == {"revision": "r1", "flagrail_reason": "TARGETING_MATCH", "rule_id": "pro-first"}


def test_the_targeting_key_is_the_unit(flags: Flags) -> None:
    client = client_for(FlagrailProvider(flags))
    for unit in ["u-1", "u-2", "u-3", "u-4", "u-5", "u-6"]:
        details = client.get_string_details("support-bot", "fallback", EvaluationContext(unit))
        assert details.reason == Reason.SPLIT
        assert details.value == flags.variant("support-bot", {"user_id": unit}).id
        assert details.flag_metadata["bucket"] == flags.variant("support-bot", {"user_id": unit}).bucket
        assert details.flag_metadata["rule_id"] == "half"
    # Another attribute name for the unit.
    client = client_for(FlagrailProvider(flags, targeting_key_attribute="conversation_id"))
    details = client.get_string_details("support-bot", "fallback", EvaluationContext("u-1"))
    assert details.reason == Reason.DEFAULT  # no user_id: the split is skipped


def test_string_is_the_variant_id_or_the_configured_field(flags: Flags) -> None:
    client = client_for(FlagrailProvider(flags, fields={"support-bot": "model"}))
    ctx = EvaluationContext("u-1", {"plan": "pro"})
    assert client.get_string_value("support-bot", "x", ctx) == "model-b"
    assert client.get_float_value("support-bot", 0.0, ctx) == pytest.approx(0.0)  # "model" is a str
    client = client_for(FlagrailProvider(flags))
    assert client.get_string_value("support-bot", "x", ctx) == "candidate"


def test_boolean_and_number_resolution_read_scalar_payloads(flags: Flags) -> None:
    client = client_for(FlagrailProvider(flags))
    details = client.get_boolean_details("dark-mode", False)
    assert details.value is True and details.variant == "on"
    assert details.reason == Reason.STATIC  # a flag without rules
    assert client.get_integer_value("retries", 0) == 5
    assert client.get_float_value("ratio", 0.0) == 0.25
    assert client.get_float_value("retries", 0.0) == 5.0


def test_a_payload_field_for_numbers(flags: Flags) -> None:
    client = client_for(FlagrailProvider(flags, fields={"support-bot": "temperature"}))
    assert client.get_float_value("support-bot", 1.0, EvaluationContext("u-1", {"plan": "pro"})) == 0.7
    details = client.get_integer_details("support-bot", 3, EvaluationContext("u-1", {"plan": "pro"}))
    assert details.value == 3 and details.error_code == ErrorCode.TYPE_MISMATCH


def test_an_unknown_flag_returns_the_default_with_flag_not_found(flags: Flags) -> None:
    client = client_for(FlagrailProvider(flags))
    details = client.get_boolean_details("no-such-flag", True)
    assert details.value is True
    assert details.reason == Reason.ERROR
    assert details.error_code == ErrorCode.FLAG_NOT_FOUND
    assert details.error_message is not None and "no-such-flag" in details.error_message
    assert details.variant is None


def test_a_type_mismatch_returns_the_default(flags: Flags) -> None:
    client = client_for(FlagrailProvider(flags))
    details = client.get_boolean_details("support-bot", False, EvaluationContext("u-1"))
    assert details.value is False
    assert details.reason == Reason.ERROR
    assert details.error_code == ErrorCode.TYPE_MISMATCH
    assert details.error_message is not None and "not a boolean" in details.error_message
    # An integer flag read as a boolean, and a bool payload read as a number.
    assert client.get_boolean_details("retries", False).error_code == ErrorCode.TYPE_MISMATCH
    assert client.get_integer_details("dark-mode", 7).value == 7
    assert client.get_object_details("retries", {"d": 1}).value == {"d": 1}


def test_a_missing_payload_field_is_a_general_error(flags: Flags) -> None:
    client = client_for(FlagrailProvider(flags, fields={"support-bot": "prompt"}))
    details = client.get_string_details("support-bot", "dflt", EvaluationContext("u-1"))
    assert details.value == "dflt"
    assert details.error_code == ErrorCode.GENERAL
    assert details.error_message is not None and '"prompt"' in details.error_message


def test_a_killed_flag_reads_disabled_with_its_kill_source(flags: Flags) -> None:
    client = client_for(FlagrailProvider(flags))
    flags.kill("support-bot", reason="incident")
    details = client.get_string_details("support-bot", "x", EvaluationContext("u-1", {"plan": "pro"}))
    assert details.value == "human"
    assert details.reason == Reason.DISABLED
    assert details.flag_metadata["flagrail_reason"] == "KILLED"
    assert details.flag_metadata["kill_source"] == "local-flag"


def test_datetimes_in_the_context_are_compared_as_timestamps(flags: Flags) -> None:
    client = client_for(FlagrailProvider(flags))
    later = EvaluationContext("u-1", {"now": datetime(2026, 6, 1, tzinfo=timezone.utc)})
    earlier = EvaluationContext("u-1", {"now": datetime(2025, 6, 1)})
    assert client.get_string_value("launch", "x", later) == "after"
    assert client.get_string_value("launch", "x", earlier) == "before"


def test_reload_emits_configuration_changed_and_a_rejected_document_stale(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    write_atomic(path, json.dumps(document("r1")))
    with Flags.from_file(path, reload=False) as flags:
        provider = FlagrailProvider(flags)
        seen: list[tuple[str, EventDetails]] = []
        lock = threading.Lock()

        def handler(name: str) -> Any:
            def record(details: EventDetails) -> None:
                with lock:
                    seen.append((name, details))

            return record

        for event in (ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, ProviderEvent.PROVIDER_STALE, ProviderEvent.PROVIDER_READY):
            api.add_handler(event, handler(event.value))
        api.set_provider(provider)
        client = api.get_client()
        wait_until(lambda: client.get_provider_status() == ProviderStatus.READY, 5, "ready")
        # The SDK runs handlers on a thread pool: wait for the start's READY before clearing, or
        # it may land after the clear.
        wait_until(lambda: [n for n, _ in seen if n == "PROVIDER_READY"], 5, "the start's READY")
        with lock:
            seen.clear()

        write_atomic(path, json.dumps(document("r2")))
        assert flags.reload_if_changed()
        changed = wait_until(lambda: [d for n, d in seen if n == "PROVIDER_CONFIGURATION_CHANGED"], 5, "changed")
        assert changed[0].metadata == {"revision": "r2", "previous_revision": "r1"}
        assert changed[0].provider_name == "flagrail"
        assert client.get_object_details("support-bot", {}, EvaluationContext("u-1")).flag_metadata["revision"] == "r2"

        write_atomic(path, '{"revision": "r3", "flags": {"x": {"variants": {}, "default": "nope"}}}')
        with pytest.raises(Exception):
            flags.reload_if_changed()
        stale = wait_until(lambda: [d for n, d in seen if n == "PROVIDER_STALE"], 5, "stale")
        assert stale[0].error_code == ErrorCode.PARSE_ERROR
        assert stale[0].metadata["revision"] == "r2"  # still serving the last good one
        assert client.get_provider_status() == ProviderStatus.STALE
        # Stale still evaluates (the last good document).
        assert client.get_string_value("dark-mode", "x") == "on"

        with lock:
            seen.clear()
        write_atomic(path, json.dumps(document("r4")))
        assert flags.reload_if_changed()
        wait_until(lambda: len(seen) >= 2, 5, "ready and changed")
        # Both, once each; in the order the SDK's pool happens to run them.
        assert sorted(n for n, _ in seen) == ["PROVIDER_CONFIGURATION_CHANGED", "PROVIDER_READY"]
        assert client.get_provider_status() == ProviderStatus.READY


def test_track_forwards_feedback_to_the_run(flags: Flags) -> None:
    client = client_for(FlagrailProvider(flags))
    events: list[dict[str, Any]] = []
    flags.on_event(events.append)
    r = flags.call("support-bot", {"user_id": "u-1"}, lambda v: "answer")
    client.track("thumbs", EvaluationContext("u-1"), TrackingEventDetails(1.0, {"run_id": r.run_id}))
    client.track("quality", EvaluationContext("u-1"), TrackingEventDetails(0.8, {"run_id": r.run_id}))
    feedback = [e for e in events if e["type"] == "feedback"]
    assert [(e["run_id"], e.get("score"), e.get("quality")) for e in feedback] == [
        (r.run_id, 1.0, None),
        (r.run_id, None, 0.8),
    ]
    # Out of range, unknown run, no run id: ignored, never raised to the app.
    client.track("thumbs", EvaluationContext("u-1"), TrackingEventDetails(5.0, {"run_id": r.run_id}))
    client.track("thumbs", EvaluationContext("u-1"), TrackingEventDetails(1.0, {"run_id": "nope"}))
    client.track("thumbs", EvaluationContext("u-1"), TrackingEventDetails(1.0))
    assert len([e for e in events if e["type"] == "feedback"]) == 2


def test_metadata_and_bad_arguments(flags: Flags) -> None:
    provider = FlagrailProvider(flags)
    assert provider.get_metadata().name == "flagrail"
    assert provider.flags is flags
    with pytest.raises(TypeError):
        FlagrailProvider("flags.json")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        FlagrailProvider(flags, fields={"support-bot": ""})


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def _serve(port: int, body: bytes) -> _Server:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_failing_url_source_is_stale_once_and_ready_when_it_answers_again() -> None:
    body = json.dumps(document("u1")).encode()
    server = _serve(0, body)
    port = server.server_address[1]
    stale: list[EventDetails] = []
    ready: list[EventDetails] = []
    flags = Flags.from_url(f"http://127.0.0.1:{port}/flags.json", poll_interval=0.02)
    try:
        api.add_handler(ProviderEvent.PROVIDER_STALE, stale.append)
        api.add_handler(ProviderEvent.PROVIDER_READY, ready.append)
        client = client_for(FlagrailProvider(flags, status_interval=0.01))
        wait_until(lambda: ready, 5, "ready")
        ready.clear()
        server.shutdown()
        server.server_close()
        wait_until(lambda: flags.status()["remote"]["consecutive_failures"] >= 3, 20, "failed polls")
        wait_until(lambda: stale, 5, "the STALE event")  # handlers run on the SDK's threads
        assert len(stale) == 1  # one event for the outage, not one per failed poll
        assert stale[0].error_code == ErrorCode.GENERAL
        assert stale[0].metadata["code"] == "SOURCE_UNREACHABLE"
        assert client.get_provider_status() == ProviderStatus.STALE
        assert client.get_string_value("dark-mode", "x") == "on"  # the last good document serves
        server = _serve(port, body)
        # Nothing reloads (the same document): the next evaluations notice the recovery. Waited
        # for by the client's status as well as by `ready`: the SDK runs handlers on its own
        # threads, so the start's READY could reach `ready` after `ready.clear()` above.
        wait_until(
            lambda: client.get_string_value("dark-mode", "x") == "on"
            and client.get_provider_status() == ProviderStatus.READY,
            20,
            "ready again",
        )
        wait_until(lambda: ready, 5, "the READY event")
        assert len(stale) == 1  # the recovery did not flap back to stale
    finally:
        flags.close()
        server.shutdown()
        server.server_close()
