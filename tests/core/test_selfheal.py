"""Patch behind the health gate with rollback, and start that waits for its
engine (issue 12), against real PostgreSQL, Redis and Docker."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from harness import stream_entries, wait_for
from redis.asyncio import Redis
from rig import Rig

from rtm_core.domain.errors import Conflict, ContainerStartFailed, PatchRolledBack
from rtm_core.domain.vocabulary import OpSource
from rtm_core.lifecycle import snapshots
from rtm_core.settings import Settings

V100 = "galaxy/test-engine:1.0.0"
V101 = "galaxy/test-engine:1.0.1"
BAD = "galaxy/test-engine:1.0.9"  # corrupts its state on start, /healthz 503 after 1 s
GM = OpSource.GM_REST

# Five passes 300 ms apart span 1.2 s: longer than the at most one second that
# 1.0.9 stays healthy (its clock is whole seconds), so it can never pass the gate.
GATE: dict[str, Any] = {
    "patch_health_gate": "on",
    "patch_gate_probes": 5,
    "patch_gate_deadline": "6s",
    "patch_gate_interval": "300ms",
    # The host cannot resolve engine names: probe the container's IP.
    "probe_address_mode": "container_ip",
    "probe_timeout": "1s",
    "container_stop_timeout_seconds": 2,
}


@pytest.fixture
async def gated(
    make_core: Callable[[Settings], Rig], make_settings: Callable[..., Settings]
) -> Rig:
    return make_core(make_settings(**GATE))


def tree(path: Path) -> dict[str, bytes]:
    """Every file under `path`, by relative name, with its bytes."""
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


async def image_of(docker: aiodocker.Docker, container_id: str | None) -> str:
    assert container_id
    info = (await docker.containers.get(container_id))._container
    assert info["State"]["Running"]
    return str(info["Config"]["Labels"]["com.galaxy.image_ref"])


async def test_a_patch_that_fails_its_health_gate_is_rolled_back_state_and_all(
    gated: Rig, docker: aiodocker.Docker, redis: Redis, game_id: str
) -> None:
    started = await gated.lifecycle.start(game_id, V100, GM)
    assert started.record is not None
    state = gated.settings.game_state_root / game_id
    await wait_for(lambda: (state / "boot.log").exists())
    (state / "saves").mkdir()
    (state / "saves" / "turn-41.sav").write_bytes(bytes(range(256)) * 64)
    before = tree(state)
    boot_before = (state / "boot.log").read_text()

    with pytest.raises(PatchRolledBack) as failed:
        await gated.lifecycle.patch(game_id, BAD, GM)

    error = failed.value
    assert (error.code, error.http_status) == ("patch_rolled_back", 502)
    assert "failed its health gate" in error.message and "503" in error.message
    assert f"rolled back to {V100}" in error.message
    record = await gated.repos.get_record(game_id)
    assert record is not None and record.status == "running"
    assert record.current_image_ref == V100
    assert record.current_container_id != started.record.current_container_id
    assert await image_of(docker, record.current_container_id) == V100
    # The state is the one from before the patch: the engine's own file (its boot
    # log, plus the one line the restored 1.0.0 engine appends as it boots again),
    # the save, and nothing of what the bad release wrote.
    await wait_for(lambda: (state / "boot.log").read_text() != boot_before)
    after = tree(state)
    boot_after = after.pop("boot.log").decode()
    assert after == {k: v for k, v in before.items() if k != "boot.log"}
    assert boot_after.startswith(boot_before)
    (new_line,) = boot_after[len(boot_before) :].splitlines()
    assert new_line.startswith("boot version=1.0.0 ")
    assert not (state / "corrupted_by").exists()
    # The bad release's state is kept aside, never deleted by the rollback.
    folder = snapshots.game_snapshots(gated.settings.game_state_root, game_id)
    (rejected,) = [p for p in folder.iterdir() if p.name.endswith(".rejected")]
    assert (rejected / "corrupted_by").read_text() == "1.0.9\n"

    # The history, oldest first (by when each began): the attempt, then its undoing.
    rows = list(reversed(await gated.repos.operations(game_id)))
    story = [(r.op_kind, r.outcome, r.error_code, r.image_ref, r.previous_image_ref) for r in rows]
    assert story == [
        ("start", "success", None, V100, None),
        ("patch", "failure", "patch_rolled_back", BAD, V100),
        ("patch_rollback", "success", None, V100, BAD),
    ]
    assert rows[1].container_id not in {None, record.current_container_id}
    assert rows[1].error_message == error.message
    assert rows[2].container_id == record.current_container_id

    entries = await stream_entries(redis, gated.settings.redis_health_events_stream)
    told = [(e["event_type"], json.loads(e["details"])) for e in entries if e["game_id"] == game_id]
    assert [kind for kind, _ in told] == [
        "container_started",
        "container_started",
        "probe_failed",
        "container_started",
    ]
    assert told[1][1] == {"image_ref": BAD} and told[3][1] == {"image_ref": V100}
    assert told[2][1]["last_status"] == 503
    assert await gated.repos.patches_in_progress() == []
    assert [c.id for c in await gated.docker.list_owned(game_id)] == [record.current_container_id]


async def test_a_patch_that_passes_its_gate_keeps_a_snapshot(
    gated: Rig, docker: aiodocker.Docker, game_id: str
) -> None:
    await gated.lifecycle.start(game_id, V100, GM)
    state = gated.settings.game_state_root / game_id
    await wait_for(lambda: (state / "boot.log").exists())
    before = tree(state)

    patched = await gated.lifecycle.patch(game_id, V101, GM)

    assert patched.record is not None and patched.record.current_image_ref == V101
    assert await image_of(docker, patched.record.current_container_id) == V101
    (snapshot,) = snapshots.game_snapshots(gated.settings.game_state_root, game_id).iterdir()
    assert tree(snapshot) == before
    assert [r.op_kind for r in await gated.repos.operations(game_id)] == ["patch", "start"]


async def test_a_state_dir_over_the_snapshot_limit_refuses_the_patch(
    make_core: Callable[[Settings], Rig],
    make_settings: Callable[..., Settings],
    docker: aiodocker.Docker,
    game_id: str,
) -> None:
    rig = make_core(make_settings(**GATE, patch_snapshot_max_size="1k"))
    started = await rig.lifecycle.start(game_id, V100, GM)
    assert started.record is not None
    (rig.settings.game_state_root / game_id / "world.dat").write_bytes(b"x" * 4096)

    with pytest.raises(Conflict, match="over the snapshot limit"):
        await rig.lifecycle.patch(game_id, V101, GM)

    assert await image_of(docker, started.record.current_container_id) == V100


async def test_a_start_that_waits_for_its_engine(
    make_core: Callable[[Settings], Rig],
    make_settings: Callable[..., Settings],
    docker: aiodocker.Docker,
    redis: Redis,
    game_id: str,
) -> None:
    rig = make_core(make_settings(**GATE, start_ready_timeout="3s"))
    ready = await rig.lifecycle.start(game_id, V100, GM, wait_ready=True)
    assert ready.record is not None and ready.record.status == "running"

    # An engine that never answers its health check in time: the start fails
    # as a failed start does, and leaves no container behind.
    wedged = f"{game_id}-wedged"
    state = rig.settings.game_state_root / wedged
    state.mkdir(mode=0o750)
    (state / "hang_health").write_text("")
    with pytest.raises(ContainerStartFailed, match="never became ready"):
        await rig.lifecycle.start(wedged, V100, OpSource.LOBBY_STREAM, wait_ready=True)

    assert await rig.repos.get_record(wedged) is None
    assert await rig.docker.list_owned(wedged) == []
    (row,) = await rig.repos.operations(wedged)
    assert (row.outcome, row.error_code) == ("failure", "container_start_failed")
    intents = await stream_entries(redis, rig.settings.notification_intents_stream)
    (envelope,) = [json.loads(i["envelope"]) for i in intents]
    assert envelope["type"] == "runtime.container_start_failed"
    assert envelope["payload"]["game_id"] == wedged
