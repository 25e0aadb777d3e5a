"""Result objects nobody holds are given out again (bindings-python/src/reuse.rs). Its invariant:
a result that anyone still holds is never rewritten, whoever holds it and however."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from flagrail import Flags, Variant, _flagrail, bucket

DOC: dict[str, Any] = {
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
USERS = [f"user-{i}" for i in range(3000)]


def expected(user: str) -> tuple[str, str, str, int]:
    b = bucket("f", user)
    return ("a" if b < 50000 else "b", "SPLIT", "s", b)


def fields(v: Variant) -> tuple[Any, ...]:
    return (v.id, v.reason, v.rule_id, v.bucket)


def churn(flags: Flags, rounds: int = 2) -> None:
    """Thousands of calls over both variants, each result dropped at once: every pool object
    that is free gets rewritten many times."""
    for _ in range(rounds):
        for user in USERS:
            assert fields(flags.variant("f", {"user_id": user})) == expected(user)


def test_a_dropped_result_comes_back_from_the_pool() -> None:
    # Without this, the invariant test below could pass because nothing is ever reused.
    if not _flagrail._reuses_results():
        pytest.fail("result reuse is off in the test process (FLAGRAIL_REUSE_RESULTS set?)")
    flags = Flags.from_dict(DOC)
    user = next(u for u in USERS if expected(u)[0] == "b")
    flags.variant("f", {"user_id": user})  # creates the pool
    v = flags.variant("f", {"user_id": user})
    # The pool's reference, `v`, and getrefcount's argument.
    assert sys.getrefcount(v) == 3


def test_a_held_result_is_never_rewritten_whoever_holds_it() -> None:
    flags = Flags.from_dict(DOC)
    held: list[tuple[str, Any]] = []

    def result(user: str) -> Variant:
        return flags.variant("f", {"user_id": user})

    class Box:
        def __init__(self, v: Variant) -> None:
            self.v = v

    def suspended(v: Variant) -> Iterator[Variant]:
        yield v  # the generator's frame holds `v` while it is suspended

    for i, user in enumerate(USERS[:400]):
        v = result(user)
        kind = i % 8
        if kind == 0:
            holder: Any = [v]
        elif kind == 1:
            holder = (v,)
        elif kind == 2:
            holder = {"v": v}
        elif kind == 3:
            holder = Box(v)
        elif kind == 4:
            holder = (lambda v=v: v)  # a default argument
        elif kind == 5:
            holder = functools.partial(lambda x: x, v)
        elif kind == 6:
            gen = suspended(v)
            holder = (gen, next(gen))
        else:
            holder = {v}  # a set: held through its hash
        held.append((user, holder))
        del v

    def unwrap(holder: Any) -> Variant:
        if isinstance(holder, list):
            return holder[0]  # type: ignore[no-any-return]
        if isinstance(holder, tuple):
            return holder[-1]  # type: ignore[no-any-return]
        if isinstance(holder, dict):
            return holder["v"]  # type: ignore[no-any-return]
        if isinstance(holder, set):
            return next(iter(holder))  # type: ignore[no-any-return]
        if isinstance(holder, functools.partial):
            return holder()  # type: ignore[no-any-return]
        if callable(holder):
            return holder()  # type: ignore[no-any-return]
        return holder.v  # type: ignore[no-any-return]

    threads = [threading.Thread(target=churn, args=(flags,)) for _ in range(3)]
    for t in threads:
        t.start()
    churn(flags)
    for t in threads:
        t.join()
    for user, holder in held:
        v = unwrap(holder)
        assert fields(v) == expected(user), user
        assert v.to_dict()["bucket"] == bucket("f", user)


def test_reuse_has_an_off_switch() -> None:
    code = (
        "import sys\n"
        "from flagrail import Flags, _flagrail, bucket\n"
        f"flags = Flags.from_dict({DOC!r})\n"
        "assert not _flagrail._reuses_results()\n"
        "flags.variant('f', {'user_id': 'u'})\n"
        "v = flags.variant('f', {'user_id': 'u'})\n"
        "assert sys.getrefcount(v) == 2, sys.getrefcount(v)  # nobody else holds it: a new object\n"
        "assert v.bucket == bucket('f', 'u')\n"
    )
    env = {**os.environ, "FLAGRAIL_REUSE_RESULTS": "0"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
