"""One reconcile pass (`Reconciler.run_once`) against real PostgreSQL, Redis and
Docker: engines started through the core, drift made the way it happens in
production (`docker rm -f`, an engine that exits, an operator's `docker run`),
then the record, the operation log, the stream and Docker checked."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any

import aiodocker
import pytest
from harness import stream_entries, wait_for
from reconciler.helpers import ENGINE_V100, start_engine, vanish
from redis.asyncio import Redis
from rig import Rig

from rtm_core.domain.engine import ContainerInfo
from rtm_core.domain.records import RuntimeRecord
from rtm_core.lifecycle import Drift, DriftOutcome, DriftResult
from rtm_reconciler.reconciler import Reconciler, plan_pass


async def ops(core: Rig, game_id: str) -> list[tuple[str, str, str, str | None]]:
    rows = reversed(await core.repos.operations(game_id))
    return [(r.op_kind, r.op_source, r.outcome, r.container_id) for r in rows]


async def state_of(docker: aiodocker.Docker, ref: str) -> dict[str, Any]:
    return dict((await docker.containers.get(ref))._container["State"])


def our_labels(stack: str, game_id: str, image: str = ENGINE_V100) -> dict[str, str]:
    return {
        "com.galaxy.owner": "rtmanager",
        "com.galaxy.stack": stack,
        "com.galaxy.game_id": game_id,
        "com.galaxy.image_ref": image,
    }


async def test_vanished_container_is_disposed(
    core: Rig, reconciler: Reconciler, docker: aiodocker.Docker, redis: Redis, game_id: str
) -> None:
    record = await start_engine(core, game_id)
    old_id = record.current_container_id
    await vanish(docker, old_id)

    await reconciler.run_once()

    after = await core.repos.get_record(game_id)
    assert after is not None and after.status == "removed" and after.removed_at is not None
    assert await ops(core, game_id) == [
        ("start", "gm_rest", "success", old_id),
        ("reconcile_dispose", "reconciler", "success", old_id),
    ]
    events = await stream_entries(redis, core.settings.redis_health_events_stream)
    assert [e["event_type"] for e in events] == ["container_started", "container_disappeared"]
    assert events[-1]["game_id"] == game_id and events[-1]["container_id"] == old_id
    assert json.loads(events[-1]["details"]) == {}
    snapshot = await core.repos.get_snapshot(game_id)
    assert snapshot is not None and snapshot.status == "container_disappeared"
    # The state directory is the game's data: never touched.
    assert (core.settings.game_state_root / game_id).is_dir()


@pytest.mark.parametrize("how", ["exit_code file", "docker kill"])
async def test_exited_engine_is_observed_as_stopped(
    core: Rig, reconciler: Reconciler, docker: aiodocker.Docker, game_id: str, how: str
) -> None:
    record = await start_engine(core, game_id)
    cid = record.current_container_id
    if how == "docker kill":
        await (await docker.containers.get(cid)).kill(signal="SIGKILL")
    else:
        await wait_for(lambda: (core.settings.game_state_root / game_id / "boot.log").exists())
        (core.settings.game_state_root / game_id / "exit_code").write_text("3")

    async def exited() -> bool:
        return (await state_of(docker, cid))["Status"] == "exited"

    await wait_for(exited)
    await reconciler.run_once()

    after = await core.repos.get_record(game_id)
    assert after is not None and after.status == "stopped"
    assert after.current_container_id == cid and after.stopped_at is not None
    assert await ops(core, game_id) == [
        ("start", "gm_rest", "success", cid),
        ("reconcile_observed_exited", "reconciler", "success", cid),
    ]
    # Observed, not acted on: the exited container stays for inspection and cleanup.
    assert (await state_of(docker, cid))["Status"] == "exited"


async def test_hand_started_labelled_container_is_adopted(
    core: Rig,
    reconciler: Reconciler,
    docker: aiodocker.Docker,
    hand_made: Callable[..., Any],
    stack: str,
    game_id: str,
) -> None:
    cid = await hand_made(f"galaxy-game-{game_id}", our_labels(stack, game_id))

    await reconciler.run_once()

    record = await core.repos.get_record(game_id)
    assert record is not None
    assert (record.status, record.current_container_id) == ("running", cid)
    assert record.current_image_ref == ENGINE_V100
    assert record.engine_endpoint == f"http://galaxy-game-{game_id}:8080"
    assert await ops(core, game_id) == [("reconcile_adopt", "reconciler", "success", cid)]
    assert (await state_of(docker, cid))["Running"]  # adopted as it is, not restarted


async def test_containers_of_another_stack_or_without_owner_are_untouched(
    core: Rig,
    reconciler: Reconciler,
    docker: aiodocker.Docker,
    hand_made: Callable[..., Any],
    stack: str,
    game_id: str,
) -> None:
    foreign = our_labels("another-deployment", f"{game_id}-foreign")
    unowned = our_labels(stack, f"{game_id}-unowned")
    del unowned["com.galaxy.owner"]
    foreign_id = await hand_made(f"galaxy-game-{game_id}-foreign", foreign)
    unowned_id = await hand_made(f"galaxy-game-{game_id}-unowned", unowned)

    await reconciler.run_once()

    for cid, gid in ((foreign_id, f"{game_id}-foreign"), (unowned_id, f"{game_id}-unowned")):
        assert (await state_of(docker, cid))["Running"]
        assert await core.repos.get_record(gid) is None
        assert await core.repos.operations(gid) == []


async def test_an_engine_in_sync_writes_nothing(
    core: Rig, reconciler: Reconciler, redis: Redis, game_id: str
) -> None:
    record = await start_engine(core, game_id)

    report = await reconciler.reconcile()

    assert (report.disposed, report.observed_exited, report.adopted) == (0, 0, 0)
    after = await core.repos.get_record(game_id)
    assert after is not None and dataclasses.asdict(after) == dataclasses.asdict(record)
    assert [k for k, *_ in await ops(core, game_id)] == ["start"]
    events = await stream_entries(redis, core.settings.redis_health_events_stream)
    assert [e["event_type"] for e in events] == ["container_started"]


async def test_a_busy_game_is_skipped_and_the_pass_goes_on(
    core: Rig, reconciler: Reconciler, docker: aiodocker.Docker, redis: Redis, game_id: str
) -> None:
    busy, free = f"{game_id}-busy", f"{game_id}-free"
    records = await asyncio.gather(start_engine(core, busy), start_engine(core, free))
    for record in records:
        await vanish(docker, record.current_container_id)
    await redis.set(f"rtmanager:game_lease:{busy}", "someone-else", ex=30)

    report = await reconciler.reconcile()

    assert (report.skipped_busy, report.disposed) == (1, 1)
    busy_record = await core.repos.get_record(busy)
    assert busy_record is not None and busy_record.status == "running"
    assert [k for k, *_ in await ops(core, busy)] == ["start"]  # no row for a busy game
    assert await redis.get(f"rtmanager:game_lease:{busy}") == "someone-else"
    free_record = await core.repos.get_record(free)
    assert free_record is not None and free_record.status == "removed"

    await redis.delete(f"rtmanager:game_lease:{busy}")
    await reconciler.run_once()  # the next pass gets to it
    busy_record = await core.repos.get_record(busy)
    assert busy_record is not None and busy_record.status == "removed"


async def test_a_failing_game_is_logged_and_the_pass_goes_on(
    core: Rig,
    reconciler: Reconciler,
    docker: aiodocker.Docker,
    game_id: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken, fine = f"{game_id}-broken", f"{game_id}-fine"
    records = await asyncio.gather(start_engine(core, broken), start_engine(core, fine))
    for record in records:
        await vanish(docker, record.current_container_id)
    real_many = core.lifecycle.reconcile_many

    async def many(drifts: list[Drift]) -> list[DriftResult]:  # fault injection for one game
        results = await real_many([d for d in drifts if d.game_id != broken])
        failed = [
            DriftResult(d.game_id, d.kind, DriftOutcome.FAILED, ConnectionResetError("injected"))
            for d in drifts
            if d.game_id == broken
        ]
        return results + failed

    monkeypatch.setattr(core.lifecycle, "reconcile_many", many)
    with caplog.at_level(logging.WARNING, logger="rtm_reconciler"):
        report = await reconciler.reconcile()

    assert (report.failed, report.disposed) == (1, 1)
    fine_record = await core.repos.get_record(fine)
    assert fine_record is not None and fine_record.status == "removed"
    (failure,) = [r for r in caplog.records if r.getMessage().startswith("reconcile drift failed")]
    assert (failure.game_id, failure.op_kind) == (broken, "reconcile_dispose")  # type: ignore[attr-defined]


async def test_a_manual_container_replaces_a_vanished_engine(
    core: Rig,
    reconciler: Reconciler,
    docker: aiodocker.Docker,
    hand_made: Callable[..., Any],
    redis: Redis,
    stack: str,
    game_id: str,
) -> None:
    """Record `running` on container A; A is gone and the operator ran B with the
    game's labels: A is disposed (it did disappear), then B is adopted."""
    record = await start_engine(core, game_id)
    old_id = record.current_container_id
    await vanish(docker, old_id)
    new_id = await hand_made(f"galaxy-game-{game_id}", our_labels(stack, game_id))

    await reconciler.run_once()

    after = await core.repos.get_record(game_id)
    assert after is not None and (after.status, after.current_container_id) == ("running", new_id)
    assert await ops(core, game_id) == [
        ("start", "gm_rest", "success", old_id),
        ("reconcile_dispose", "reconciler", "success", old_id),
        ("reconcile_adopt", "reconciler", "success", new_id),
    ]
    events = await stream_entries(redis, core.settings.redis_health_events_stream)
    assert (events[-1]["event_type"], events[-1]["container_id"]) == (
        "container_disappeared",
        old_id,
    )


