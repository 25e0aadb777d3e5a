"""The exceptions of flagrail.

Every exception carries ``code``, the stable cross-language error code (the same string the
Node package puts on ``err.code`` and the CLI prints). Loading and construction may raise;
reading a flag never does.

::

    FlagrailError                     .code
    ├── DocumentError (ValueError)    INVALID_DOCUMENT, .problems
    ├── SourceError                   SOURCE_UNREACHABLE, .source
    ├── InvalidArgumentError (ValueError)  INVALID_ARGUMENT
    └── CallError                     .flag
        ├── FlagNotFoundError (LookupError)  FLAG_NOT_FOUND
        ├── AllAttemptsFailedError    ALL_ATTEMPTS_FAILED, .attempts, .run_id
        └── CallDepthError (RecursionError)  CALL_DEPTH_EXCEEDED

``Reject`` is not an error of flagrail: the function given to ``Flags.call`` raises it to say
"not good enough", and the call moves on to the next step of the fallback chain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, NamedTuple, Sequence

if TYPE_CHECKING:
    from ._flagrail import Attempt

__all__ = [
    "AllAttemptsFailedError",
    "CallDepthError",
    "CallError",
    "DocumentError",
    "FlagNotFoundError",
    "FlagrailError",
    "InvalidArgumentError",
    "Problem",
    "Reject",
    "SourceError",
]


class Problem(NamedTuple):
    """One problem of a flag document."""

    path: str
    """Where, e.g. ``flags.support-bot.rules[2].when.op`` (``""`` for the whole document)."""
    code: str
    """What kind of problem, e.g. ``UNKNOWN_OPERATOR`` (stable across languages)."""
    message: str
    """What is wrong, for a person."""

    def __str__(self) -> str:
        return f"{self.path or '(document)'}: {self.message} [{self.code}]"


class FlagrailError(Exception):
    """Base class of every flagrail exception."""

    default_code: ClassVar[str] = "FLAGRAIL_ERROR"
    code: str
    """The stable error code."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only attributes survive pickling (multiprocessing sends exceptions back).
        return (_rebuild, (type(self), str(self), self.__dict__))


def _rebuild(cls: type[FlagrailError], message: str, state: dict[str, object]) -> FlagrailError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class DocumentError(FlagrailError, ValueError):
    """A flag document is invalid. ``problems`` lists every problem, not only the first, and
    the message lists them all too."""

    default_code = "INVALID_DOCUMENT"
    problems: tuple[Problem, ...]

    def __init__(
        self, message: str, *, code: str | None = None, problems: Sequence[Problem] = ()
    ) -> None:
        super().__init__(message, code=code)
        self.problems = tuple(problems)


class SourceError(FlagrailError):
    """A flag source (a file) cannot be read."""

    default_code = "SOURCE_UNREACHABLE"
    source: str | None

    def __init__(self, message: str, *, code: str | None = None, source: str | None = None) -> None:
        super().__init__(message, code=code)
        self.source = source


class InvalidArgumentError(FlagrailError, ValueError):
    """An argument is outside its domain, e.g. ``bucket(..., total=0)``."""

    default_code = "INVALID_ARGUMENT"


class CallError(FlagrailError):
    """``Flags.call`` / ``Flags.acall`` could not produce a result. ``flag`` is the flag key."""

    default_code = "CALL_FAILED"
    flag: str | None

    def __init__(self, message: str, *, code: str | None = None, flag: str | None = None) -> None:
        super().__init__(message, code=code)
        self.flag = flag


class FlagNotFoundError(CallError, LookupError):
    """``call`` of a flag that the live document does not have: there is no variant to call.
    (``Flags.variant`` never raises; it reports ``FLAG_NOT_FOUND`` as the reason instead.)"""

    default_code = "FLAG_NOT_FOUND"


class CallDepthError(CallError, RecursionError):
    """``call`` / ``acall`` nested more than 100 deep (a call made from inside the function of
    another; the limit is the core's, the same in Node). A programming error, never a model
    outcome: raised before anything is evaluated or recorded, and every enclosing call ends
    with it (as with any ``RecursionError``) instead of moving to its next step."""

    default_code = "CALL_DEPTH_EXCEEDED"


class AllAttemptsFailedError(CallError):
    """Every step of the fallback chain failed and none of them was a non-AI variant (which
    would have been served without calling the function). ``attempts`` lists what happened,
    in order; ``run_id`` identifies the call in events."""

    default_code = "ALL_ATTEMPTS_FAILED"
    attempts: list[Attempt]
    run_id: str | None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        flag: str | None = None,
        attempts: Sequence[Attempt] = (),
        run_id: str | None = None,
    ) -> None:
        super().__init__(message, code=code, flag=flag)
        self.attempts = list(attempts)
        self.run_id = run_id


class Reject(Exception):
    """Raised by the function given to ``Flags.call`` to say "not good enough": the attempt is
    recorded with error kind ``rejected`` and the call moves on to the next step of the chain.

    ::

        def answer(v: Variant) -> str:
            text = model(v["model"], prompt)
            if not looks_right(text):
                raise Reject("no citation")
            return text
    """

    error_kind: ClassVar[str] = "rejected"
    """The error kind the call records (any exception may declare one this way)."""
