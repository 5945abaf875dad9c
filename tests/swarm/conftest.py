"""The swarm suites: the lifecycle, reconciler and watcher tests against
`RTMANAGER_ENGINE_BACKEND=swarm`, on a single-node swarm this session starts.

The swarm is a separate `dockerd` in its own network namespace (`nodes.py`),
never the machine's own daemon, which other test runs share and which must
never be switched into swarm mode. It is started once per session (about
3 s), receives the test engine images with `docker save | docker load`, and
is torn down with everything it created at the end of the session; a session
killed before that leaves a cluster the next session's `sweep()` removes.

The fixtures the shared suites use are overridden here, and only here:
`database_dsn` (this suite's own database, emptied before every test because
reconcile passes and watcher cycles see every record), `docker_network` (an
attachable overlay on the swarm), `make_settings` (the swarm backend on that
daemon), `docker` (`view.SwarmDocker`: containers seen as services), and
`make_core` (removes the session stack's services after each test). The
watcher's, reconciler's, rtm-api's and rtm-jobs' own fixtures are imported
from their conftests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiodocker
import asyncpg
import pytest
from api.conftest import client, make_client, spawn_api, wait_ready  # noqa: F401
from harness import fresh_database
from jobs.conftest import run_jobs, spawn_jobs  # noqa: F401
from reconciler.conftest import cleanup_worker, hand_made, reconciler, stop  # noqa: F401
from rig import Rig
from swarm.nodes import Cluster, sweep
from swarm.view import SwarmDocker
from watcher.conftest import background, state_dir  # noqa: F401

from rtm_core.settings import Settings

#: Every tag scripts/build-test-engine.sh builds.
TEST_IMAGES = [
    *(f"galaxy/test-engine:{v}" for v in ("1.0.0", "1.0.1", "1.0.2", "1.1.0", "2.0.0")),
    "galaxy/test-engine:latest",
    "galaxy/test-engine:notsemver",
    "galaxy/test-engine-limited:1.0.0",
]

#: What the swarm backend adds to every test's settings.
SWARM_SETTINGS: dict[str, Any] = {
    "engine_backend": "swarm",
    "swarm_task_poll_interval": 0.2,
    "swarm_start_timeout": 30,
}


@pytest.fixture(scope="session")
def swarm(engine_images: str) -> Iterator[Cluster]:
    """A one-node swarm on a dockerd of its own, with the test engine images."""
    sweep()  # what a killed earlier session left behind
    cluster = Cluster.start(1)
    try:
        cluster.load_images(TEST_IMAGES)
        yield cluster
    finally:
        cluster.teardown()


@pytest.fixture(scope="session")
async def database_dsn(postgres_server_dsn: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_server_dsn, "rtm_swarm_") as dsn:
        yield dsn


@pytest.fixture(scope="session")
async def docker_network(swarm: Cluster, stack: str) -> AsyncIterator[str]:
    name = f"rtm-{stack}"
    swarm.create_overlay(name)
    yield name
    manager = aiodocker.Docker(url=swarm.manager.host)
    await _remove_stack_services(manager, stack)
    with contextlib.suppress(aiodocker.DockerError):
        await (await manager.networks.get(name)).delete()
    await manager.close()


async def _remove_stack_services(manager: aiodocker.Docker, stack: str) -> None:
    services = await manager.services.list(filters={"label": f"com.galaxy.stack={stack}"})
    await asyncio.gather(
        *(manager.services.delete(s["ID"]) for s in services), return_exceptions=True
    )


@pytest.fixture
async def settings(make_settings: Callable[..., Settings], database_dsn: str) -> Settings:
    """Every test starts from an empty database: passes and cycles see all records."""
    conn = await asyncpg.connect(database_dsn.split("?", 1)[0])
    await conn.execute(
        "TRUNCATE rtmanager.runtime_records, rtmanager.operation_log,"
        " rtmanager.health_snapshots, rtmanager.game_fences, rtmanager.engine_usage"
    )
    await conn.close()
    return make_settings()


@pytest.fixture
def make_settings(
    make_settings: Callable[..., Settings], swarm: Cluster
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return make_settings(**{"docker_host": swarm.manager.host, **SWARM_SETTINGS, **overrides})

    return make


@pytest.fixture
async def make_core(
    make_core: Callable[[Settings], Rig], swarm: Cluster, stack: str
) -> AsyncIterator[Callable[[Settings], Rig]]:
    yield make_core
    manager = aiodocker.Docker(url=swarm.manager.host)
    await _remove_stack_services(manager, stack)
    await manager.close()


@pytest.fixture
async def docker(swarm: Cluster) -> AsyncIterator[SwarmDocker]:
    view = SwarmDocker(aiodocker.Docker(url=swarm.manager.host))
    yield view
    await view.close()
