"""An OpenFeature provider over a ``flagrail.Flags``: ``pip install flagrail[openfeature]``.

::

    from openfeature import api
    from flagrail import Flags
    from flagrail.openfeature import FlagrailProvider

    flags = Flags.from_file("flags.json")
    api.set_provider(FlagrailProvider(flags))
    client = api.get_client()
    client.get_object_value("support-bot", {}, EvaluationContext("u-42", {"plan": "pro"}))

How a flagrail decision reads through OpenFeature (the same in the Node provider,
``flagrail/openfeature``; docs/ecosystem.md has the full table):

* object resolution returns the variant's payload (a plain ``dict`` / ``list`` copy);
* string resolution returns the variant id, or the payload field named for that flag in
  ``fields``; boolean and number resolution read the payload itself (a flag whose variants are
  ``true`` / ``false`` or numbers) or that field. A value of another type is
  ``TYPE_MISMATCH``, a missing field ``GENERAL``; both return the caller's default;
* an unknown flag is ``FLAG_NOT_FOUND`` with the caller's default;
* ``reason`` is the core's OpenFeature table: ``DISABLED`` (killed), ``SPLIT``,
  ``TARGETING_MATCH``, ``DEFAULT`` (``STATIC`` for a flag without rules), ``ERROR``, and
  flagrail's own ``STICKY``, ``BUDGET``, ``GUARDRAIL`` where OpenFeature has no word;
* ``variant`` is the variant id; ``flag_metadata`` carries ``revision``, ``flagrail_reason``
  and, when they apply, ``rule_id``, ``bucket`` and ``kill_source``;
* the targeting key is the unit: it is passed as the context attribute ``user_id`` (flagrail's
  default ``bucket_by``; ``targeting_key_attribute`` changes it) unless the attributes already
  carry one;
* a document that goes live emits ``PROVIDER_CONFIGURATION_CHANGED`` (after
  ``PROVIDER_READY`` when the provider was stale); a rejected reload (the source unreadable or
  the new document invalid, the last good one still serving) emits ``PROVIDER_STALE`` once,
  with error code ``PARSE_ERROR`` for an invalid document, ``GENERAL`` otherwise; a URL source
  that answers again without a new document emits ``PROVIDER_READY`` (noticed by an
  evaluation, at most every ``status_interval`` seconds while stale);
* ``track(name, context, TrackingEventDetails(value, {"run_id": ...}))`` forwards to
  ``Flags.feedback``: the value is the ``score`` (-1..1), or the ``quality`` (0..1) for an
  event named ``"quality"``; ``score`` / ``quality`` attributes set either explicitly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

try:
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.event import ProviderEvent, ProviderEventDetails
    from openfeature.exception import ErrorCode
    from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
    from openfeature.provider import AbstractProvider, Metadata
    from openfeature.track import TrackingEventDetails
except ImportError as exc:  # pragma: no cover - the message is what a user without the extra sees
    raise ImportError(
        "flagrail.openfeature needs the OpenFeature SDK: pip install 'flagrail[openfeature]'"
    ) from exc

from ._flagrail import Flags, Variant
from .exceptions import FlagrailError

__all__ = ["PROVIDER_NAME", "FlagrailProvider"]

PROVIDER_NAME = "flagrail"
"""The provider's name (``Metadata.name``, and ``feature_flag.provider.name`` in spans)."""

_log = logging.getLogger("flagrail")
_T = TypeVar("_T")

# Rejected reloads whose code means the document itself is wrong (not the source).
_PARSE_CODES = frozenset({"INVALID_DOCUMENT", "UNKNOWN_OPERATOR", "INVALID_SIGNATURE"})


