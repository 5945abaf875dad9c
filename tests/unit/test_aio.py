"""`stop_task`: a helper task is stopped even when it loses a cancellation.

The lost cancellation is what Python 3.11 does when a cancel lands while a
timeout helper's inner future completes (gh-86296): the task sees no
CancelledError and carries on. Here the task swallows its first ones, as
such a keeper did in the chaos drill (a game lease renewed after its
operation had committed, every later job answered operation_in_progress).
"""

from __future__ import annotations

import asyncio

import pytest

from rtm_core.aio import stop_task, stop_tasks


def keeper_that_loses(cancels: int, ticks: list[int]) -> asyncio.Task[None]:
    async def keep() -> None:
        lost = 0
        while True:
            try:
                await asyncio.sleep(0.01)
                ticks.append(1)
            except asyncio.CancelledError:
                if lost == cancels:
                    raise
                lost += 1

    return asyncio.create_task(keep())


async def test_a_task_that_swallows_cancellations_is_still_stopped() -> None:
    ticks: list[int] = []
    task = keeper_that_loses(2, ticks)
    await asyncio.sleep(0.05)

    await stop_task(task, recancel=0.05)

    assert task.cancelled()
    renewed = len(ticks)
    await asyncio.sleep(0.05)
    assert len(ticks) == renewed  # nothing renews any more


async def test_one_cancel_is_not_enough_for_such_a_task() -> None:
    """What `stop_task` exists for: the plain cancel-and-await leaves it running."""
    ticks: list[int] = []
    task = keeper_that_loses(1, ticks)
    await asyncio.sleep(0.02)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.1)
    assert not done
    await stop_task(task)


async def test_the_callers_cancellation_still_stops_the_task_then_propagates() -> None:
    ticks: list[int] = []
    task = keeper_that_loses(3, ticks)

    stopper = asyncio.create_task(stop_task(task, recancel=0.05))
    await asyncio.sleep(0.01)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert task.done()


async def test_a_failure_of_the_task_is_raised_as_await_would() -> None:
    async def fail() -> None:
        raise ValueError("renewal bug")

    task = asyncio.create_task(fail())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="renewal bug"):
        await stop_task(task)


async def test_stop_tasks_stops_them_all_and_drops_their_failures() -> None:
    async def fail() -> None:
        raise ValueError("ignored")

    ticks: list[int] = []
    tasks = [keeper_that_loses(1, ticks), asyncio.create_task(fail())]
    await asyncio.sleep(0.02)
    await stop_tasks(tasks)
    assert all(t.done() for t in tasks)
