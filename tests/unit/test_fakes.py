"""The fakes keep their ports' contracts: what the unit tier proves about the
lifecycle is only as good as the fakes' likeness to the adapters."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from rtm_core.domain.engine import ContainerNameInUse, EngineEvent, EngineSpec, engine_spec
from rtm_core.domain.errors import (
    ContainerStartFailed,
    DockerUnavailable,
    FencedOut,
    OperationInProgress,
)
from rtm_core.domain.records import OperationLogEntry, RuntimeRecord
from rtm_core.settings import PullPolicy
from unit.fakes import EPOCH, Fakes
from unit.helpers import GAME, V100


def _spec(fakes: Fakes, game_id: str = GAME, image_ref: str = V100) -> EngineSpec:
    return engine_spec(fakes.settings, game_id, image_ref, "/tmp/state", {})


async def test_engine_names_are_unique_across_owners_and_stacks(fakes: Fakes) -> None:
    foreign = fakes.engine.add_container(GAME, V100, stack="other")
    with pytest.raises(ContainerNameInUse):
        await fakes.engine.create_and_start(_spec(fakes))
    assert await fakes.engine.list_owned() == []  # the other stack's is not ours to see
    assert await fakes.engine.inspect(foreign.id) == foreign
    await fakes.engine.remove(foreign.id)
    started = await fakes.engine.create_and_start(_spec(fakes))
    assert [c.id for c in await fakes.engine.list_owned(GAME)] == [started.id]
    assert await fakes.engine.inspect(f"galaxy-game-{GAME}") is not None


async def test_engine_stop_and_remove_are_idempotent(fakes: Fakes) -> None:
    info = await fakes.engine.create_and_start(_spec(fakes))
    for _ in range(2):
        await fakes.engine.stop(info.id, 5)
    stopped = await fakes.engine.inspect(info.id)
    assert stopped is not None and not stopped.running and stopped.exit_code == 0
    for _ in range(2):
        await fakes.engine.remove(info.id)
    assert await fakes.engine.inspect(info.id) is None


async def test_engine_failures_are_scripted_per_call(fakes: Fakes) -> None:
    fakes.engine.fail("start", ContainerStartFailed("start failed: x"), times=1)
    with pytest.raises(ContainerStartFailed):
        await fakes.engine.create_and_start(_spec(fakes))
    assert fakes.engine.containers == {}  # a container that never ran is not left behind
    await fakes.engine.create_and_start(_spec(fakes))
    fakes.engine.down = True
    with pytest.raises(DockerUnavailable):
        await fakes.engine.ping()
    with pytest.raises(DockerUnavailable):
        await fakes.engine.ensure_image(V100, PullPolicy.IF_NOT_PRESENT)


async def test_engine_events_flow_until_the_daemon_closes_the_stream(fakes: Fakes) -> None:
    event = EngineEvent("die", "c1", {"com.galaxy.game_id": GAME}, 1, 137)
    fakes.engine.emit(event)
    fakes.engine.close_events()
    seen = []
    with pytest.raises(DockerUnavailable, match="closed"):
        async for e in fakes.engine.events():
            seen.append(e)
    assert seen == [event] and seen[0].game_id == GAME


async def test_repositories_hand_out_copies_and_commit_all_or_nothing(fakes: Fakes) -> None:
    repos = fakes.repos
    record = RuntimeRecord(game_id=GAME, status="running")
    entry = OperationLogEntry(
        game_id=GAME,
        op_kind="start",
        op_source="gm_rest",
        outcome="success",
        started_at=EPOCH,
        finished_at=EPOCH,
    )
    await repos.commit_operation(entry, record)
    assert entry.id == 1 and record.created_at == EPOCH
    read = await repos.get_record(GAME)
    assert read == record
    assert read is not None
    read.status = "stopped"
    assert (await repos.get_record(GAME)) == record  # editing a read changes nothing

    repos.commit_failures.append(ConnectionError("gone"))
    with pytest.raises(ConnectionError):
        await repos.commit_operation(entry, RuntimeRecord(game_id=GAME, status="removed"))
    assert (await repos.get_record(GAME)) == record and len(repos.op_log) == 1

    fakes.clock.advance(days=1)
    await repos.save_record(RuntimeRecord(game_id=GAME, status="stopped", stopped_at=EPOCH))
    again = await repos.get_record(GAME)
    assert again is not None and again.created_at == EPOCH  # kept on every later write
    assert [r.game_id for r in await repos.stopped_before(EPOCH + timedelta(1))] == [GAME]
    assert await repos.stopped_before(EPOCH) == []
    assert await repos.count_by_status() == {"stopped": 1}
    assert [r.game_id for r in await repos.live_records()] == [GAME]


async def test_repositories_refuse_a_stale_fence(fakes: Fakes) -> None:
    entry = OperationLogEntry(
        game_id=GAME,
        op_kind="stop",
        op_source="gm_rest",
        outcome="success",
        started_at=EPOCH,
        finished_at=EPOCH,
    )
    await fakes.repos.commit_operation(entry, fence=5, job_id="10-0")
    with pytest.raises(FencedOut):
        await fakes.repos.commit_operation(entry, fence=4)
    await fakes.repos.commit_operation(entry, fence=6)
    fence = await fakes.repos.get_fence(GAME)
    assert fence is not None and (fence.fence, fence.last_job_id) == (6, "10-0")


async def test_leases_exclude_wait_and_number_their_holders(fakes: Fakes) -> None:
    leases = fakes.leases
    async with leases.hold(GAME) as first:
        assert await leases.is_held(GAME)
        with pytest.raises(OperationInProgress):
            async with leases.hold(GAME, wait=0.02):
                pass
        await first.ensure_held()
    assert not await leases.is_held(GAME)

    leases.occupy(GAME)
    asyncio.get_running_loop().call_later(0.03, leases.release, GAME)
    async with leases.hold(GAME, wait=1) as second:
        assert second.fence > first.fence
        leases.steal(GAME)
        with pytest.raises(FencedOut):
            await second.ensure_held()
    assert leases.holders == {GAME: "newer-holder"}