def _attribute(value: Any) -> Any:
    """An OpenFeature context value as flagrail reads it: a datetime becomes RFC 3339 text
    (what ``before`` / ``after`` compare); anything else is passed as is (a type no condition
    can use is ignored for matching, never an error)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.isoformat().replace("+00:00", "Z")
    return value


def _plain(value: Any) -> Any:
    """A payload as plain ``dict`` / ``list`` values (the SDK checks object values by type;
    flagrail's payloads are read-only views)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class FlagrailProvider(AbstractProvider):
    """An OpenFeature provider that evaluates with ``flags`` (any ``Flags``: file, URL,
    Redis or static).

    Args:
        flags: The handle to evaluate with; the provider never closes it.
        fields: For a flag key, the payload field that its string, boolean and number
            resolutions return (``{"support-bot": "model"}``). Without an entry, string
            resolution returns the variant id and boolean / number resolution the payload
            itself.
        targeting_key_attribute: The context attribute the targeting key is passed as
            (default ``user_id``, flagrail's default ``bucket_by``).
        status_interval: While the provider is stale, how often (seconds) an evaluation reads
            ``flags.status()`` to see whether the source recovered without a new document (a
            URL answering again): then ``PROVIDER_READY``.
    """

    def __init__(
        self,
        flags: Flags,
        *,
        fields: Mapping[str, str] | None = None,
        targeting_key_attribute: str = "user_id",
        status_interval: float = 1.0,
    ) -> None:
        super().__init__()
        if not isinstance(flags, Flags):
            raise TypeError(f"FlagrailProvider needs a flagrail.Flags, got {type(flags).__name__}")
        checked: dict[str, str] = {}
        for key, field in (fields or {}).items():
            if not isinstance(key, str) or not isinstance(field, str) or not field:
                raise TypeError("fields maps flag keys to payload field names (non-empty strings)")
            checked[key] = field
        if not isinstance(targeting_key_attribute, str) or not targeting_key_attribute:
            raise TypeError("targeting_key_attribute must be a non-empty string")
        self._flags = flags
        self._fields = checked
        self._unit = targeting_key_attribute
        if not isinstance(status_interval, (int, float)) or not status_interval > 0:
            raise TypeError("status_interval must be a positive number of seconds")
        self._lock = threading.Lock()
        self._listening = False
        self._stale = False
        self._status_interval = float(status_interval)
        self._next_check = 0.0

    @property
    def flags(self) -> Flags:
        """The ``Flags`` this provider evaluates with."""
        return self._flags

    def get_metadata(self) -> Metadata:
        return Metadata(name=PROVIDER_NAME)

    def attach(
        self,
        on_emit: Callable[[Any, ProviderEvent, ProviderEventDetails], None],
    ) -> None:
        super().attach(on_emit)
        with self._lock:
            # ``on_event`` callbacks cannot be removed: the one registered for the first
            # attach serves every later one (it emits through whatever is attached now).
            if not self._listening:
                self._listening = True
                self._flags.on_event(self._on_flagrail_event)

    def _emit(self, event: ProviderEvent, details: ProviderEventDetails) -> None:
        emit = getattr(self, "_on_emit", None)
        if emit is not None:
            emit(self, event, details)

    def _on_flagrail_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "reload":
            with self._lock:
                was_stale, self._stale = self._stale, False
            metadata = {"revision": event["revision"], "previous_revision": event["previous"]}
            if was_stale:
                self._emit(ProviderEvent.PROVIDER_READY, ProviderEventDetails(metadata=metadata))
            self._emit(
                ProviderEvent.PROVIDER_CONFIGURATION_CHANGED,
                ProviderEventDetails(
                    message=f"flag document revision {event['revision']} is live",
                    metadata=metadata,
                ),
            )
        elif kind == "reload_rejected":
            with self._lock:
                # One event when the provider turns stale; a URL source reports every failed
                # poll.
                if self._stale:
                    return
                self._stale = True
                self._next_check = time.monotonic() + self._status_interval
            code = ErrorCode.PARSE_ERROR if event.get("code") in _PARSE_CODES else ErrorCode.GENERAL
            self._emit(
                ProviderEvent.PROVIDER_STALE,
                ProviderEventDetails(
                    message=str(event.get("message", "")),
                    error_code=code,
                    metadata={"revision": event["revision"], "code": str(event.get("code", ""))},
                ),
            )

    def _check_recovery(self) -> None:
        """While stale: has the source recovered without a new document? (A URL source whose
        polls succeed again: the live document is confirmed, nothing reloads.)"""
        with self._lock:
            now = time.monotonic()
            if not self._stale or now < self._next_check:
                return
            self._next_check = now + self._status_interval
        status = self._flags.status()
        remote = status.get("remote")
        if remote is None or remote.get("consecutive_failures", 1) != 0:
            return
        with self._lock:
            if not self._stale:
                return
            self._stale = False
        self._emit(ProviderEvent.PROVIDER_READY, ProviderEventDetails(metadata={"revision": status["revision"]}))

    def _context(self, evaluation_context: EvaluationContext | None) -> dict[str, Any]:
        if evaluation_context is None:
            return {}
        context = {str(k): _attribute(v) for k, v in evaluation_context.attributes.items()}
        key = evaluation_context.targeting_key
        if key is not None and self._unit not in context:
            context[self._unit] = key
        return context

    def _evaluate(
        self,
        flag_key: str,
        default_value: _T,
        evaluation_context: EvaluationContext | None,
        read: Callable[[Variant], _T],
    ) -> FlagResolutionDetails[_T]:
        if self._stale:
            self._check_recovery()
        variant = self._flags.variant(flag_key, self._context(evaluation_context))
        metadata: dict[str, bool | int | float | str] = {
            "revision": variant.revision,
            "flagrail_reason": variant.reason,
        }
        if variant.reason == "FLAG_NOT_FOUND":
            return FlagResolutionDetails(
                value=default_value,
                reason=Reason.ERROR,
                error_code=ErrorCode.FLAG_NOT_FOUND,
                error_message=f'flag "{flag_key}" is not in revision {variant.revision}',
                flag_metadata=metadata,
            )
        for name, known in (
            ("rule_id", variant.rule_id),
            ("bucket", variant.bucket),
            ("kill_source", variant.kill_source),
        ):
            if known is not None:
                metadata[name] = known
        try:
            value = read(variant)
        except _Mismatch as mismatch:
            return FlagResolutionDetails(
                value=default_value,
                reason=Reason.ERROR,
                error_code=mismatch.code,
                error_message=str(mismatch),
                variant=variant.id,
                flag_metadata=metadata,
            )
        return FlagResolutionDetails(
            value=value,
            reason=variant._open_feature_reason,
            variant=variant.id,
            flag_metadata=metadata,
        )

    def _field(self, variant: Variant, wanted: str, accepts: Callable[[Any], bool]) -> Any:
        """The payload (or the configured field of it) when ``accepts`` it."""
        field = self._fields.get(variant.flag)
        if field is None:
            value = variant.payload
            where = f'the payload of variant "{variant.id}"'
        else:
            payload = variant.payload
            if not isinstance(payload, Mapping) or field not in payload:
                raise _Mismatch(
                    ErrorCode.GENERAL,
                    f'variant "{variant.id}" of flag "{variant.flag}" has no payload field "{field}"',
                )
            value = payload[field]
            where = f'field "{field}" of variant "{variant.id}"'
        if not accepts(value):
            raise _Mismatch(
                ErrorCode.TYPE_MISMATCH,
                f'flag "{variant.flag}": {where} is {type(value).__name__}, not {wanted}',
            )
        return value

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        def read(variant: Variant) -> bool:
            return bool(self._field(variant, "a boolean", lambda v: isinstance(v, bool)))

        return self._evaluate(flag_key, default_value, evaluation_context, read)

    def resolve_string_details(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        def read(variant: Variant) -> str:
            if variant.flag not in self._fields:
                return str(variant.id)
            return str(self._field(variant, "a string", lambda v: isinstance(v, str)))

        return self._evaluate(flag_key, default_value, evaluation_context, read)

    def resolve_integer_details(
        self,
        flag_key: str,
        default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        def read(variant: Variant) -> int:
            value = self._field(
                variant,
                "an integer",
                lambda v: (isinstance(v, int) and not isinstance(v, bool))
                or (isinstance(v, float) and v.is_integer()),
            )
            return int(value)

        return self._evaluate(flag_key, default_value, evaluation_context, read)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        def read(variant: Variant) -> float:
            value = self._field(
                variant,
                "a number",
                lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            )
            return float(value)

        return self._evaluate(flag_key, default_value, evaluation_context, read)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        def read(variant: Variant) -> Sequence[FlagValueType] | Mapping[str, FlagValueType]:
            payload = variant.payload
            if not isinstance(payload, (Mapping, list, tuple)):
                raise _Mismatch(
                    ErrorCode.TYPE_MISMATCH,
                    f'flag "{variant.flag}": the payload of variant "{variant.id}" is '
                    f"{type(payload).__name__}, not an object",
                )
            plain: Sequence[FlagValueType] | Mapping[str, FlagValueType] = _plain(payload)
            return plain

        return self._evaluate(flag_key, default_value, evaluation_context, read)

    def track(
        self,
        tracking_event_name: str,
        evaluation_context: EvaluationContext | None = None,
        tracking_event_details: TrackingEventDetails | None = None,
    ) -> None:
        """Forwards feedback on a run to ``Flags.feedback``; never raises (a bad value is
        logged to the ``flagrail`` logger). Events without a ``run_id`` attribute are
        ignored: feedback belongs to the run that served the answer."""
        if tracking_event_details is None:
            return
        attributes = tracking_event_details.attributes
        run_id = attributes.get("run_id")
        if not isinstance(run_id, str):
            return
        value = tracking_event_details.value
        score = attributes.get("score")
        quality = attributes.get("quality")
        if score is None and quality is None and value is not None:
            if tracking_event_name == "quality":
                quality = value
            else:
                score = value
        if score is None and quality is None:
            return
        try:
            self._flags.feedback(
                run_id,
                score=None if score is None else float(score),  # type: ignore[arg-type]
                quality=None if quality is None else float(quality),  # type: ignore[arg-type]
            )
        except (FlagrailError, ValueError, TypeError) as exc:
            _log.warning("flagrail: OpenFeature track(%r) ignored: %s", tracking_event_name, exc)


class _Mismatch(Exception):
    """A value that cannot be returned for the requested type (caught in ``_evaluate``)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
