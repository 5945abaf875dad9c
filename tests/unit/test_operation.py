"""The frame every operation runs in: exactly one row, failures included, with
the SPEC's code for what went wrong; the lease released; the fence honoured."""

from __future__ import annotations

import pytest

from rtm_core.domain.errors import (
    DockerUnavailable,
    InternalError,
    OperationInProgress,
    RtmError,
    ServiceUnavailable,
)
from rtm_core.domain.ordering import GameFence
from rtm_core.lifecycle import Lifecycle
from unit.fakes import Fakes
from unit.helpers import GAME, GM, V100, V101, row_of


async def test_docker_unavailable_mid_start_leaves_one_failure_row(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    fakes.engine.down = True
    with pytest.raises(DockerUnavailable):
        await lifecycle.start(GAME, V100, GM)
    (row,) = fakes.rows(GAME)
    assert row_of(row) == {
        "game_id": GAME,
        "op_kind": "start",
        "op_source": "gm_rest",
        "outcome": "failure",
        "error_code": "docker_unavailable",
        "image_ref": V100,
        "previous_image_ref": None,
        "container_id": None,
    }
    assert row.error_message and "Docker daemon" in row.error_message
    assert row.finished_at >= row.started_at
    assert fakes.record(GAME) is None
    assert fakes.publisher.notification_intents == []  # not a first-touch config failure
    assert fakes.leases.holders == {}
    assert (
        fakes.counter(
            "operations", op_kind="start", outcome="failure", error_code="docker_unavailable"
        )
        == 1
    )


@pytest.mark.parametrize("op", ["create", "stop", "remove"])
async def test_docker_unavailable_mid_replacement_leaves_the_record_as_it_was(
    lifecycle: Lifecycle, fakes: Fakes, op: str
) -> None:
    await lifecycle.start(GAME, V100, GM)
    before = fakes.record(GAME)
    fakes.engine.fail(op, DockerUnavailable(f"docker {op}: connection reset"))
    with pytest.raises(DockerUnavailable):
        await lifecycle.patch(GAME, V101, GM)
    assert fakes.record(GAME) == before
    row = fakes.rows(GAME)[-1]
    assert (row.op_kind, row.outcome, row.error_code, row.error_message) == (
        "patch",
        "failure",
        "docker_unavailable",
        f"docker {op}: connection reset",
    )
    assert (row.image_ref, row.previous_image_ref) == (V101, V100)
    assert fakes.leases.holders == {}


async def test_docker_unavailable_mid_stop(lifecycle: Lifecycle, fakes: Fakes) -> None:
    await lifecycle.start(GAME, V100, GM)
    fakes.engine.down = True
    with pytest.raises(DockerUnavailable):
        await lifecycle.stop(GAME, "finished", GM)
    record = fakes.record(GAME)
    assert record is not None and record.status == "running"
    row = fakes.rows(GAME)[-1]
    assert (row.op_kind, row.outcome, row.error_code) == ("stop", "failure", "docker_unavailable")


async def test_an_unexpected_exception_is_an_internal_error_row(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    await lifecycle.start(GAME, V100, GM)
    boom = RuntimeError("boom")
    fakes.engine.fail("inspect", boom)  # the replay check's liveness inspect
    with pytest.raises(InternalError) as raised:
        await lifecycle.start(GAME, V100, GM)
    error = raised.value
    assert isinstance(error, RtmError)
    assert (error.code, error.http_status, error.message) == ("internal_error", 500, "boom")
    assert error.__cause__ is boom
    row = fakes.rows(GAME)[-1]
    assert (row.op_kind, row.outcome, row.error_code, row.error_message) == (
        "start",
        "failure",
        "internal_error",
        "boom",
    )
    assert fakes.publisher.notification_intents == []
    assert fakes.leases.holders == {}


@pytest.mark.parametrize(
    ("failure", "error", "code"),
    [
        # What the PostgreSQL adapter raises when the server goes away mid-commit.
        (
            ServiceUnavailable("postgres unavailable: server closed the connection"),
            ServiceUnavailable,
            "service_unavailable",
        ),
        # Anything the adapter does not map is a bug, recorded as internal_error.
        (RuntimeError("server closed the connection"), InternalError, "internal_error"),
    ],
)
async def test_a_failed_commit_writes_no_record_but_still_one_failure_row(
    lifecycle: Lifecycle, fakes: Fakes, failure: Exception, error: type[RtmError], code: str
) -> None:
    fakes.repos.commit_failures.append(failure)
    with pytest.raises(error, match="server closed"):
        await lifecycle.start(GAME, V100, GM)
    assert fakes.record(GAME) is None
    (row,) = fakes.rows(GAME)
    assert (row.outcome, row.error_code) == ("failure", code)
    # Nothing was committed, so nothing is announced.
    assert fakes.publisher.health_events == []


async def test_every_operation_leaves_exactly_one_row(lifecycle: Lifecycle, fakes: Fakes) -> None:
    await lifecycle.start(GAME, V100, GM)
    await lifecycle.start(GAME, V100, GM)
    await lifecycle.restart(GAME, GM)
    await lifecycle.patch(GAME, V101, GM)
    await lifecycle.stop(GAME, "finished", GM)
    await lifecycle.stop(GAME, "finished", GM)
    await lifecycle.cleanup(GAME, GM)
    await lifecycle.cleanup(GAME, GM)
    rows = fakes.rows(GAME)
    assert [(r.op_kind, r.error_code) for r in rows] == [
        ("start", None),
        ("start", "replay_no_op"),
        ("restart", None),
        ("patch", None),
        ("stop", None),
        ("stop", "replay_no_op"),
        ("cleanup_container", None),
        ("cleanup_container", "replay_no_op"),
    ]
    assert len({r.id for r in rows}) == len(rows)
    newest_first = await fakes.repos.operations(GAME, limit=3)
    assert [r.id for r in newest_first] == [r.id for r in reversed(rows)][:3]
    assert fakes.leases.holders == {}


async def test_a_holder_that_lost_its_lease_touches_the_engine_no_more(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    """The lease expired (a long pause) and a newer holder took the game between the
    image lookup and the create: the old holder creates nothing and writes no record."""
    fakes.engine.before("inspect", lambda: fakes.leases.steal(GAME))
    with pytest.raises(OperationInProgress, match="lost"):
        await lifecycle.start(GAME, V100, GM)
    assert fakes.engine.containers == {}
    assert fakes.record(GAME) is None
    (row,) = fakes.rows(GAME)
    assert (row.outcome, row.error_code) == ("failure", "operation_in_progress")
    assert fakes.leases.holders == {GAME: "newer-holder"}  # not released by the loser


async def test_a_commit_under_an_older_fence_than_the_stored_one_is_refused(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    await lifecycle.start(GAME, V100, GM)
    before = fakes.record(GAME)
    stored = fakes.repos.fences[GAME]

    def newer_holder_writes() -> None:
        fakes.repos.fences[GAME] = GameFence(stored.fence + 5, "9999999999999-0")

    fakes.engine.before("stop", newer_holder_writes)
    with pytest.raises(OperationInProgress):
        await lifecycle.stop(GAME, "finished", GM)
    assert fakes.record(GAME) == before
    row = fakes.rows(GAME)[-1]
    assert (row.op_kind, row.outcome, row.error_code) == (
        "stop",
        "failure",
        "operation_in_progress",
    )


async def test_each_write_advances_the_fence_past_the_stored_one(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    """A fence counter lost with Redis restarts at 1; the stored fence still wins."""
    fakes.repos.fences[GAME] = GameFence(41, None)
    await lifecycle.start(GAME, V100, GM)
    assert fakes.repos.fences[GAME].fence == 42
    await lifecycle.stop(GAME, "finished", GM)
    assert fakes.repos.fences[GAME].fence == 43
