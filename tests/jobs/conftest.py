"""rtm-jobs fixtures: the consumer loops in process over the real core, and the
real `rtm-jobs` console command as a subprocess."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import suppress
from typing import Any

import pytest
from harness import wait_for
from processes import RtmProcess, free_port, settings_env
from redis.asyncio import Redis
from rig import Rig

from rtm_core.settings import Settings
from rtm_jobs.bootstrap import bootstrap
from rtm_jobs.consumer import JobConsumer
from rtm_jobs.jobs import START_JOBS, STOP_JOBS
from rtm_jobs.scheduler import JobScheduler

RunJobs = Callable[..., Coroutine[Any, Any, list[JobConsumer]]]
SpawnJobs = Callable[..., Coroutine[Any, Any, RtmProcess]]


@pytest.fixture
async def run_jobs() -> AsyncIterator[RunJobs]:
    """`await run_jobs(core, binding_offsets=False, consumer=…)`: both consumer loops in
    process over `core` (a `Rig`, given only its `JobsDeps`) until the test ends.
    Offsets go to per-test keys unless `binding_offsets`."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(
        core: Rig, *, binding_offsets: bool = False, consumer: str = "in-process"
    ) -> list[JobConsumer]:
        deps = bootstrap(core.infra, core.adapters)
        scheduler = JobScheduler(deps.settings.jobs_concurrency)
        prefix = f"test:{uuid.uuid4().hex[:8]}:"
        loops = [
            JobConsumer(
                deps,
                jobs,
                scheduler,
                consumer=consumer,
                offset_key=None if binding_offsets else prefix + jobs.offset_key,
                drain_seconds=10,
            )
            for jobs in (START_JOBS, STOP_JOBS)
        ]
        stop = asyncio.Event()
        for loop in loops:
            running.append((stop, asyncio.create_task(loop.run(stop))))
        # Both groups exist once this returns: entries written from now on are theirs.
        for loop in loops:
            await wait_for(lambda loop=loop: _group_exists(core.redis, loop), timeout=10)
        return loops

    yield start
    for stop, _task in running:
        stop.set()
    for _stop, task in running:
        with suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


async def _group_exists(redis: Redis, loop: JobConsumer) -> bool:
    with suppress(Exception):
        return any(g["name"] == loop.group for g in await redis.xinfo_groups(loop.stream))
    return False


@pytest.fixture
async def spawn_jobs() -> AsyncIterator[SpawnJobs]:
    """`await spawn_jobs(settings, **RTMANAGER_overrides)`: a booted `rtm-jobs` whose two
    loops have started; killed at the end whatever happened."""
    started: list[RtmProcess] = []

    async def spawn(settings: Settings, **extra: str) -> RtmProcess:
        env = settings_env(settings, ops_http_addr=f"127.0.0.1:{free_port()}", **extra)
        process = RtmProcess("rtm-jobs", env, name=extra.get("jobs_consumer_name"))
        started.append(process)
        await process.start()
        await process.wait_for_message("worker started", count=2)
        return process

    yield spawn
    for process in started:
        await process.close()
