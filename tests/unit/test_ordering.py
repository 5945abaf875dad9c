"""Per-game job order (issue 10 §1): a stream job older than the game's last
applied one is superseded — it touches nothing and is answered from the
current state; a REST command is ordered by the time it took the lease."""

from __future__ import annotations

import pytest

from rtm_core.domain.errors import Conflict, NotFound
from rtm_core.domain.ordering import GameFence
from rtm_core.lifecycle import Lifecycle
from unit.fakes import EPOCH, Fakes
from unit.helpers import ADMIN, GAME, LOBBY, V100, V101

#: Stream entry ids around the fake clock's start (the lease's order ids use it).
T0 = int(EPOCH.timestamp() * 1000)


def job(offset_ms: int, seq: int = 0) -> str:
    return f"{T0 + offset_ms}-{seq}"


async def test_a_start_redelivered_after_a_newer_stop_is_superseded(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    await lifecycle.start(GAME, V100, LOBBY, job_id=job(-10))
    await lifecycle.stop(GAME, "finished", LOBBY, job_id=job(-5))
    record, journal = fakes.record(GAME), list(fakes.journal)

    with pytest.raises(Conflict) as raised:
        await lifecycle.start(GAME, V100, LOBBY, job_id=job(-10))

    assert job(-5) in raised.value.message
    assert fakes.record(GAME) == record and fakes.journal == journal
    row = fakes.rows(GAME)[-1]
    assert (row.op_kind, row.outcome, row.error_code) == ("start", "failure", "conflict")
    assert row.error_message is not None and job(-5) in row.error_message
    # A superseded start is not a first-touch failure: nobody is paged.
    assert fakes.publisher.notification_intents == []


@pytest.mark.parametrize("kind", ["start", "stop"])
async def test_a_superseded_job_already_in_effect_is_a_replay_that_touches_nothing(
    lifecycle: Lifecycle, fakes: Fakes, kind: str
) -> None:
    await lifecycle.start(GAME, V100, LOBBY, job_id=job(-9))
    if kind == "stop":
        await lifecycle.stop(GAME, "finished", LOBBY, job_id=job(-5))
    record = fakes.record(GAME)
    fakes.clock.advance(minutes=1)

    if kind == "start":
        replay = await lifecycle.start(GAME, V100, LOBBY, job_id=job(-20))
    else:
        replay = await lifecycle.stop(GAME, "finished", LOBBY, job_id=job(-7))

    assert replay.replay and replay.error_code == "replay_no_op"
    assert fakes.record(GAME) == record  # not even last_op_at moves
    row = fakes.rows(GAME)[-1]
    assert (row.op_kind, row.outcome, row.error_code) == (kind, "success", "replay_no_op")
    fence = fakes.repos.fences[GAME]
    assert fence.last_job_id == (job(-9) if kind == "start" else job(-5))


async def test_a_superseded_stop_of_a_running_game_is_a_conflict(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    await lifecycle.start(GAME, V100, LOBBY, job_id=job(-5))
    with pytest.raises(Conflict, match="superseded"):
        await lifecycle.stop(GAME, "finished", LOBBY, job_id=job(-6))
    record = fakes.record(GAME)
    assert record is not None and record.status == "running"
    assert not [e for e in fakes.journal if e.startswith("stop")]


async def test_a_superseded_stop_of_a_game_with_no_record_is_not_found(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    fakes.repos.fences[GAME] = GameFence(3, job(-1))
    with pytest.raises(NotFound):
        await lifecycle.stop(GAME, "finished", LOBBY, job_id=job(-2))


async def test_the_same_job_delivered_twice_runs_idempotently(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    first = await lifecycle.start(GAME, V100, LOBBY, job_id=job(-1, 3))
    again = await lifecycle.start(GAME, V100, LOBBY, job_id=job(-1, 3))
    assert not first.replay and again.replay
    assert first.record is not None and again.record is not None
    assert again.record.current_container_id == first.record.current_container_id


async def test_a_rest_command_is_ordered_by_when_it_took_the_lease(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    """An admin stop after a Lobby start wins over a later re-delivery of that start."""
    await lifecycle.start(GAME, V100, LOBBY, job_id=job(-1))
    await lifecycle.stop(GAME, "admin_request", ADMIN)  # ordered at T0
    assert fakes.repos.fences[GAME].last_job_id == job(0)

    with pytest.raises(Conflict):
        await lifecycle.start(GAME, V100, LOBBY, job_id=job(-1))
    newer = await lifecycle.start(GAME, V100, LOBBY, job_id=job(1))
    assert newer.record is not None and newer.record.status == "running"


async def test_a_failed_job_does_not_move_the_order(lifecycle: Lifecycle, fakes: Fakes) -> None:
    await lifecycle.start(GAME, V100, LOBBY, job_id=job(-10))
    with pytest.raises(Conflict):  # another image while running: refused, not applied
        await lifecycle.start(GAME, V101, LOBBY, job_id=job(-1))
    stopped = await lifecycle.stop(GAME, "finished", LOBBY, job_id=job(-5))
    assert stopped.record is not None and stopped.record.status == "stopped"


async def test_reconcile_drifts_do_not_move_the_order(lifecycle: Lifecycle, fakes: Fakes) -> None:
    started = await lifecycle.start(GAME, V100, LOBBY, job_id=job(-3))
    assert started.record is not None and started.record.current_container_id
    fakes.engine.vanish(started.record.current_container_id)
    fakes.clock.advance(minutes=5)
    assert await lifecycle.reconcile_dispose(GAME)
    assert fakes.repos.fences[GAME].last_job_id == job(-3)
