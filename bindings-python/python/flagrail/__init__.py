"""flagrail: feature flags for model, prompt and parameter rollouts.

::

    from flagrail import Flags

    flags = Flags.from_file("flags.json")          # hot-reloaded, safe to share between threads
    v = flags.variant("support-bot", {"user_id": "u-42", "plan": "pro"})
    v.id, v["model"], v.reason, v.revision

    r = flags.call("support-bot", user, lambda v: ask_model(v["model"], prompt))
    r.value, r.variant.id, r.attempts, r.fallback_used       # fallback chain, timeouts, metrics
    r.variant.cache_key(prompt)                               # a response cache key per variant

The decisions are made by the Rust core shared with the Node package and the CLI, so a user
lands in the same bucket from every language.
"""

from __future__ import annotations

import atexit as _atexit
import os as _os

from ._flagrail import (
    HASH_VERSION,
    Attempt,
    CallResult,
    Flag,
    Flags,
    Output,
    Override,
    Tracker,
    Variant,
    __version__,
    bucket,
    diff,
)
from ._flagrail import _after_fork_in_child, _after_fork_in_parent, _before_exit, _before_fork
from ._pins import PinStore
from .exceptions import (
    AllAttemptsFailedError,
    CallDepthError,
    CallError,
    DocumentError,
    FlagNotFoundError,
    FlagrailError,
    InvalidArgumentError,
    Problem,
    Reject,
    SourceError,
)

__all__ = [
    "HASH_VERSION",
    "AllAttemptsFailedError",
    "Attempt",
    "CallDepthError",
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
]

# Threads do not survive fork() (gunicorn --preload, celery prefork, multiprocessing "fork"):
# just before it, every lock of every Flags is taken, so that no thread is halfway through an
# update; right after it both processes let go, and the child restarts reload watchers,
# pollers and fleet threads (docs/runtime.md, "fork()").
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )

# Reload watchers are Rust threads that attach to Python to log; at exit they stop attaching
# before the interpreter finalizes under them.
_atexit.register(_before_exit)

# OpenTelemetry spans around `call` / `acall` (flagrail/_otel.py) when the API is installed:
# found here without importing it, imported on the first call. Without it (or with
# FLAGRAIL_OTEL=0) `call` stays the native method.
if _os.environ.get("FLAGRAIL_OTEL") != "0":
    import importlib.util as _importlib_util

    if _importlib_util.find_spec("opentelemetry") is not None:
        from . import _otel

        _otel.install()
