"""Stopping background tasks for good.

A single `task.cancel()` is a request, not a guarantee: on Python 3.11 a
cancellation that lands while the awaited future completes can be swallowed
by a timeout helper below it (gh-86296; redis-py and aiohttp both wrap their
reads in one), and the task carries on. For a lease keeper that means a lease
renewed forever and a game that answers `operation_in_progress` until the
process restarts, with the operation that held it waiting on the keeper. So
helper tasks are stopped with `stop_task`, which cancels until the task has
really ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

#: How long one cancellation gets before it is repeated.
RECANCEL_SECONDS = 0.5


async def stop_task(task: asyncio.Future[Any], *, recancel: float = RECANCEL_SECONDS) -> None:
    """Cancel `task` and return once it has ended, whatever it swallowed.

    A cancellation of the caller meanwhile does not abandon the task: it is
    still stopped, then the caller's cancellation is re-raised. An exception
    the task ended with (other than its cancellation) is raised, as `await`
    would.
    """
    interrupted = False
    while not task.done():
        task.cancel()
        try:
            await asyncio.wait({task}, timeout=recancel)
        except asyncio.CancelledError:
            interrupted = True
    if interrupted:
        raise asyncio.CancelledError
    if not task.cancelled() and (exc := task.exception()) is not None:
        raise exc


async def stop_tasks(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """`stop_task` for several at once; their own failures are dropped (best effort)."""
    pending = list(tasks)
    results = await asyncio.gather(*(stop_task(t) for t in pending), return_exceptions=True)
    for result in results:
        if isinstance(result, asyncio.CancelledError):
            raise result
