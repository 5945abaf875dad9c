"""The lifecycle rules (tests/core/test_lifecycle.py) against the swarm backend.

The rules are the same in both backends, so the same test functions run here,
over the fixtures of this directory's conftest (a one-node swarm, the `docker`
view in which a game's container is its service). Left out, each replaced
below by its swarm form: the hardening test (Swarm's task container carries
the limits differently: no `NetworkMode`, no per-container `SecurityOpt`) and
the foreign-container test (on this backend a name is held by a *service*).
"""

from __future__ import annotations

from pathlib import Path

import aiodocker
import pytest
from core.test_lifecycle import (  # noqa: F401  (collected here, run on the swarm)
    GM,
    V100,
    op_rows,
    test_a_crash_leftover_container_is_replaced_on_start,
    test_a_silent_lobby_costs_the_start_nothing,
    test_cleanup_rules_and_state_dir_kept,
    test_disallowed_prefix_is_refused_with_a_notification,
    test_failed_pull_is_image_pull_failed_with_a_notification,
    test_held_lease_is_operation_in_progress,
    test_image_labels_override_default_resources,
    test_invalid_game_id_writes_nothing,
    test_patch_keeps_state_and_logs_both_images,
    test_refused_patch_touches_nothing,
    test_restart_recreates_with_the_same_endpoint_and_state,
    test_restart_rules,
    test_start_twice_is_a_replay,
    test_start_with_another_image_while_running_conflicts,
    test_stop_rules,
    test_stop_then_start_replaces_the_old_container,
    test_stream_style_start_waits_for_a_lease_then_runs,
)
from harness import wait_for
from rig import Rig as Core
from swarm.nodes import Cluster

from rtm_core.domain.errors import ContainerStartFailed


async def service_of(client: aiodocker.Docker, ref: str) -> dict:
    return dict(await client.services.inspect(ref))


async def test_start_creates_a_labelled_hardened_service(
    core: Core, docker, swarm: Cluster, game_id: str, stack: str
) -> None:
    result = await core.lifecycle.start(game_id, V100, GM)
    record = result.record
    assert record is not None and record.status == "running"
    assert record.engine_endpoint == f"http://galaxy-game-{game_id}:8080"
    assert record.docker_network == core.settings.docker_network
    # The game's first placement is recorded: its state lives on that node.
    assert record.placement_node == swarm.manager.node_id

    service = await service_of(docker.client, f"galaxy-game-{game_id}")
    assert service["ID"] == record.current_container_id
    spec = service["Spec"]
    labels = {
        "com.galaxy.owner": "rtmanager",
        "com.galaxy.game_id": game_id,
        "com.galaxy.stack": stack,
        "com.galaxy.image_ref": V100,
        "com.galaxy.cpu_quota": "1",
        "com.galaxy.memory": "512m",
        "com.galaxy.pids_limit": "512",
    }
    assert spec["Labels"] == labels
    assert spec["Mode"] == {"Replicated": {"Replicas": 1}}
    assert spec["EndpointSpec"]["Mode"] == "dnsrr"
    task = spec["TaskTemplate"]
    assert task["RestartPolicy"]["Condition"] == "none"
    assert task["ContainerSpec"]["Labels"] == labels
    assert task["ContainerSpec"]["Hostname"] == f"galaxy-game-{game_id}"
    assert task["ContainerSpec"]["CapabilityDrop"] == ["ALL"]
    assert task["Resources"]["Limits"] == {
        "NanoCPUs": 1_000_000_000,
        "MemoryBytes": 512 * 1024**2,
        "Pids": 512,
    }
    assert task["Networks"][0]["Aliases"] == [f"galaxy-game-{game_id}"]
    assert "Ports" not in service["Endpoint"].get("Spec", {})

    # The task's container: what the node actually runs.
    c = (await docker.containers.get(f"galaxy-game-{game_id}"))._container
    assert c["State"]["Running"] and c["Config"]["Hostname"] == f"galaxy-game-{game_id}"
    assert c["Config"]["Labels"].items() >= labels.items()
    hc = c["HostConfig"]
    assert hc["Memory"] == 512 * 1024**2 and hc["NanoCpus"] == 1_000_000_000
    assert hc["PidsLimit"] == 512 and hc["CapDrop"] == ["ALL"]
    assert hc["Init"] and not hc["Privileged"] and not hc.get("PortBindings")
    state_dir = core.settings.game_state_root / game_id
    assert [(m["Source"], m["Destination"]) for m in c["Mounts"]] == [
        (str(state_dir), "/var/lib/galaxy-game")
    ]
    assert "GAME_STATE_PATH=/var/lib/galaxy-game" in c["Config"]["Env"]
    assert core.settings.docker_network in c["NetworkSettings"]["Networks"]
    # no-new-privileges: not expressible per service in API 1.41; the nodes'
    # daemons run with --no-new-privileges, and the engine's process has it.
    status = Path(f"/proc/{c['State']['Pid']}/status").read_text()
    assert "NoNewPrivs:\t1" in status
    await wait_for(lambda: (state_dir / "boot.log").exists())

    (row,) = await op_rows(core, game_id)
    assert (row.op_kind, row.outcome, row.container_id) == ("start", "success", service["ID"])


