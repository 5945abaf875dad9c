"""Stop (SPEC §6): the reasons, the replay, and the exit announced before it happens."""

from __future__ import annotations

import pytest

from rtm_core.domain.errors import InvalidRequest, NotFound
from rtm_core.domain.vocabulary import StopReason
from rtm_core.lifecycle import Lifecycle
from unit.fakes import EPOCH, Fakes
from unit.helpers import ADMIN, BAD_GAME_IDS, GAME, GM, LOBBY, V100, row_of


@pytest.mark.parametrize("reason", [r.value for r in StopReason])
async def test_stop_ends_the_engine_and_keeps_its_container(
    lifecycle: Lifecycle, fakes: Fakes, reason: str
) -> None:
    started = await lifecycle.start(GAME, V100, GM)
    assert started.record is not None and started.record.current_container_id
    container_id = started.record.current_container_id
    fakes.clock.advance(minutes=3)

    stopped = await lifecycle.stop(GAME, reason, LOBBY)
    assert not stopped.replay and stopped.record is not None
    record = fakes.record(GAME)
    assert record is not None and record == stopped.record
    assert record.status == "stopped"
    assert record.stopped_at == record.last_op_at == fakes.clock.now
    assert record.started_at == EPOCH and record.removed_at is None
    assert record.current_container_id == container_id and record.current_image_ref == V100

    container = fakes.engine.containers[container_id]
    assert container.state == "exited"  # stopped, not removed
    assert fakes.engine.stop_timeouts == [fakes.settings.container_stop_timeout_seconds]
    # The watcher must know the exit is RTM's own before the engine dies.
    assert fakes.journal.index(f"mark {container_id}") < fakes.journal.index(f"stop {container_id}")
    assert f"remove {container_id}" not in fakes.journal

    assert row_of(fakes.rows(GAME)[-1]) == {
        "game_id": GAME,
        "op_kind": "stop",
        "op_source": "lobby_stream",
        "outcome": "success",
        "error_code": None,
        "image_ref": V100,
        "previous_image_ref": None,
        "container_id": container_id,
    }
    # A stop RTM asked for is not a health event.
    assert [e.event_type.value for e in fakes.publisher.health_events] == ["container_started"]


async def test_an_unknown_reason_is_invalid_request_and_nothing_is_written(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    await lifecycle.start(GAME, V100, GM)
    with pytest.raises(InvalidRequest, match="reason must be one of"):
        await lifecycle.stop(GAME, "bored", GM)
    record = fakes.record(GAME)
    assert record is not None and record.status == "running"
    assert [r.op_kind for r in fakes.rows(GAME)] == ["start"]
    assert not [e for e in fakes.journal if e.startswith(("mark", "stop"))]


async def test_stopping_an_unknown_game_is_not_found(lifecycle: Lifecycle, fakes: Fakes) -> None:
    with pytest.raises(NotFound):
        await lifecycle.stop(GAME, "finished", ADMIN)
    (row,) = fakes.rows(GAME)
    assert row_of(row) == {
        "game_id": GAME,
        "op_kind": "stop",
        "op_source": "admin_rest",
        "outcome": "failure",
        "error_code": "not_found",
        "image_ref": None,
        "previous_image_ref": None,
        "container_id": None,
    }
    assert fakes.record(GAME) is None


async def test_stopping_a_stopped_game_is_a_replay(lifecycle: Lifecycle, fakes: Fakes) -> None:
    await lifecycle.start(GAME, V100, GM)
    first = await lifecycle.stop(GAME, "finished", GM)
    assert first.record is not None
    journal_after_first = list(fakes.journal)
    fakes.clock.advance(seconds=30)

    again = await lifecycle.stop(GAME, "cancelled", GM)
    assert again.replay and again.error_code == "replay_no_op"
    record = fakes.record(GAME)
    assert record is not None and record.status == "stopped"
    assert record.stopped_at == first.record.stopped_at  # the first stop's time stands
    assert record.last_op_at == fakes.clock.now
    assert fakes.journal == journal_after_first  # the engine was not touched again
    assert [(r.op_kind, r.outcome, r.error_code) for r in fakes.rows(GAME)] == [
        ("start", "success", None),
        ("stop", "success", None),
        ("stop", "success", "replay_no_op"),
    ]


@pytest.mark.parametrize("bad", BAD_GAME_IDS)
async def test_an_invalid_game_id_is_invalid_request_everywhere_but_start(
    lifecycle: Lifecycle, fakes: Fakes, bad: str
) -> None:
    for call in (
        lifecycle.stop(bad, "finished", GM),
        lifecycle.restart(bad, GM),
        lifecycle.patch(bad, V100, GM),
        lifecycle.cleanup(bad, GM),
    ):
        with pytest.raises(InvalidRequest, match="game_id"):
            await call
    assert fakes.repos.op_log == [] and fakes.leases.granted == []
    assert fakes.journal == []
