"""Restart and patch (SPEC §6): a new container with the same endpoint and state."""

from __future__ import annotations

import json

import pytest

from rtm_core.domain.errors import (
    Conflict,
    ContainerStartFailed,
    ImageRefNotSemver,
    NotFound,
    RtmError,
    SemverPatchOnly,
    StartConfigInvalid,
)
from rtm_core.lifecycle import Lifecycle
from unit.fakes import Fakes
from unit.helpers import ADMIN, GAME, GM, LATEST, V100, V101, V110, V200, row_of


async def _start(lifecycle: Lifecycle, image_ref: str = V100) -> str:
    result = await lifecycle.start(GAME, image_ref, GM)
    assert result.record is not None and result.record.current_container_id
    return result.record.current_container_id


@pytest.mark.parametrize("from_status", ["running", "stopped"])
async def test_restart_recreates_with_the_same_image_endpoint_and_state(
    lifecycle: Lifecycle, fakes: Fakes, from_status: str
) -> None:
    old = await _start(lifecycle)
    if from_status == "stopped":
        await lifecycle.stop(GAME, "admin_request", GM)
    before = fakes.record(GAME)
    assert before is not None
    fakes.clock.advance(minutes=1)

    result = await lifecycle.restart(GAME, ADMIN)
    assert result.record is not None and not result.replay
    new = result.record.current_container_id
    assert new and new != old
    record = fakes.record(GAME)
    assert record is not None and record == result.record
    assert record.status == "running" and record.current_image_ref == V100
    assert (record.engine_endpoint, record.state_path) == (
        before.engine_endpoint,
        before.state_path,
    )
    assert record.started_at == record.last_op_at == fakes.clock.now
    assert record.stopped_at is None and record.created_at == before.created_at

    assert [c.id for c in fakes.engine.owned(GAME)] == [new]
    assert fakes.journal.index(f"mark {old}") < fakes.journal.index(f"stop {old}")
    assert fakes.journal.index(f"remove {old}") < fakes.journal.index(f"start {new}")
    assert row_of(fakes.rows(GAME)[-1]) == {
        "game_id": GAME,
        "op_kind": "restart",
        "op_source": "admin_rest",
        "outcome": "success",
        "error_code": None,
        "image_ref": V100,
        "previous_image_ref": V100,
        "container_id": new,
    }
    event = fakes.publisher.health_events[-1]
    assert (event.event_type.value, event.container_id) == ("container_started", new)


async def test_restarting_an_unknown_game_is_not_found(lifecycle: Lifecycle, fakes: Fakes) -> None:
    with pytest.raises(NotFound):
        await lifecycle.restart(GAME, GM)
    (row,) = fakes.rows(GAME)
    assert (row.op_kind, row.outcome, row.error_code) == ("restart", "failure", "not_found")


async def test_restarting_a_removed_game_is_a_conflict(lifecycle: Lifecycle, fakes: Fakes) -> None:
    await _start(lifecycle)
    await lifecycle.stop(GAME, "finished", GM)
    await lifecycle.cleanup(GAME, GM)
    journal = list(fakes.journal)
    with pytest.raises(Conflict, match="start it instead"):
        await lifecycle.restart(GAME, GM)
    assert fakes.journal == journal
    row = fakes.rows(GAME)[-1]
    assert (row.op_kind, row.outcome, row.error_code) == ("restart", "failure", "conflict")
    record = fakes.record(GAME)
    assert record is not None and record.status == "removed"


