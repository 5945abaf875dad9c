"""rtm-jobs fixtures: the consumer loops in process over the real core, and the
real `rtm-jobs` console command as a subprocess."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import suppress
from typing import Any

import pytest
from harness import fresh_database, wait_for
from private_servers import PrivatePostgres, PrivateRedis
from processes import RtmProcess, free_port, settings_env
from redis.asyncio import Redis
from rig import Rig

from rtm_core.observability import Metrics
from rtm_core.settings import Settings
from rtm_jobs.bootstrap import bootstrap
from rtm_jobs.consumer import JobConsumer
from rtm_jobs.jobs import START_JOBS, STOP_JOBS
from rtm_jobs.scheduler import JobScheduler

RunJobs = Callable[..., Coroutine[Any, Any, list[JobConsumer]]]
SpawnJobs = Callable[..., Coroutine[Any, Any, RtmProcess]]


@pytest.fixture
async def run_jobs() -> AsyncIterator[RunJobs]:
    """`await run_jobs(core, binding_offsets=False, consumer=…, metrics=None)`: both
    consumer loops in process over `core` (a `Rig`, given only its `JobsDeps`) until
    the test ends. Offsets go to per-test keys unless `binding_offsets`; `metrics`
    replaces the rig's (to read counters back)."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(
        core: Rig,
        *,
        binding_offsets: bool = False,
        consumer: str = "in-process",
        metrics: Metrics | None = None,
    ) -> list[JobConsumer]:
        deps = bootstrap(core.infra, core.adapters)
        if metrics is not None:
            deps = dataclasses.replace(deps, metrics=metrics)
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


# ------------------------------------------------------------------ outages


@pytest.fixture(scope="session")
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    """A PostgreSQL server of this suite's own, for outages (never the shared one)."""
    server = PrivatePostgres()
    await server.start()
    yield server
    server.remove()


@pytest.fixture(scope="session")
async def private_database(private_postgres: PrivatePostgres) -> AsyncIterator[str]:
    """A migrated database on the private server; its DSN as RTM takes it."""
    async with fresh_database(private_postgres.server_dsn, "rtm_outage_") as dsn:
        yield dsn


@pytest.fixture
async def postgres(private_postgres: PrivatePostgres) -> AsyncIterator[PrivatePostgres]:
    """The private server, up when the test starts and again when it ends."""
    if not private_postgres.running:
        await private_postgres.start()
    yield private_postgres
    if not private_postgres.running:
        await private_postgres.start()


@pytest.fixture
async def private_redis() -> AsyncIterator[PrivateRedis]:
    """A redis-server of this test's own that keeps its data across a restart."""
    server = PrivateRedis()
    await server.start()
    yield server
    await server.remove()