async def test_an_extra_container_beside_a_live_record_is_left_alone(
    core: Rig,
    reconciler: Reconciler,
    docker: aiodocker.Docker,
    hand_made: Callable[..., Any],
    stack: str,
    game_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    record = await start_engine(core, game_id)
    extra = await hand_made(f"galaxy-game-{game_id}-debug", our_labels(stack, game_id))

    with caplog.at_level(logging.WARNING, logger="rtm_reconciler"):
        await reconciler.run_once()

    after = await core.repos.get_record(game_id)
    assert after is not None and after.current_container_id == record.current_container_id
    assert [k for k, *_ in await ops(core, game_id)] == ["start"]
    assert (await state_of(docker, extra))["Running"]
    (warning,) = [r for r in caplog.records if r.getMessage() == "unrecorded container left alone"]
    assert (warning.game_id, warning.container_id) == (game_id, extra)  # type: ignore[attr-defined]


async def test_a_stopping_process_aborts_before_the_next_lease(
    core: Rig, reconciler: Reconciler, docker: aiodocker.Docker, stop: asyncio.Event, game_id: str
) -> None:
    record = await start_engine(core, game_id)
    await vanish(docker, record.current_container_id)
    stop.set()  # SIGTERM arrived

    report = await reconciler.reconcile()

    assert (report.aborted, report.disposed) == (1, 0)
    after = await core.repos.get_record(game_id)
    assert after is not None and after.status == "running"


def _container(
    cid: str, game_id: str, state: str, name: str = "", stack: str = "s"
) -> ContainerInfo:
    labels = {"com.galaxy.owner": "rtmanager", "com.galaxy.stack": stack}
    if game_id:
        labels["com.galaxy.game_id"] = game_id
    return ContainerInfo(id=cid, name=name or f"galaxy-game-{game_id}", labels=labels, state=state)


def test_plan_adopts_one_container_per_game_preferring_a_running_one() -> None:
    containers = [
        _container("a1", "g1", "exited"),
        _container("a2", "g1", "running", name="manual"),
        _container("b1", "../x", "running"),  # not a valid game_id: ignored
        _container("c1", "g3", "running", stack="other"),  # another stack: ignored
        _container("d1", "", "running"),  # no game_id label: ignored
    ]
    plans, ignored = plan_pass([], containers, "s")
    assert [(p.game_id, p.adopt and p.adopt.id, [c.id for c in p.left_alone]) for p in plans] == [
        ("g1", "a2", ["a1"])
    ]
    assert sorted(c.id for c in ignored) == ["b1", "c1", "d1"]


def test_plan_never_adopts_beside_a_stopped_record() -> None:
    stopped = RuntimeRecord(game_id="g1", status="stopped", current_container_id="gone")
    plans, _ = plan_pass([stopped], [_container("x1", "g1", "running")], "s")
    assert [(p.record_drift, p.adopt, [c.id for c in p.left_alone]) for p in plans] == [
        (None, None, ["x1"])
    ]