async def test_stop_scales_to_zero_and_keeps_the_service(core: Core, docker, game_id: str) -> None:
    started = await core.lifecycle.start(game_id, V100, GM)
    assert started.record is not None
    service_id = started.record.current_container_id
    await core.lifecycle.stop(game_id, "finished", GM)
    service = await service_of(docker.client, service_id)
    assert service["Spec"]["Mode"] == {"Replicated": {"Replicas": 0}}
    # The service stays until cleanup; Docker 20.10 deletes the scaled-down
    # task and its container on its own.
    info = await core.docker.inspect(service_id)
    assert info is not None and info.state == "exited" and not info.running
    assert [c.id for c in await core.docker.list_owned(game_id)] == [service_id]
    await core.lifecycle.cleanup(game_id, GM)
    with pytest.raises(aiodocker.DockerError):
        await service_of(docker.client, service_id)


async def test_a_foreign_service_holding_the_name_is_never_touched(
    core: Core, docker, game_id: str, stack: str
) -> None:
    """Someone else's galaxy-game-<id> service (another stack) fails the start."""
    foreign = await docker.containers.run(
        {
            "Image": V100,
            "Labels": {"com.galaxy.owner": "rtmanager", "com.galaxy.stack": f"{stack}-other"},
            "Env": ["GAME_STATE_PATH=/tmp"],
            "HostConfig": {"Init": True},
        },
        name=f"galaxy-game-{game_id}",
    )
    try:
        with pytest.raises(ContainerStartFailed):
            await core.lifecycle.start(game_id, V100, GM)
        assert (await docker.containers.get(foreign.id))._container["State"]["Running"]
        (row,) = await op_rows(core, game_id)
        assert (row.outcome, row.error_code) == ("failure", "container_start_failed")
    finally:
        await foreign.delete()


async def test_an_engine_that_cannot_start_leaves_nothing_behind(
    core: Core, docker, game_id: str
) -> None:
    """A task Swarm rejects (here: its state dir is not a directory) is a failed
    start within the start timeout, and its service is removed again."""
    (core.settings.game_state_root / game_id).mkdir()
    (core.settings.game_state_root / game_id).rmdir()
    (core.settings.game_state_root / game_id).write_text("not a directory")
    with pytest.raises(ContainerStartFailed):
        await core.lifecycle.start(game_id, V100, GM)
    assert await core.docker.list_owned(game_id) == []
    (row,) = await op_rows(core, game_id)
    assert (row.outcome, row.error_code) == ("failure", "container_start_failed")