async def test_a_failed_restart_is_recorded_but_pages_nobody(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    """Only a start's first-touch failures notify an admin."""
    await _start(lifecycle)
    fakes.engine.fail("start", ContainerStartFailed("start failed: no space left on device"))
    with pytest.raises(ContainerStartFailed):
        await lifecycle.restart(GAME, GM)
    row = fakes.rows(GAME)[-1]
    assert (row.op_kind, row.outcome, row.error_code) == (
        "restart",
        "failure",
        "container_start_failed",
    )
    assert fakes.publisher.notification_intents == []


@pytest.mark.parametrize(
    ("current", "target"),
    [(V100, V101), ("galaxy/test-engine:v1.0.0", "galaxy/test-engine:v1.0.7")],
)
async def test_patch_replaces_the_engine_and_logs_both_images(
    lifecycle: Lifecycle, fakes: Fakes, current: str, target: str
) -> None:
    fakes.engine.add_image(current)
    fakes.engine.add_image(target)
    old = await _start(lifecycle, current)
    before = fakes.record(GAME)
    assert before is not None

    result = await lifecycle.patch(GAME, target, ADMIN)
    assert result.record is not None
    new = result.record.current_container_id
    assert new and new != old
    record = fakes.record(GAME)
    assert record is not None and record.status == "running"
    assert record.current_image_ref == target
    assert (record.engine_endpoint, record.state_path) == (
        before.engine_endpoint,
        before.state_path,
    )
    (container,) = fakes.engine.owned(GAME)
    assert container.id == new and container.image_ref == target
    assert old in fakes.exits.marked and old not in fakes.engine.containers

    assert row_of(fakes.rows(GAME)[-1]) == {
        "game_id": GAME,
        "op_kind": "patch",
        "op_source": "admin_rest",
        "outcome": "success",
        "error_code": None,
        "image_ref": target,
        "previous_image_ref": current,
        "container_id": new,
    }
    event = fakes.publisher.health_events[-1]
    assert event.container_id == new
    assert json.loads(event.fields()["details"]) == {"image_ref": target}


async def test_patch_works_from_stopped(lifecycle: Lifecycle, fakes: Fakes) -> None:
    await _start(lifecycle)
    await lifecycle.stop(GAME, "finished", GM)
    result = await lifecycle.patch(GAME, V101, GM)
    assert result.record is not None
    assert (result.record.status, result.record.current_image_ref) == ("running", V101)


@pytest.mark.parametrize(
    ("current", "target", "error"),
    [
        (V100, LATEST, ImageRefNotSemver),
        (LATEST, V101, ImageRefNotSemver),
        (V100, V110, SemverPatchOnly),
        (V100, V200, SemverPatchOnly),
        (V100, "Not A Ref", StartConfigInvalid),
    ],
)
async def test_a_refused_patch_touches_nothing(
    lifecycle: Lifecycle, fakes: Fakes, current: str, target: str, error: type[RtmError]
) -> None:
    old = await _start(lifecycle, current)
    before = fakes.record(GAME)
    journal = list(fakes.journal)

    with pytest.raises(error):
        await lifecycle.patch(GAME, target, GM)
    assert fakes.record(GAME) == before
    assert fakes.journal == journal
    (container,) = fakes.engine.owned(GAME)
    assert container.id == old and container.running
    row = fakes.rows(GAME)[-1]
    assert row_of(row) == {
        "game_id": GAME,
        "op_kind": "patch",
        "op_source": "gm_rest",
        "outcome": "failure",
        "error_code": error.code,
        "image_ref": target,
        "previous_image_ref": current if error is not StartConfigInvalid else None,
        "container_id": None,
    }
    assert fakes.publisher.notification_intents == []


@pytest.mark.parametrize(("setup", "error"), [("none", NotFound), ("removed", Conflict)])
async def test_patch_needs_a_runtime_that_was_not_removed(
    lifecycle: Lifecycle, fakes: Fakes, setup: str, error: type[RtmError]
) -> None:
    if setup == "removed":
        await _start(lifecycle)
        await lifecycle.stop(GAME, "finished", GM)
        await lifecycle.cleanup(GAME, GM)
    with pytest.raises(error):
        await lifecycle.patch(GAME, V101, GM)
    row = fakes.rows(GAME)[-1]
    assert (row.op_kind, row.outcome, row.error_code, row.image_ref) == (
        "patch",
        "failure",
        error.code,
        V101,
    )
