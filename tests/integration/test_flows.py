"""A game's life through the stack's edges: Lobby's streams, GM/admin REST, and
what Docker, Redis and the engine's own state directory show afterwards; then
the watcher's and reconciler's view of engines dying, vanishing and appearing
behind RTM's back."""

from __future__ import annotations

import json

import pytest
from harness import wait_for
from integration.compose import IMAGE, ComposeStack
from jobs.helpers import RESULT_FIELDS

pytestmark = pytest.mark.integration


def _boot_lines(compose: ComposeStack, game_id: str) -> list[str]:
    path = compose.state_root / game_id / "boot.log"
    return path.read_text().splitlines() if path.exists() else []


async def _wait_boot_lines(compose: ComposeStack, game_id: str, count: int) -> list[str]:
    async def enough() -> list[str] | None:
        lines = _boot_lines(compose, game_id)
        return lines if len(lines) >= count else None

    return await wait_for(enough, timeout=15, interval=0.1)  # type: ignore[no-any-return]


def _reconcile_timeout(compose: ComposeStack) -> float:
    """One reconcile interval, a pass, and room for a busy 2-core box."""
    return compose.reconcile_interval * 2 + 20


async def test_stream_start_replay_stop_then_rest_restart_patch_cleanup(
    compose: ComposeStack,
) -> None:
    game = compose.new_game("flow")
    image = f"{IMAGE}:1.0.0"

    # -- start through runtime:start_jobs -> one result, a running engine.
    await compose.start_job(game)
    (first,) = await compose.wait_results(game, 1)
    assert first["outcome"] == "success" and first["error_code"] == "", first
    assert first["engine_endpoint"] == f"http://galaxy-game-{game}:8080"
    assert sorted(first) == sorted(RESULT_FIELDS)  # every field, always
    engine = await compose.engine(game)
    assert engine is not None and engine["Id"] == first["container_id"]
    assert engine["State"]["Running"]
    labels = engine["Config"]["Labels"]
    assert labels["com.galaxy.owner"] == "rtmanager"
    assert labels["com.galaxy.game_id"] == game
    assert labels["com.galaxy.stack"] == compose.stack
    assert labels["com.galaxy.image_ref"] == image
    for resource in ("cpu_quota", "memory", "pids_limit"):
        assert labels[f"com.galaxy.{resource}"], resource
    assert engine["Config"]["Hostname"] == f"galaxy-game-{game}"
    assert set(engine["NetworkSettings"]["Networks"]) == {compose.engine_network}
    host = engine["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and not host["Privileged"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert not host.get("PortBindings")
    state_dir = compose.state_root / game
    assert [m["Source"] for m in engine["Mounts"]] == [str(state_dir)]
    started = await compose.wait_event(game, "container_started", timeout=10)
    assert started["container_id"] == first["container_id"]
    assert json.loads(started["details"]) == {"image_ref": image}
    record = await compose.record(game)
    assert record is not None and record["status"] == "running"
    assert record["current_container_id"] == first["container_id"]
    assert record["state_path"] == str(state_dir)
    (boot,) = await _wait_boot_lines(compose, game, 1)
    assert "version=1.0.0" in boot

    # -- the same start again: replay_no_op, nothing touched.
    await compose.start_job(game)
    replay = (await compose.wait_results(game, 2))[1]
    assert replay["outcome"] == "success" and replay["error_code"] == "replay_no_op"
    assert replay["container_id"] == first["container_id"]
    again = await compose.engine(game)
    assert again is not None and again["State"]["StartedAt"] == engine["State"]["StartedAt"]

    # -- stop through runtime:stop_jobs: container kept, exited.
    await compose.stop_job(game, "cancelled")
    stopped = (await compose.wait_results(game, 3))[2]
    assert stopped["outcome"] == "success" and stopped["error_code"] == "", stopped
    engine = await compose.engine(game)
    assert engine is not None and engine["Id"] == first["container_id"]
    assert engine["State"]["Status"] == "exited"
    record = await compose.record(game)
    assert record is not None and record["status"] == "stopped"

    # -- restart (GM, REST) from stopped: new container, same state dir.
    response = await compose.post(game, "restart", caller="gm")
    assert response.status_code == 200, response.text
    restarted = response.json()
    assert restarted["status"] == "running"
    assert restarted["current_container_id"] != first["container_id"]
    assert restarted["engine_endpoint"] == first["engine_endpoint"]
    assert [e["Id"] for e in await compose.engines(game)] == [restarted["current_container_id"]]
    assert len(await _wait_boot_lines(compose, game, 2)) == 2
    assert await compose.engine_get(game, "/version") == "1.0.0"

    # -- patch: a minor jump is refused with nothing touched, a patch jump replaces.
    response = await compose.post(game, "patch", {"image_ref": f"{IMAGE}:1.1.0"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "semver_patch_only"
    engine = await compose.engine(game)
    assert engine is not None and engine["Id"] == restarted["current_container_id"]
    response = await compose.post(game, "patch", {"image_ref": f"{IMAGE}:1.0.1"})
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["current_image_ref"] == f"{IMAGE}:1.0.1"
    assert patched["current_container_id"] != restarted["current_container_id"]
    lines = await _wait_boot_lines(compose, game, 3)
    assert len(lines) == 3 and "version=1.0.1" in lines[-1]
    assert await compose.engine_get(game, "/version") == "1.0.1"

    # -- cleanup: refused while running, then stop + cleanup; the state dir stays.
    response = await compose.delete_container(game)
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"
    response = await compose.post(game, "stop", {"reason": "finished"})
    assert response.status_code == 200 and response.json()["status"] == "stopped"
    response = await compose.delete_container(game)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "removed"
    assert await compose.engines(game) == []
    assert len(_boot_lines(compose, game)) == 3

    # -- one operation-log row per operation, failures included.
    ops = [
        (o["op_kind"], o["op_source"], o["outcome"], o["error_code"])
        for o in await compose.operations(game)
    ]
    assert ops == [
        ("start", "lobby_stream", "success", None),
        ("start", "lobby_stream", "success", "replay_no_op"),
        ("stop", "lobby_stream", "success", None),
        ("restart", "gm_rest", "success", None),
        ("patch", "admin_rest", "failure", "semver_patch_only"),
        ("patch", "admin_rest", "success", None),
        ("cleanup_container", "admin_rest", "failure", "conflict"),
        ("stop", "admin_rest", "success", None),
        ("cleanup_container", "admin_rest", "success", None),
    ]


async def test_engine_death_is_a_container_exited_event_then_a_stopped_record(
    compose: ComposeStack,
) -> None:
    game = compose.new_game("death")
    record = await compose.start_rest(game)
    await _wait_boot_lines(compose, game, 1)

    # The test engine exits with the code written to `exit_code` in its state dir.
    (compose.state_root / game / "exit_code").write_text("3")
    event = await compose.wait_event(game, "container_exited", timeout=30)
    assert event["container_id"] == record["current_container_id"]
    assert json.loads(event["details"]) == {"exit_code": 3, "oom": False}
    assert int(event["occurred_at_ms"]) > 0

    # The reconciler notices the exited container on its next pass.
    async def observed() -> bool:
        current = await compose.record(game)
        return current is not None and current["status"] == "stopped"

    await wait_for(observed, timeout=_reconcile_timeout(compose), interval=0.5)
    last = (await compose.operations(game))[-1]
    assert (last["op_kind"], last["op_source"], last["outcome"]) == (
        "reconcile_observed_exited",
        "reconciler",
        "success",
    )
    engine = await compose.engine(game)
    assert engine is not None and engine["State"]["ExitCode"] == 3


async def test_engine_removed_behind_rtms_back_is_disposed(compose: ComposeStack) -> None:
    game = compose.new_game("dispose")
    record = await compose.start_rest(game)
    container_id = record["current_container_id"]
    await compose.docker.containers.container(container_id).delete(force=True)

    async def disposed() -> bool:
        current = await compose.record(game)
        return current is not None and current["status"] == "removed"

    await wait_for(disposed, timeout=_reconcile_timeout(compose), interval=0.5)
    event = await compose.wait_event(game, "container_disappeared", timeout=10)
    assert event["container_id"] == container_id
    assert json.loads(event["details"]) == {}
    dispose = [o for o in await compose.operations(game) if o["op_kind"] == "reconcile_dispose"]
    assert [(o["op_source"], o["outcome"], o["container_id"]) for o in dispose] == [
        ("reconciler", "success", container_id)
    ]


async def test_labelled_container_started_by_hand_is_adopted(compose: ComposeStack) -> None:
    game = compose.new_game("adopt")
    image = f"{IMAGE}:1.0.2"
    config = {
        "Image": image,
        "Hostname": f"galaxy-game-{game}",
        "Env": ["GAME_STATE_PATH=/tmp"],
        "Labels": {
            "com.galaxy.owner": "rtmanager",
            "com.galaxy.stack": compose.stack,
            "com.galaxy.game_id": game,
            "com.galaxy.image_ref": image,
        },
        "HostConfig": {"NetworkMode": compose.engine_network, "Init": True},
    }
    container = await compose.docker.containers.create(config, name=f"galaxy-game-{game}")
    await container.start()

    async def adopted() -> dict[str, object] | None:
        record = await compose.record(game)
        return record if record is not None and record["status"] == "running" else None

    record = await wait_for(adopted, timeout=_reconcile_timeout(compose), interval=0.5)
    assert record["current_container_id"] == container.id
    assert record["current_image_ref"] == image
    assert record["engine_endpoint"] == f"http://galaxy-game-{game}:8080"
    ops = [(o["op_kind"], o["op_source"], o["outcome"]) for o in await compose.operations(game)]
    assert ops == [("reconcile_adopt", "reconciler", "success")]

    # Adopted means managed: RTM stops and cleans it up like its own.
    response = await compose.post(game, "stop", {"reason": "admin_request"})
    assert response.status_code == 200 and response.json()["status"] == "stopped"
    response = await compose.delete_container(game)
    assert response.status_code == 200 and response.json()["status"] == "removed"
    assert await compose.engines(game) == []
