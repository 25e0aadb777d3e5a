"""Type stubs of the native module ``flagrail._flagrail``. Import from ``flagrail``.

Kept in sync with bindings-python/src/*.rs (whose ``///`` docs are the runtime docstrings) by
``python -m mypy.stubtest flagrail._flagrail``, which ``make test-python`` runs.
"""

from collections.abc import Mapping
from datetime import datetime
from os import PathLike
from typing import Any, final

__all__ = ["Flags", "Flag", "Variant", "bucket", "_after_fork_in_child", "HASH_VERSION", "__version__"]

__version__: str
HASH_VERSION: int
"""The bucketing algorithm version (docs/bucketing.md); a change is a new version."""

def bucket(salt: str, unit: str | int, total: int = 100000) -> int:
    """The bucket in ``range(total)`` that ``unit`` falls into under ``salt``.

    MurmurHash3 x86_32 (seed 0) of ``salt + unit``, scaled to ``total`` (bucketing v1,
    identical in Rust, Python and Node). Percentages in flag documents are weights over 100000.

    Args:
        salt: The flag's salt (by default the flag key).
        unit: The bucketing unit: a str as is, or an int (hashed as its decimal text).
        total: The total weight, 1 to 4294967295.

    Raises:
        InvalidArgumentError: ``total`` is out of range, or ``unit`` is an int outside the
            64-bit signed range (code ``INVALID_ARGUMENT``).
        TypeError: ``unit`` is neither a str nor an int.
    """

def _after_fork_in_child() -> None:
    """Restarts the reload watchers of every live file-backed ``Flags`` in a forked child.

    Registered by the package with ``os.register_at_fork(after_in_child=...)``; not meant to be
    called directly.
    """

@final
class Flags:
    """The live feature flags of a process.

    Create one per document at startup and share it: it is safe to use from any number of
    threads, and a file source is reloaded in the background (a new document is validated off
    the request path and swapped in atomically; an invalid one never replaces the live one).
    Reading a flag never raises.

    Example::

        flags = Flags.from_file("flags.json")
        v = flags.variant("support-bot", {"user_id": "u-1", "plan": "pro"})
        v.id, v["model"], v.reason
    """

    @staticmethod
    def from_file(
        path: str | PathLike[str], *, reload: bool = True, poll_interval: float | None = None
    ) -> Flags:
        """Loads a flag document from a JSON file and, unless ``reload=False``, watches it.

        A changed file goes live within one poll interval (0.25 s by default). Forked children
        (gunicorn ``--preload``, celery prefork, multiprocessing) keep watching.

        Args:
            path: The JSON file.
            reload: Watch the file and hot-reload it.
            poll_interval: Seconds between checks of the file.

        Raises:
            SourceError: The file cannot be read (code ``SOURCE_UNREACHABLE``).
            DocumentError: The document is invalid; ``problems`` lists every problem.
        """

    @staticmethod
    def from_json(text: str) -> Flags:
        """Loads a flag document from JSON text (no reloading).

        Raises:
            DocumentError: The document is invalid; ``problems`` lists every problem.
        """

    @staticmethod
    def from_dict(obj: Mapping[str, Any]) -> Flags:
        """Loads a flag document from a dict, as ``json.load`` would return it (no reloading).

        Raises:
            DocumentError: The document is invalid, or holds a value with no JSON form;
                ``problems`` lists every problem.
        """

    def variant(
        self,
        flag: str,
        context: Mapping[str, object] | None = None,
        default: str | None = None,
        *,
        at: datetime | str | None = None,
    ) -> Variant:
        """The variant of ``flag`` for ``context``.

        Never raises for a flag or a context value: an unknown flag gives ``default`` with
        reason ``FLAG_NOT_FOUND``, and a context value of a type no condition can use is
        ignored for matching (``explain`` shows it).

        Args:
            flag: The flag key.
            context: The request's attributes: str, int, float, bool or list of str values.
            default: The id to report when the flag does not exist.
            at: Evaluate as of this instant (an aware datetime or an RFC 3339 string) instead
                of now: for simulations of ramps.
        """

    def flag(self, key: str) -> Flag:
        """A handle bound to one flag key: ``chat = flags.flag("support-bot")`` then
        ``chat.variant(user)``. The flag does not have to exist (yet)."""

    def explain(
        self,
        flag: str,
        context: Mapping[str, object] | None = None,
        *,
        at: datetime | str | None = None,
    ) -> dict[str, Any]:
        """How ``flag`` is decided for ``context``, step by step.

        The result fields (``flag``, ``variant``, ``payload``, ``reason``, ``rule_id``,
        ``bucket``, ``revision``, ``kill_source``) plus ``steps``, each condition with the
        attribute value it saw (a value of an unusable type shows as ``"<dict>"`` with an
        ``ignored`` note).
        """

    def status(self) -> dict[str, Any]:
        """Source, live revision, its age, the last reload error (with ``code`` and every
        problem's ``path``), reload counters, whether the file is watched, and local kills."""

    def kill(self, flag: str | None = None, *, reason: str | None = None) -> None:
        """Kills ``flag`` (or every flag when ``None``) in this process only: the next
        evaluation serves the flag's kill variant with reason ``KILLED``. The document is not
        changed."""

    def unkill(self, flag: str | None = None) -> None:
        """Lifts a local kill of ``flag`` (every local kill when ``None``). A kill written in
        the document stays in force until a new document lifts it."""

    def reload_if_changed(self) -> bool:
        """Checks a file source now and reloads it if it changed; returns whether a new
        document went live. Useful with ``reload=False``. A static source returns ``False``.

        Raises:
            SourceError: The file cannot be read.
            DocumentError: The new document is invalid (the live one stays).
        """

    @property
    def revision(self) -> str:
        """The revision of the live document."""

