"""Concurrency with per-game order, inside one process.

Jobs for different games run side by side, at most `capacity` at a time
(`RTMANAGER_JOBS_CONCURRENCY`, shared by both consumers of a process). Jobs
for one game form a chain: each starts only once the one submitted before it
has ended, so a game's entries run in the order they were read. Across
replicas the per-game lease serialises a game's operations instead.

A job waiting for its predecessor holds a slot: the slot bounds entries
read but not yet acknowledged, which is what keeps a replica from hoarding
entries its peers could run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any

Job = Callable[[], Coroutine[Any, Any, None]]


class JobScheduler:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._busy = 0
        self._freed = asyncio.Event()
        self._tails: dict[str, asyncio.Task[None]] = {}

    @property
    def free(self) -> int:
        return self.capacity - self._busy

    async def wait_free(self, timeout: float) -> int:
        """Free slots, waiting up to `timeout` seconds for one when none is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.free <= 0:
            self._freed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), remaining)
        return max(self.free, 0)

    def submit(self, key: str, job: Job, *, name: str) -> asyncio.Task[None]:
        """Run `job` after every job submitted earlier under `key` has ended.

        Submitting beyond `capacity` is allowed (the caller reads no more than
        `free` entries); it only delays the next read.
        """
        self._busy += 1
        previous = self._tails.get(key)
        task = asyncio.create_task(self._after(previous, job), name=name)
        self._tails[key] = task
        task.add_done_callback(lambda done: self._release(key, done))
        return task

    @staticmethod
    async def _after(previous: asyncio.Task[None] | None, job: Job) -> None:
        if previous is not None:
            # Only its end matters: its outcome is its own business.
            await asyncio.wait({previous})
        await job()

    def _release(self, key: str, task: asyncio.Task[None]) -> None:
        if self._tails.get(key) is task:
            del self._tails[key]
        self._busy -= 1
        self._freed.set()
