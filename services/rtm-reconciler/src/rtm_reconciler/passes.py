"""What the reconciler's two loops share: a stop that is checked before every
per-game lease, and a bounded fan-out over games.

Cancellation path: a pass never cancels a drift call mid-write. SIGTERM (the
process `stop`) or a lost leader lease (the `stop` handed to `run`) makes the
pass stop *starting* games — i.e. it aborts at the next per-game lease
acquisition — and the calls already under way finish and commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from rtm_core.domain.errors import InternalError, RtmError
from rtm_core.runtime.loops import PeriodicLoop
from rtm_reconciler.bootstrap import ReconcilerDeps

T = TypeVar("T")


async def fan_out(
    items: Iterable[T],
    action: Callable[[T], Awaitable[None]],
    *,
    limit: int,
    halted: Callable[[], bool],
) -> int:
    """Run `action` on every item, at most `limit` at once, in order.

    Items not yet begun when `halted()` turns true are skipped; returns how
    many were. `action` handles its own errors; one that escapes anyway is
    re-raised after every other item has run.
    """
    pending = iter(items)
    skipped = 0

    async def worker() -> None:
        nonlocal skipped
        for item in pending:  # one shared iterator: each item goes to one worker
            if halted():
                skipped += 1
                continue
            await action(item)

    results = await asyncio.gather(*(worker() for _ in range(limit)), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return skipped


def error_fields(exc: Exception) -> dict[str, str]:
    """Log fields of a failed per-game call that the pass survives."""
    code = exc.code if isinstance(exc, RtmError) else InternalError.code
    return {"error_code": code, "error": str(exc) or type(exc).__name__}


class GamePass(PeriodicLoop):
    """A periodic pass over games that stops starting new games once told to stop."""

    def __init__(self, deps: ReconcilerDeps, stop: asyncio.Event) -> None:
        super().__init__(deps.loops)
        self._deps = deps
        self._process_stop = stop
        self._leading_stop: asyncio.Event | None = None

    def halted(self) -> bool:
        return self._process_stop.is_set() or bool(
            self._leading_stop is not None and self._leading_stop.is_set()
        )

    async def run(self, stop: asyncio.Event) -> None:
        # `stop` here is the leader's: it is also set when the lease is lost.
        self._leading_stop = stop
        try:
            await super().run(stop)
        finally:
            self._leading_stop = None
