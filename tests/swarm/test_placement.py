"""State placement on the swarm backend: the node a game was first placed on is
recorded and every later launch is pinned there; a game whose node is drained
is reported (health event, snapshot, record) and never moved off its state.

A one-node swarm is enough: draining its only node is what an operator does
to a node in a bigger one (tests/swarm/multinode.py shows it across nodes).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from harness import wait_for
from reconciler.helpers import deps_of
from rig import Rig
from swarm.nodes import Cluster
from watcher.helpers import health_events, watcher_deps

from rtm_core.adapters.swarm_spec import NODE_UNAVAILABLE
from rtm_core.domain.errors import ContainerStartFailed
from rtm_core.domain.vocabulary import OpSource
from rtm_reconciler.reconciler import Reconciler
from rtm_watcher.inspect_worker import InspectWorker

V100 = "galaxy/test-engine:1.0.0"
V101 = "galaxy/test-engine:1.0.1"
GM = OpSource.GM_REST


async def constraints(docker, ref: str) -> list[str]:
    service = await docker.client.services.inspect(ref)
    return list(service["Spec"]["TaskTemplate"]["Placement"].get("Constraints") or [])


async def set_availability(swarm: Cluster, availability: str) -> None:
    swarm.manager.docker("node", "update", "--availability", availability, swarm.manager.node_id)


@pytest.fixture
async def undrain(swarm: Cluster):
    yield
    await set_availability(swarm, "active")


async def test_the_first_node_is_recorded_and_every_later_launch_is_pinned_there(
    core: Rig, docker, swarm: Cluster, game_id: str
) -> None:
    node = swarm.manager.node_id
    started = await core.lifecycle.start(game_id, V100, GM)
    assert started.record is not None and started.record.placement_node == node
    # The first placement is Swarm's: no constraint yet.
    assert await constraints(docker, started.record.current_container_id) == []

    for step in (
        lambda: core.lifecycle.restart(game_id, GM),
        lambda: core.lifecycle.patch(game_id, V101, GM),
        lambda: core.lifecycle.stop(game_id, "finished", GM),
        lambda: core.lifecycle.start(game_id, V101, GM),
    ):
        result = await step()
        assert result.record is not None and result.record.placement_node == node
    record = await core.repos.get_record(game_id)
    assert record is not None and record.status == "running"
    assert await constraints(docker, record.current_container_id) == [f"node.id=={node}"]
    info = await core.docker.inspect(record.current_container_id or "")
    assert info is not None and info.node_id == node and info.running


async def test_a_drained_node_is_reported_and_its_game_waits_for_it(
    core: Rig, docker, redis, swarm: Cluster, game_id: str, undrain: None
) -> None:
    started = await core.lifecycle.start(game_id, V100, GM)
    assert started.record is not None
    service_id = started.record.current_container_id or ""
    inspect_worker = InspectWorker(watcher_deps(core))
    await inspect_worker.run_once()

    drained_at = time.monotonic()
    await set_availability(swarm, "drain")

    async def reported() -> list[dict]:
        await inspect_worker.run_once()
        return await health_events(redis, core, game_id, "inspect_unhealthy")

    (event,) = await wait_for(reported, timeout=20, interval=0.2)
    reported_after = time.monotonic() - drained_at
    assert event["container_id"] == service_id
    assert event["details"] == {"restart_count": 0, "state": NODE_UNAVAILABLE, "health": "none"}
    snapshot = await core.repos.get_snapshot(game_id)
    assert snapshot is not None and snapshot.details["state"] == NODE_UNAVAILABLE
    assert reported_after < 10, reported_after

    # Swarm ends the task (restart condition none: no replacement anywhere else);
    # the reconciler records the game as stopped, still pinned to its node.
    async def task_ended() -> bool:
        info = await core.docker.inspect(service_id)
        return info is not None and not info.running and info.node_id == swarm.manager.node_id

    await wait_for(task_ended, timeout=20)
    await Reconciler(deps_of(core), _never()).run_once()
    record = await core.repos.get_record(game_id)
    assert record is not None and record.status == "stopped"
    assert record.placement_node == swarm.manager.node_id

    # A restart while the node is drained fails at once and leaves nothing behind.
    began = time.monotonic()
    with pytest.raises(ContainerStartFailed, match="drain"):
        await core.lifecycle.restart(game_id, GM)
    assert time.monotonic() - began < 15
    assert await core.docker.list_owned(game_id) == []

    # The node is back: the game restarts on it, with its state.
    await set_availability(swarm, "active")
    again = await core.lifecycle.restart(game_id, GM)
    assert again.record is not None and again.record.status == "running"
    info = await core.docker.inspect(again.record.current_container_id or "")
    assert info is not None and info.running and info.node_id == swarm.manager.node_id
    boot_log = core.settings.game_state_root / game_id / "boot.log"
    await wait_for(lambda: len(boot_log.read_text().splitlines()) >= 2)


async def test_a_game_pinned_to_a_node_that_left_is_reported_as_gone(
    core: Rig, game_id: str
) -> None:
    """A record whose node is no longer in the swarm (removed by an operator)
    cannot start there: the failure names the node."""
    started = await core.lifecycle.start(game_id, V100, GM)
    assert started.record is not None
    await core.lifecycle.stop(game_id, "finished", GM)
    record = await core.repos.get_record(game_id)
    assert record is not None
    record.placement_node = "nodethatleftlongago0000000"
    await core.repos.save_record(record)
    with pytest.raises(ContainerStartFailed, match=r"nodethatleftlongago0000000.*gone"):
        await core.lifecycle.start(game_id, V100, GM)


def _never() -> asyncio.Event:
    """A process stop that never comes (the pass runs to its end)."""
    return asyncio.Event()


async def test_boot_refuses_a_network_that_is_not_an_attachable_overlay(
    make_settings, make_core, swarm: Cluster, stack: str
) -> None:
    name = f"rtm-{stack}-local"
    swarm.manager.docker("network", "create", "-d", "bridge", name)
    try:
        core = make_core(make_settings(docker_network=name))
        assert not await core.docker.network_exists()
        assert await core.docker.network_exists(core.settings.docker_network) is False
    finally:
        swarm.manager.docker("network", "rm", name)


async def test_a_daemon_that_is_not_a_manager_is_not_ready(make_settings, make_core) -> None:
    """The main daemon (swarm inactive) is refused by the swarm backend's ping."""
    from rtm_core.domain.errors import DockerUnavailable

    core = make_core(make_settings(docker_host="unix:///var/run/docker.sock"))
    with pytest.raises(DockerUnavailable, match="not a Swarm manager"):
        await core.docker.ping()
