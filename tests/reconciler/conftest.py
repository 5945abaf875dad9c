"""Fixtures of the reconciler suite: its own database (a pass sees every record,
so other suites' leftovers must not be in it), emptied before each test, and
the two loops wired over the shared `core` rig the way `main` wires them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiodocker
import asyncpg
import pytest
from harness import fresh_database
from reconciler.helpers import ENGINE_V100, deps_of, labelled_config
from rig import Rig

from rtm_core.settings import Settings
from rtm_reconciler.cleanup import RetentionCleanup
from rtm_reconciler.reconciler import Reconciler


@pytest.fixture(scope="session")
async def reconciler_dsn(postgres_server_dsn: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_server_dsn, "rtm_reconciler_") as dsn:
        yield dsn


@pytest.fixture
async def settings(make_settings: Callable[..., Settings], reconciler_dsn: str) -> Settings:
    """Overrides the shared fixture: same streams/stack/network, this suite's database."""
    conn = await asyncpg.connect(reconciler_dsn.split("?", 1)[0])
    await conn.execute(
        "TRUNCATE rtmanager.runtime_records, rtmanager.operation_log, rtmanager.health_snapshots"
    )
    await conn.close()
    return make_settings(postgres_primary_dsn=reconciler_dsn)


@pytest.fixture
def stop() -> asyncio.Event:
    """The process stop (SIGTERM) the loops watch."""
    return asyncio.Event()


@pytest.fixture
def reconciler(core: Rig, stop: asyncio.Event) -> Reconciler:
    return Reconciler(deps_of(core), stop)


@pytest.fixture
def cleanup_worker(core: Rig, stop: asyncio.Event) -> RetentionCleanup:
    return RetentionCleanup(deps_of(core), stop)


@pytest.fixture
async def hand_made(
    docker: aiodocker.Docker, engine_images: str
) -> AsyncIterator[Callable[..., Any]]:
    """Starts containers the way an operator would (`docker run` with labels);
    removes every one of them afterwards, whatever its labels."""
    made: list[aiodocker.containers.DockerContainer] = []

    async def run(name: str, labels: dict[str, str], image: str = ENGINE_V100) -> str:
        container = await docker.containers.run(labelled_config(image, labels), name=name)
        made.append(container)
        return str(container.id)

    yield run
    await asyncio.gather(*(c.delete(force=True) for c in made), return_exceptions=True)
