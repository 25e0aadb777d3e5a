"""``PinStore``: what ``Flags.use_pin_store`` accepts. Import it from ``flagrail``."""

from __future__ import annotations

from typing import Awaitable, Protocol, Union

__all__ = ["PinStore"]

_Done = Union[None, Awaitable[None]]


class PinStore(Protocol):
    """A shared store for the conversation pins of sticky flags (``Flags.use_pin_store``), so
    that every instance of an app keeps a conversation on the same variant.

    Keys are ``flagrail/pin/<flag>/<conversation>`` (the conversation id is the context value
    of the flag's ``sticky.by``, an int written in decimal); values are variant ids. Any object
    with these three methods works, e.g. over Redis::

        class RedisPins:
            def __init__(self, redis): self.redis = redis
            def get(self, key): return self.redis.get(key)            # bytes are fine
            def set(self, key, value, ttl_seconds): self.redis.set(key, value, px=int(ttl_seconds * 1000))
            def delete(self, key): self.redis.delete(key)

    The methods may be ``async`` (they return an awaitable) for use with ``Flags.acall``, which
    awaits them; ``variant``, ``explain`` and ``call`` cannot wait and count an awaitable as a
    store error. A store error never fails an evaluation: the pin is ignored and counted in
    ``Flags.status()["sticky_store"]``.
    """

    def get(self, key: str, /) -> str | bytes | None | Awaitable[str | bytes | None]:
        """The pinned variant id of ``key``, or ``None`` when there is no live pin."""
        ...

    def set(self, key: str, value: str, ttl_seconds: float, /) -> _Done:
        """Pins ``key`` to variant ``value`` for ``ttl_seconds`` (the flag's ``sticky.ttl``)."""
        ...

    def delete(self, key: str, /) -> _Done:
        """Removes the pin of ``key`` (a pin broken by a guardrail trip or a removed variant
        that the new decision does not replace)."""
        ...
