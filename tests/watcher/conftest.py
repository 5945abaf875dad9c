"""Fixtures of the watcher suite.

The watcher's loops act on every `running` record, so this suite has its own
database, emptied before each test, and forgets the watcher's Redis state of
the session stack (event cursor, per-container memory) before each test.
Intervals are short and probes go to the container IP: the host cannot
resolve engine names.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from harness import fresh_database
from rig import Rig

from rtm_core.adapters.redis.client import redis_client
from rtm_core.settings import Settings
from rtm_watcher.memory import KEY_PREFIX

Worker = Callable[[asyncio.Event], Awaitable[None]]

WATCHER_SETTINGS: dict[str, Any] = {
    "inspect_interval": 0.3,
    "probe_interval": 0.3,
    "probe_timeout": 0.5,
    "probe_failures_threshold": 3,
    "probe_address_mode": "container_ip",
    "leader_lease_ttl_seconds": 3,
    # SIGKILL at once: an RTM stop then dies non-zero, which only the
    # expected-exit mark keeps quiet.
    "container_stop_timeout_seconds": 0,
}


@pytest.fixture(scope="session")
async def watcher_dsn(postgres_server_dsn: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_server_dsn, "rtm_watcher_") as dsn:
        yield dsn


@pytest.fixture
async def settings(
    make_settings: Callable[..., Settings], watcher_dsn: str, stack: str
) -> Settings:
    """Overrides the shared fixture: this suite's database, short intervals."""
    conn = await asyncpg.connect(watcher_dsn.split("?", 1)[0])
    await conn.execute(
        "TRUNCATE rtmanager.runtime_records, rtmanager.operation_log, rtmanager.health_snapshots,"
        " rtmanager.engine_usage"
    )
    await conn.close()
    settings = make_settings(postgres_primary_dsn=watcher_dsn, **WATCHER_SETTINGS)
    client = redis_client(settings)
    keys = [k async for k in client.scan_iter(f"{KEY_PREFIX}*:{stack}")]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    return settings


@pytest.fixture
async def background() -> AsyncIterator[Callable[[Worker], asyncio.Event]]:
    """`background(loop.run)` runs a loop until the test ends (or its returned
    stop is set); a loop that failed fails the test at teardown."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    def start(worker: Worker) -> asyncio.Event:
        stop = asyncio.Event()
        running.append((stop, asyncio.ensure_future(worker(stop))))
        return stop

    yield start
    for stop, _ in running:
        stop.set()
    for _, task in running:
        await asyncio.wait_for(task, 15)


@pytest.fixture
def state_dir(core: Rig) -> Callable[[str], Path]:
    """The host state dir of a game: where the test engine's control files go."""
    return lambda game_id: core.settings.game_state_root / game_id
