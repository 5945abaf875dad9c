"""The lifecycle services against real PostgreSQL, Redis and Docker.

Each test asserts what an operator would check: the container and its
labels, limits and mounts in Docker; the row in PostgreSQL; the entry on
the stream.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiodocker
import pytest
from harness import stream_entries, wait_for
from redis.asyncio import Redis
from rig import Rig as Core

from rtm_core.domain.errors import (
    Conflict,
    ContainerStartFailed,
    ImagePullFailed,
    ImageRefNotSemver,
    InvalidRequest,
    NotFound,
    OperationInProgress,
    SemverPatchOnly,
    StartConfigInvalid,
)
from rtm_core.domain.vocabulary import OpSource

V100 = "galaxy/test-engine:1.0.0"
V101 = "galaxy/test-engine:1.0.1"
V110 = "galaxy/test-engine:1.1.0"
GM = OpSource.GM_REST


async def inspect(docker: aiodocker.Docker, ref: str) -> dict:
    return (await docker.containers.get(ref))._container


async def op_rows(core: Core, game_id: str) -> list:
    return list(reversed(await core.repos.operations(game_id)))


async def test_start_creates_a_labelled_hardened_engine(
    core: Core, docker: aiodocker.Docker, redis: Redis, game_id: str, stack: str
) -> None:
    result = await core.lifecycle.start(game_id, V100, GM)
    record = result.record
    assert record is not None and not result.replay
    assert record.status == "running"
    assert record.engine_endpoint == f"http://galaxy-game-{game_id}:8080"
    assert record.state_path == str(core.settings.game_state_root / game_id)
    assert record.docker_network == core.settings.docker_network

    c = await inspect(docker, f"galaxy-game-{game_id}")
    assert c["Id"] == record.current_container_id
    assert c["State"]["Running"]
    assert c["Config"]["Hostname"] == f"galaxy-game-{game_id}"
    assert (
        c["Config"]["Labels"].items()
        >= {
            "com.galaxy.owner": "rtmanager",
            "com.galaxy.game_id": game_id,
            "com.galaxy.stack": stack,
            "com.galaxy.image_ref": V100,
            "com.galaxy.cpu_quota": "1",
            "com.galaxy.memory": "512m",
            "com.galaxy.pids_limit": "512",
        }.items()
    )
    hc = c["HostConfig"]
    assert hc["NetworkMode"] == core.settings.docker_network
    assert hc["Memory"] == 512 * 1024**2 and hc["NanoCpus"] == 1_000_000_000
    assert hc["PidsLimit"] == 512
    assert not hc["Privileged"]
    assert hc["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in hc["SecurityOpt"]
    assert not hc.get("PortBindings")
    state_dir = core.settings.game_state_root / game_id
    assert [(m["Source"], m["Destination"]) for m in c["Mounts"]] == [
        (str(state_dir), "/var/lib/galaxy-game")
    ]
    assert "GAME_STATE_PATH=/var/lib/galaxy-game" in c["Config"]["Env"]
    assert oct(state_dir.stat().st_mode & 0o777) == "0o750"
    # The engine really runs with its state mounted: it writes its boot log there.
    await wait_for(lambda: (state_dir / "boot.log").exists())

    (row,) = await op_rows(core, game_id)
    assert (row.op_kind, row.op_source, row.outcome) == ("start", "gm_rest", "success")
    assert row.container_id == record.current_container_id and row.image_ref == V100

    (event,) = await stream_entries(redis, core.settings.redis_health_events_stream)
    assert event["event_type"] == "container_started" and event["game_id"] == game_id
    assert event["container_id"] == record.current_container_id
    assert json.loads(event["details"]) == {"image_ref": V100}
    snapshot = await core.repos.get_snapshot(game_id)
    assert snapshot is not None and snapshot.status == "container_started"


async def test_start_twice_is_a_replay(core: Core, game_id: str) -> None:
    first = await core.lifecycle.start(game_id, V100, GM)
    again = await core.lifecycle.start(game_id, V100, OpSource.LOBBY_STREAM)
    assert again.replay and again.error_code == "replay_no_op"
    assert again.record is not None and first.record is not None
    assert again.record.current_container_id == first.record.current_container_id
    rows = await op_rows(core, game_id)
    assert [(r.outcome, r.error_code) for r in rows] == [
        ("success", None),
        ("success", "replay_no_op"),
    ]


async def test_start_with_another_image_while_running_conflicts(core: Core, game_id: str) -> None:
    await core.lifecycle.start(game_id, V100, GM)
    with pytest.raises(Conflict):
        await core.lifecycle.start(game_id, V101, GM)
    rows = await op_rows(core, game_id)
    assert (rows[-1].outcome, rows[-1].error_code) == ("failure", "conflict")


async def test_stop_then_start_replaces_the_old_container(
    core: Core, docker: aiodocker.Docker, game_id: str
) -> None:
    started = await core.lifecycle.start(game_id, V100, GM)
    assert started.record is not None
    old_id = started.record.current_container_id

    stopped = await core.lifecycle.stop(game_id, "finished", GM)
    assert stopped.record is not None and stopped.record.status == "stopped"
    assert stopped.record.stopped_at is not None
    c = await inspect(docker, old_id)
    assert not c["State"]["Running"]

    replay = await core.lifecycle.stop(game_id, "cancelled", GM)
    assert replay.replay

    restarted = await core.lifecycle.start(game_id, V100, GM)
    assert restarted.record is not None
    assert restarted.record.current_container_id != old_id
    with pytest.raises(aiodocker.DockerError):
        await inspect(docker, old_id)
    assert [r.op_kind for r in await op_rows(core, game_id)] == ["start", "stop", "stop", "start"]


async def test_stop_rules(core: Core, game_id: str) -> None:
    with pytest.raises(NotFound):
        await core.lifecycle.stop(game_id, "finished", GM)
    await core.lifecycle.start(game_id, V100, GM)
    with pytest.raises(InvalidRequest, match="reason"):
        await core.lifecycle.stop(game_id, "bored", GM)
    record = await core.repos.get_record(game_id)
    assert record is not None and record.status == "running"


async def test_restart_recreates_with_the_same_endpoint_and_state(core: Core, game_id: str) -> None:
    first = await core.lifecycle.start(game_id, V100, GM)
    assert first.record is not None
    again = await core.lifecycle.restart(game_id, OpSource.ADMIN_REST)
    assert again.record is not None
    assert again.record.current_container_id != first.record.current_container_id
    assert again.record.engine_endpoint == first.record.engine_endpoint
    assert again.record.state_path == first.record.state_path
    assert again.record.current_image_ref == V100 and again.record.status == "running"
    # Restart also works from stopped.
    await core.lifecycle.stop(game_id, "admin_request", GM)
    from_stopped = await core.lifecycle.restart(game_id, GM)
    assert from_stopped.record is not None and from_stopped.record.status == "running"


async def test_restart_rules(core: Core, game_id: str) -> None:
    with pytest.raises(NotFound):
        await core.lifecycle.restart(game_id, GM)
    await core.lifecycle.start(game_id, V100, GM)
    await core.lifecycle.stop(game_id, "finished", GM)
    await core.lifecycle.cleanup(game_id, GM)
    with pytest.raises(Conflict):
        await core.lifecycle.restart(game_id, GM)


async def test_patch_keeps_state_and_logs_both_images(
    core: Core, docker: aiodocker.Docker, game_id: str
) -> None:
    first = await core.lifecycle.start(game_id, V100, GM)
    assert first.record is not None
    boot_log = core.settings.game_state_root / game_id / "boot.log"
    await wait_for(lambda: boot_log.exists())
    (core.settings.game_state_root / game_id / "save.dat").write_text("turn 42")

    patched = await core.lifecycle.patch(game_id, V101, OpSource.ADMIN_REST)
    assert patched.record is not None
    assert patched.record.current_image_ref == V101
    assert patched.record.current_container_id != first.record.current_container_id
    assert patched.record.engine_endpoint == first.record.engine_endpoint
    c = await inspect(docker, f"galaxy-game-{game_id}")
    assert c["Config"]["Labels"]["com.galaxy.image_ref"] == V101
    assert (core.settings.game_state_root / game_id / "save.dat").read_text() == "turn 42"
    await wait_for(lambda: len(boot_log.read_text().splitlines()) >= 2)

    row = (await op_rows(core, game_id))[-1]
    assert (row.op_kind, row.outcome, row.image_ref, row.previous_image_ref) == (
        "patch",
        "success",
        V101,
        V100,
    )


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("galaxy/test-engine:notsemver", ImageRefNotSemver),
        (V110, SemverPatchOnly),
        ("galaxy/test-engine:2.0.0", SemverPatchOnly),
    ],
)
async def test_refused_patch_touches_nothing(
    core: Core, docker: aiodocker.Docker, game_id: str, target: str, error: type
) -> None:
    first = await core.lifecycle.start(game_id, V100, GM)
    assert first.record is not None
    with pytest.raises(error):
        await core.lifecycle.patch(game_id, target, GM)
    c = await inspect(docker, f"galaxy-game-{game_id}")
    assert c["Id"] == first.record.current_container_id and c["State"]["Running"]
    record = await core.repos.get_record(game_id)
    assert record is not None and record.current_image_ref == V100
    row = (await op_rows(core, game_id))[-1]
    assert (row.op_kind, row.outcome, row.error_code) == ("patch", "failure", error.code)


async def test_cleanup_rules_and_state_dir_kept(
    core: Core, docker: aiodocker.Docker, game_id: str
) -> None:
    with pytest.raises(NotFound):
        await core.lifecycle.cleanup(game_id, OpSource.ADMIN_REST)
    started = await core.lifecycle.start(game_id, V100, GM)
    assert started.record is not None
    with pytest.raises(Conflict, match="stop it first"):
        await core.lifecycle.cleanup(game_id, OpSource.ADMIN_REST)
    await core.lifecycle.stop(game_id, "admin_request", GM)
    cleaned = await core.lifecycle.cleanup(game_id, OpSource.ADMIN_REST)
    assert cleaned.record is not None and cleaned.record.status == "removed"
    assert cleaned.record.removed_at is not None
    with pytest.raises(aiodocker.DockerError):
        await inspect(docker, started.record.current_container_id)
    assert (core.settings.game_state_root / game_id).is_dir()
    assert (await core.lifecycle.cleanup(game_id, OpSource.ADMIN_REST)).replay
    row = (await op_rows(core, game_id))[-2]
    assert (row.op_kind, row.op_source, row.outcome) == (
        "cleanup_container",
        "admin_rest",
        "success",
    )


async def test_held_lease_is_operation_in_progress(
    core: Core, redis: Redis, game_id: str, docker: aiodocker.Docker
) -> None:
    await redis.set(f"rtmanager:game_lease:{game_id}", "someone-else", ex=30)
    with pytest.raises(OperationInProgress):
        await core.lifecycle.start(game_id, V100, GM)
    (row,) = await op_rows(core, game_id)
    assert (row.outcome, row.error_code) == ("failure", "operation_in_progress")
    assert await core.docker.list_owned(game_id) == []
    # The other holder's lease is untouched.
    assert await redis.get(f"rtmanager:game_lease:{game_id}") == "someone-else"


async def test_stream_style_start_waits_for_a_lease_then_runs(
    core: Core, redis: Redis, game_id: str
) -> None:
    key = f"rtmanager:game_lease:{game_id}"
    await redis.set(key, "someone-else", px=400)
    result = await core.lifecycle.start(game_id, V100, OpSource.LOBBY_STREAM, lease_wait=5)
    assert result.record is not None and result.record.status == "running"
    assert await redis.get(key) is None  # released by compare-and-delete


@pytest.mark.parametrize("bad", ["../x", "a b", "", "-lead", "x" * 129, "a/b"])
async def test_invalid_game_id_writes_nothing(
    core: Core, redis: Redis, bad: str, docker: aiodocker.Docker, stack: str
) -> None:
    with pytest.raises(StartConfigInvalid):
        await core.lifecycle.start(bad, V100, GM)
    for call in (
        core.lifecycle.stop(bad, "finished", GM),
        core.lifecycle.restart(bad, GM),
        core.lifecycle.patch(bad, V101, GM),
        core.lifecycle.cleanup(bad, GM),
    ):
        with pytest.raises(InvalidRequest):
            await call
    assert await core.repos.operations(bad) == []
    assert list(core.settings.game_state_root.iterdir()) == []
    assert await redis.exists(core.settings.notification_intents_stream) == 0
    assert not [c for c in await core.docker.list_owned() if c.game_id == bad]


async def test_disallowed_prefix_is_refused_with_a_notification(
    make_settings, make_core, redis: Redis, game_id: str
) -> None:
    core = make_core(make_settings(image_allowed_prefixes="registry.galaxy.local/"))
    with pytest.raises(StartConfigInvalid, match="allowed prefixes"):
        await core.lifecycle.start(game_id, V100, GM)
    assert await core.docker.list_owned(game_id) == []
    (intent,) = await stream_entries(redis, core.settings.notification_intents_stream)
    envelope = json.loads(intent["envelope"])
    assert envelope["type"] == "runtime.start_config_invalid"
    assert envelope["payload"]["error_code"] == "start_config_invalid"


async def test_failed_pull_is_image_pull_failed_with_a_notification(
    make_settings, make_core, redis: Redis, game_id: str
) -> None:
    core = make_core(make_settings(image_pull_policy="if_not_present"))
    missing = "rtm-test/does-not-exist:1.0.0"
    with pytest.raises(ImagePullFailed):
        await core.lifecycle.start(game_id, missing, GM)
    (intent,) = await stream_entries(redis, core.settings.notification_intents_stream)
    envelope = json.loads(intent["envelope"])
    assert envelope["type"] == "runtime.image_pull_failed"
    assert envelope["producer"] == "rtmanager"
    assert envelope["audience"] == {
        "kind": "admin_email",
        "email_address_kind": "runtime_image_pull_failed",
    }
    payload = envelope["payload"]
    assert payload["game_id"] == game_id and payload["image_ref"] == missing
    assert envelope["idempotency_key"] == (
        f"runtime.image_pull_failed:{game_id}:{payload['attempted_at_ms']}"
    )
    (row,) = await op_rows(core, game_id)
    assert (row.outcome, row.error_code) == ("failure", "image_pull_failed")
    assert await core.repos.get_record(game_id) is None


async def test_image_labels_override_default_resources(
    core: Core, docker: aiodocker.Docker, game_id: str
) -> None:
    await core.lifecycle.start(game_id, "galaxy/test-engine-limited:1.0.0", GM)
    c = await inspect(docker, f"galaxy-game-{game_id}")
    hc, labels = c["HostConfig"], c["Config"]["Labels"]
    assert (hc["Memory"], hc["NanoCpus"], hc["PidsLimit"]) == (64 * 1024**2, 500_000_000, 64)
    assert (labels["com.galaxy.memory"], labels["com.galaxy.cpu_quota"]) == ("64m", "0.5")
    assert labels["com.galaxy.pids_limit"] == "64"


async def test_a_silent_lobby_costs_the_start_nothing(
    make_settings, make_core, game_id: str
) -> None:
    """The diagnostic GET reaches Lobby, but the start completes while Lobby still holds it."""
    requested = asyncio.Event()
    release = asyncio.Event()

    async def silent_lobby(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        if f"/api/v1/internal/games/{game_id}".encode() in line:
            requested.set()
        await release.wait()
        writer.close()

    server = await asyncio.start_server(silent_lobby, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    core = make_core(
        make_settings(lobby_internal_base_url=f"http://127.0.0.1:{port}", lobby_internal_timeout=30)
    )
    try:
        result = await core.lifecycle.start(game_id, V100, GM)
        assert result.record is not None and result.record.status == "running"
        await asyncio.wait_for(requested.wait(), 5)
        assert not release.is_set()  # Lobby never answered, and the start is done.
    finally:
        release.set()
        server.close()


async def test_a_crash_leftover_container_is_replaced_on_start(
    core: Core, docker: aiodocker.Docker, game_id: str
) -> None:
    """A container created before a crash, with no record, does not block the next start."""
    first = await core.lifecycle.start(game_id, V100, GM)
    assert first.record is not None
    async with core.postgres.begin() as conn:
        from sqlalchemy import text

        await conn.execute(
            text("DELETE FROM rtmanager.runtime_records WHERE game_id = :g"), {"g": game_id}
        )
    again = await core.lifecycle.start(game_id, V100, GM)
    assert again.record is not None and not again.replay
    containers = await core.docker.list_owned(game_id)
    assert [c.id for c in containers] == [again.record.current_container_id]


def test_state_dirs_are_per_game(tmp_path: Path) -> None:
    from rtm_core.domain.vocabulary import container_name, engine_endpoint

    assert container_name("g1") == "galaxy-game-g1"
    assert engine_endpoint("g1") == "http://galaxy-game-g1:8080"


async def test_a_foreign_container_holding_the_name_is_never_touched(
    core: Core, docker: aiodocker.Docker, game_id: str, stack: str
) -> None:
    """Someone else's galaxy-game-<id> (another stack) fails the start and keeps running."""
    foreign = await docker.containers.create(
        {
            "Image": V100,
            "Labels": {"com.galaxy.owner": "rtmanager", "com.galaxy.stack": f"{stack}-other"},
            "Env": ["GAME_STATE_PATH=/tmp"],
            "HostConfig": {"Init": True},
        },
        name=f"galaxy-game-{game_id}",
    )
    try:
        await foreign.start()
        with pytest.raises(ContainerStartFailed):
            await core.lifecycle.start(game_id, V100, GM)
        c = await inspect(docker, foreign.id)
        assert c["State"]["Running"]
        (row,) = await op_rows(core, game_id)
        assert (row.outcome, row.error_code) == ("failure", "container_start_failed")
    finally:
        await foreign.delete(force=True)
