"""The inspect worker against real Docker: one `run_once` is one interval."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import aiodocker
from harness import wait_for
from redis.asyncio import Redis
from rig import Rig
from watcher.helpers import (
    container_state,
    control,
    health_events,
    start_engine,
    wait_until_exited,
    watcher_deps,
)

from rtm_watcher.inspect_worker import InspectWorker

StateDir = Callable[[str], Path]


async def unhealthy_events(redis: Redis, core: Rig, game_id: str) -> list[dict]:
    return [e["details"] for e in await health_events(redis, core, game_id, "inspect_unhealthy")]


async def test_a_healthy_engine_only_updates_its_snapshot(
    core: Rig, redis: Redis, game_id: str
) -> None:
    container_id = await start_engine(core, game_id)
    await InspectWorker(watcher_deps(core)).run_once()
    snapshot = await core.repos.get_snapshot(game_id)
    assert snapshot is not None
    assert (snapshot.source, snapshot.status, snapshot.container_id) == (
        "inspect",
        "running",
        container_id,
    )
    assert snapshot.details == {"restart_count": 0, "state": "running", "health": "none"}
    assert await unhealthy_events(redis, core, game_id) == []


async def test_a_rising_restart_count_is_reported_once(
    core: Rig, redis: Redis, docker: aiodocker.Docker, state_dir: StateDir, game_id: str
) -> None:
    """Docker restarts the engine under a restart policy an operator set by hand."""
    container_id = await start_engine(core, game_id)
    worker = InspectWorker(watcher_deps(core))
    await worker.run_once()  # restart count 0 seen

    await docker._query_json(
        f"containers/{container_id}/update",
        method="POST",
        data=json.dumps({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 1}}),
    )
    control(state_dir(game_id), "exit_code", "3")

    async def restarted() -> bool:
        c = (await docker.containers.get(container_id))._container
        # While Docker restarts it, `Running` is already true: wait for the status.
        return bool(c["RestartCount"] == 1 and c["State"]["Status"] == "running")

    await wait_for(restarted, timeout=15)
    await worker.run_once()
    expected = {"restart_count": 1, "state": "running", "health": "none"}
    assert await unhealthy_events(redis, core, game_id) == [expected]
    await worker.run_once()
    await InspectWorker(watcher_deps(core)).run_once()  # a new leader continues from Redis
    assert await unhealthy_events(redis, core, game_id) == [expected]
    snapshot = await core.repos.get_snapshot(game_id)
    assert snapshot is not None and (snapshot.source, snapshot.status) == ("inspect", "running")


async def test_an_exited_engine_is_reported_once_across_leaders(
    core: Rig, redis: Redis, docker: aiodocker.Docker, state_dir: StateDir, game_id: str
) -> None:
    container_id = await start_engine(core, game_id)
    control(state_dir(game_id), "exit_code", "3")
    await wait_until_exited(docker, container_id)

    first_leader = InspectWorker(watcher_deps(core))
    await first_leader.run_once()  # the first sight of an already-dead engine counts
    await first_leader.run_once()
    await InspectWorker(watcher_deps(core)).run_once()
    expected = {"restart_count": 0, "state": "exited", "health": "none"}
    assert await unhealthy_events(redis, core, game_id) == [expected]
    snapshot = await core.repos.get_snapshot(game_id)
    assert snapshot is not None
    assert (snapshot.source, snapshot.status) == ("inspect", "exited")


async def test_an_exit_rtm_announced_is_not_reported(
    core: Rig, redis: Redis, docker: aiodocker.Docker, state_dir: StateDir, game_id: str
) -> None:
    """Between a stop's `docker stop` and its commit the record still says `running`."""
    container_id = await start_engine(core, game_id)
    await core.exits.mark(container_id)
    control(state_dir(game_id), "exit_code", "0")
    await wait_until_exited(docker, container_id)
    await InspectWorker(watcher_deps(core)).run_once()
    assert await unhealthy_events(redis, core, game_id) == []
    assert (await container_state(docker, container_id))["Status"] == "exited"
