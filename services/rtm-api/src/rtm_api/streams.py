"""Follow streams (`…/logs?follow=true`, `…/events?follow=true`, issue 13).

A follow holds a connection to Docker or Redis for as long as it lasts, so
each rtm-api caps how many it serves (`RTMANAGER_API_MAX_FOLLOWERS`; one
more answers 429 `too_many_followers` before anything streams) and ends
them all when it shuts down, so they never hold up a drain. Docker log
follows also read on a connection pool of their own (`DockerEngine`): no
follower ever holds a connection a lifecycle operation waits for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TypeVar

from rtm_core.domain.errors import TooManyFollowers

T = TypeVar("T")

#: How long an ended follow waits for its pending read to let go (a Redis read
#: being torn down, say) before leaving it to finish on its own.
LET_GO_SECONDS = 1.0


def _retrieve(task: asyncio.Task[object]) -> None:
    """A read left to finish on its own: whatever it ends with is not an error."""
    if not task.cancelled():
        task.exception()


class Followers:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._closing = asyncio.Event()

    def take(self) -> None:
        """One more follow, or TooManyFollowers (the caller gives it back once)."""
        if self.active >= self.limit:
            raise TooManyFollowers(
                f"this rtm-api already serves {self.limit} follow streams "
                "(RTMANAGER_API_MAX_FOLLOWERS); retry later or read without follow"
            )
        self.active += 1

    def give_back(self) -> None:
        self.active -= 1

    def close(self) -> None:
        """Shutdown: every follow ends at its next step."""
        self._closing.set()

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    async def relay(
        self, source: AsyncIterator[T], seconds: float | None = None
    ) -> AsyncIterator[T]:
        """`source`'s items until it ends, `seconds` pass, or the process shuts down."""
        ends = None if seconds is None else time.monotonic() + seconds
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            while True:
                left = None if ends is None else max(0.0, ends - time.monotonic())
                step = asyncio.ensure_future(anext(source))
                done, _ = await asyncio.wait(
                    {step, closing}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                if step not in done:
                    # Never `await step` under a suppress: a cancellation of this
                    # request itself must not be taken for the read's.
                    step.add_done_callback(_retrieve)
                    step.cancel()
                    await asyncio.wait({step}, timeout=LET_GO_SECONDS)
                    return
                try:
                    item = step.result()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            closing.cancel()