@final
class Flag:
    """A handle bound to one flag key (see ``Flags.flag``)."""

    @property
    def key(self) -> str:
        """The flag key."""

    def variant(
        self,
        context: Mapping[str, object] | None = None,
        default: str | None = None,
        *,
        at: datetime | str | None = None,
    ) -> Variant:
        """The variant of this flag for ``context`` (see ``Flags.variant``)."""

    def explain(
        self, context: Mapping[str, object] | None = None, *, at: datetime | str | None = None
    ) -> dict[str, Any]:
        """How this flag is decided for ``context`` (see ``Flags.explain``)."""

@final
class Variant:
    """The variant of a flag that one context gets, and why.

    Returned by ``Flags.variant()`` and ``Flag.variant()``; never constructed directly.
    Immutable, hashable and comparable. Item access reads the payload: ``v["model"]``,
    ``v.get("temperature", 0.7)``.
    """

    @property
    def id(self) -> str | None:
        """The variant id (``"control"``, ``"v2.2"`` …); the caller's ``default`` when the flag
        does not exist (``reason == "FLAG_NOT_FOUND"``), which is ``None`` unless one was given."""

    @property
    def flag(self) -> str:
        """The flag key that was evaluated."""

    @property
    def payload(self) -> Any:
        """The variant's payload (model, prompt, parameters …) as a read-only mapping.

        Nested objects are read-only mappings and arrays are tuples. Converted once per document
        and shared by every result. A non-object payload (``true``, ``"gpt"``, ``3``) is returned
        as is; an unknown flag has an empty mapping.
        """

    @property
    def reason(self) -> str:
        """Why this variant was chosen: one of ``FLAG_NOT_FOUND``, ``KILLED``, ``GUARDRAIL``,
        ``STICKY``, ``BUDGET``, ``TARGETING_MATCH``, ``SPLIT``, ``DEFAULT``."""

    @property
    def rule_id(self) -> str | None:
        """The id of the rule that decided, or ``None`` (default, kill, unknown flag)."""

    @property
    def bucket(self) -> int | None:
        """The unit's bucket when a split or ramp decided (over the split's total weight, or
        100000 for percentages), else ``None``."""

    @property
    def revision(self) -> str:
        """The revision of the flag document that made this decision."""

    @property
    def kill_source(self) -> str | None:
        """Which kill switch is in force when ``reason == "KILLED"``: ``"document"``,
        ``"flag"``, ``"local-all"`` or ``"local-flag"``; otherwise ``None``."""

    def __getitem__(self, key: str, /) -> Any:
        """``v["model"]``: a payload field. Raises ``KeyError`` when the payload has no such
        field (or is not an object)."""

    def get(self, key: str, default: Any = None) -> Any:
        """``v.get("temperature", 0.7)``: a payload field, or ``default`` when it is absent."""

    def to_dict(self) -> dict[str, Any]:
        """The result as a new plain dict (payload copied as plain dicts and lists), ready for
        JSON logs: ``flag``, ``variant``, ``payload``, ``reason``, ``rule_id``, ``bucket``,
        ``revision``, ``kill_source``."""

    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
