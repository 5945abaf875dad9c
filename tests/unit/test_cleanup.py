"""Cleanup (SPEC §6) and retention cleanup (SPEC §8): remove a stopped engine's container."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rtm_core.domain.errors import Conflict, NotFound, OperationInProgress
from rtm_core.domain.vocabulary import OpSource
from rtm_core.lifecycle import Lifecycle
from unit.fakes import Fakes
from unit.helpers import ADMIN, GAME, GM, V100, row_of

RETENTION = OpSource.CLEANUP_WORKER


async def _stopped(lifecycle: Lifecycle) -> str:
    started = await lifecycle.start(GAME, V100, GM)
    assert started.record is not None and started.record.current_container_id
    await lifecycle.stop(GAME, "finished", GM)
    return started.record.current_container_id


async def test_cleanup_of_a_running_engine_is_a_conflict(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    started = await lifecycle.start(GAME, V100, GM)
    assert started.record is not None
    with pytest.raises(Conflict, match="stop it first"):
        await lifecycle.cleanup(GAME, ADMIN)
    assert fakes.record(GAME) == started.record
    assert fakes.engine.containers[started.record.current_container_id or ""].running
    assert row_of(fakes.rows(GAME)[-1]) == {
        "game_id": GAME,
        "op_kind": "cleanup_container",
        "op_source": "admin_rest",
        "outcome": "failure",
        "error_code": "conflict",
        "image_ref": V100,
        "previous_image_ref": None,
        "container_id": started.record.current_container_id,
    }


async def test_cleanup_removes_the_container_and_keeps_the_state_dir(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    container_id = await _stopped(lifecycle)
    fakes.clock.advance(hours=1)

    cleaned = await lifecycle.cleanup(GAME, ADMIN)
    assert cleaned.record is not None and not cleaned.replay
    record = fakes.record(GAME)
    assert record is not None and record == cleaned.record
    assert record.status == "removed"
    assert record.removed_at == record.last_op_at == fakes.clock.now
    assert container_id not in fakes.engine.containers
    assert container_id in fakes.exits.marked
    assert (fakes.settings.game_state_root / GAME).is_dir()
    assert row_of(fakes.rows(GAME)[-1]) == {
        "game_id": GAME,
        "op_kind": "cleanup_container",
        "op_source": "admin_rest",
        "outcome": "success",
        "error_code": None,
        "image_ref": V100,
        "previous_image_ref": None,
        "container_id": container_id,
    }


async def test_cleanup_of_a_removed_runtime_is_a_replay(lifecycle: Lifecycle, fakes: Fakes) -> None:
    await _stopped(lifecycle)
    await lifecycle.cleanup(GAME, ADMIN)
    journal = list(fakes.journal)
    again = await lifecycle.cleanup(GAME, ADMIN)
    assert again.replay and again.error_code == "replay_no_op"
    assert fakes.journal == journal
    last = fakes.rows(GAME)[-1]
    assert (last.op_kind, last.outcome, last.error_code) == (
        "cleanup_container",
        "success",
        "replay_no_op",
    )


async def test_cleanup_of_an_unknown_game_is_not_found(lifecycle: Lifecycle, fakes: Fakes) -> None:
    with pytest.raises(NotFound):
        await lifecycle.cleanup(GAME, ADMIN)
    (row,) = fakes.rows(GAME)
    assert (row.op_kind, row.outcome, row.error_code) == (
        "cleanup_container",
        "failure",
        "not_found",
    )


async def test_retention_cleanup_removes_a_container_stopped_long_enough(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    container_id = await _stopped(lifecycle)
    fakes.clock.advance(days=31)
    cutoff = fakes.clock.now - timedelta(days=fakes.settings.container_retention_days)
    (due,) = await fakes.repos.stopped_before(cutoff)

    cleaned = await lifecycle.cleanup(due.game_id, RETENTION, stopped_before=cutoff)
    assert cleaned.record is not None and cleaned.record.status == "removed"
    assert container_id not in fakes.engine.containers
    last = fakes.rows(GAME)[-1]
    assert (last.op_kind, last.op_source, last.outcome) == (
        "cleanup_container",
        "cleanup_worker",
        "success",
    )


@pytest.mark.parametrize("meanwhile", ["too_young", "restarted"])
async def test_retention_cleanup_skips_a_runtime_that_is_no_longer_due(
    lifecycle: Lifecycle, fakes: Fakes, meanwhile: str
) -> None:
    """Age is re-checked under the lease: a runtime restarted or re-stopped since the
    listing is skipped with no row and no Docker call."""
    await _stopped(lifecycle)
    record = fakes.record(GAME)
    assert record is not None and record.stopped_at is not None
    cutoff = record.stopped_at  # stopped exactly at the cutoff: not older than it
    if meanwhile == "restarted":
        cutoff += timedelta(days=1)
        await lifecycle.restart(GAME, GM)
    rows, journal = fakes.rows(GAME), list(fakes.journal)

    skipped = await lifecycle.cleanup(GAME, RETENTION, stopped_before=cutoff)
    assert skipped.record is None and not skipped.replay
    assert fakes.rows(GAME) == rows and fakes.journal == journal
    assert fakes.record(GAME) is not None


async def test_retention_cleanup_skips_a_busy_game_without_a_row(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    await _stopped(lifecycle)
    rows = fakes.rows(GAME)
    fakes.leases.occupy(GAME)
    with pytest.raises(OperationInProgress):
        await lifecycle.cleanup(GAME, RETENTION, stopped_before=fakes.clock.now + timedelta(1))
    assert fakes.rows(GAME) == rows
