"""Reconcile drifts (SPEC §8): records brought back in line with what the engine
backend shows, each under the game's lease, and never a container touched."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest

from rtm_core.domain.engine import parse_docker_time
from rtm_core.domain.errors import OperationInProgress, ServiceUnavailable
from rtm_core.domain.ordering import GameFence
from rtm_core.domain.vocabulary import OpKind
from rtm_core.lifecycle import Drift, DriftOutcome, Lifecycle
from unit.fakes import EPOCH, Fakes
from unit.helpers import GAME, GM, V100, row_of


async def _running(lifecycle: Lifecycle) -> str:
    started = await lifecycle.start(GAME, V100, GM)
    assert started.record is not None and started.record.current_container_id
    return started.record.current_container_id


def _touching(fakes: Fakes) -> list[str]:
    return [e for e in fakes.journal if e.startswith(("create", "stop", "remove", "mark"))]


async def test_dispose_a_running_record_whose_container_is_gone(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    container_id = await _running(lifecycle)
    fakes.engine.vanish(container_id)
    fakes.clock.advance(minutes=5)

    assert await lifecycle.reconcile_dispose(GAME)
    record = fakes.record(GAME)
    assert record is not None and record.status == "removed"
    assert record.removed_at == record.last_op_at == fakes.clock.now
    assert row_of(fakes.rows(GAME)[-1]) == {
        "game_id": GAME,
        "op_kind": "reconcile_dispose",
        "op_source": "reconciler",
        "outcome": "success",
        "error_code": None,
        "image_ref": V100,
        "previous_image_ref": None,
        "container_id": container_id,
    }
    event = fakes.publisher.health_events[-1]
    assert event.fields() == {
        "game_id": GAME,
        "container_id": container_id,
        "event_type": "container_disappeared",
        "occurred_at_ms": str(event.occurred_at_ms),
        "details": "{}",
        "traceparent": "",
    }
    snapshot = await fakes.repos.get_snapshot(GAME)
    assert snapshot is not None and snapshot.status == "container_disappeared"
    assert fakes.counter("reconcile_drift", kind="dispose") == 1


@pytest.mark.parametrize("state", ["running", "exited"])
async def test_dispose_leaves_a_record_whose_container_exists(
    lifecycle: Lifecycle, fakes: Fakes, state: str
) -> None:
    container_id = await _running(lifecycle)
    if state == "exited":
        fakes.engine.exit(container_id)
    rows = fakes.rows(GAME)
    assert not await lifecycle.reconcile_dispose(GAME)
    assert fakes.rows(GAME) == rows
    record = fakes.record(GAME)
    assert record is not None and record.status == "running"
    assert fakes.counter("reconcile_drift", kind="dispose") == 0


async def test_dispose_ignores_a_record_that_is_not_running(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    container_id = await _running(lifecycle)
    await lifecycle.stop(GAME, "finished", GM)
    fakes.engine.vanish(container_id)
    assert not await lifecycle.reconcile_dispose(GAME)
    assert not await lifecycle.reconcile_dispose("never-seen")
    assert [r.op_kind for r in fakes.rows(GAME)] == ["start", "stop"]
    assert fakes.rows("never-seen") == []


async def test_observed_exited_marks_a_running_record_stopped(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    container_id = await _running(lifecycle)
    fakes.clock.advance(minutes=2)
    exited = fakes.engine.exit(container_id, 3)
    fakes.clock.advance(minutes=1)
    events = len(fakes.publisher.health_events)

    assert await lifecycle.reconcile_observed_exited(GAME)
    record = fakes.record(GAME)
    assert record is not None and record.status == "stopped"
    assert (
        record.stopped_at == parse_docker_time(exited.finished_at) == EPOCH + timedelta(minutes=2)
    )
    assert record.last_op_at == fakes.clock.now
    assert record.current_container_id == container_id
    assert row_of(fakes.rows(GAME)[-1]) == {
        "game_id": GAME,
        "op_kind": "reconcile_observed_exited",
        "op_source": "reconciler",
        "outcome": "success",
        "error_code": None,
        "image_ref": V100,
        "previous_image_ref": None,
        "container_id": container_id,
    }
    assert len(fakes.publisher.health_events) == events  # the watcher reports exits
    assert _touching(fakes) == [f"create galaxy-game-{GAME}"]
    assert fakes.counter("reconcile_drift", kind="observed_exited") == 1


async def test_observed_exited_leaves_a_live_or_vanished_container_alone(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    container_id = await _running(lifecycle)
    assert not await lifecycle.reconcile_observed_exited(GAME)
    fakes.engine.vanish(container_id)
    assert not await lifecycle.reconcile_observed_exited(GAME)  # that is dispose's drift
    assert [r.op_kind for r in fakes.rows(GAME)] == ["start"]


@pytest.mark.parametrize(("state", "status"), [("running", "running"), ("exited", "stopped")])
async def test_adopt_a_container_of_ours_with_no_record(
    lifecycle: Lifecycle, fakes: Fakes, state: str, status: str
) -> None:
    container = fakes.engine.add_container(GAME, V100, state=state)
    fakes.clock.advance(minutes=10)

    assert await lifecycle.reconcile_adopt(container)
    record = fakes.record(GAME)
    assert record is not None
    assert record.status == status
    assert (record.current_container_id, record.current_image_ref) == (container.id, V100)
    assert record.engine_endpoint == f"http://galaxy-game-{GAME}:8080"
    assert record.state_path == str(fakes.settings.game_state_root / GAME)
    assert record.docker_network == "unit-net"
    assert record.started_at == EPOCH  # the container's own start time
    assert record.stopped_at == (None if state == "running" else EPOCH)
    assert record.last_op_at == fakes.clock.now
    assert row_of(fakes.rows(GAME)[-1]) == {
        "game_id": GAME,
        "op_kind": "reconcile_adopt",
        "op_source": "reconciler",
        "outcome": "success",
        "error_code": None,
        "image_ref": V100,
        "previous_image_ref": None,
        "container_id": container.id,
    }
    assert _touching(fakes) == []  # adoption never stops, removes or recreates
    assert fakes.counter("reconcile_drift", kind="adopt") == 1


async def test_adopt_over_a_removed_record_keeps_its_creation_time(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    await _running(lifecycle)
    await lifecycle.stop(GAME, "finished", GM)
    await lifecycle.cleanup(GAME, GM)
    fakes.clock.advance(days=1)
    container = fakes.engine.add_container(GAME, V100)

    assert await lifecycle.reconcile_adopt(container)
    record = fakes.record(GAME)
    assert record is not None and record.status == "running"
    assert record.created_at == EPOCH


async def test_adopt_leaves_a_game_with_a_live_record_alone(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    await _running(lifecycle)
    stray = fakes.engine.add_container(GAME, V100, name="galaxy-game-g-1-copy")
    assert not await lifecycle.reconcile_adopt(stray)
    assert [r.op_kind for r in fakes.rows(GAME)] == ["start"]
    assert stray.id in fakes.engine.containers


async def test_adopt_skips_a_container_that_vanished_meanwhile(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    container = fakes.engine.add_container(GAME, V100)
    fakes.engine.vanish(container.id)
    assert not await lifecycle.reconcile_adopt(container)
    assert fakes.record(GAME) is None and fakes.rows(GAME) == []


@pytest.mark.parametrize("label", ["../../etc", "", "a b", "-x"])
async def test_adopt_leaves_a_container_with_an_invalid_game_id_label_alone(
    lifecycle: Lifecycle, fakes: Fakes, label: str
) -> None:
    container = fakes.engine.add_container(label, V100, name="galaxy-game-odd")
    assert not await lifecycle.reconcile_adopt(container)
    assert fakes.repos.records == {} and fakes.repos.op_log == []
    assert fakes.leases.granted == [] and _touching(fakes) == []
    assert list(fakes.settings.game_state_root.iterdir()) == []
    assert fakes.engine.containers == {container.id: container}


async def test_a_busy_game_is_skipped_without_a_row(lifecycle: Lifecycle, fakes: Fakes) -> None:
    """A drift check never waits for, nor logs against, an operation in flight."""
    container_id = await _running(lifecycle)
    fakes.engine.vanish(container_id)
    stray = fakes.engine.add_container("g-2", V100)
    fakes.leases.occupy(GAME)
    fakes.leases.occupy("g-2")

    for drift in (
        lifecycle.reconcile_dispose(GAME),
        lifecycle.reconcile_observed_exited(GAME),
        lifecycle.reconcile_adopt(stray),
    ):
        with pytest.raises(OperationInProgress):
            await drift
    assert [r.op_kind for r in fakes.rows(GAME)] == ["start"]
    assert fakes.rows("g-2") == [] and fakes.record("g-2") is None
    record = fakes.record(GAME)
    assert record is not None and record.status == "running"


# reconcile_many: the same drifts, many games in one batch ---------------------


async def _started(lifecycle: Lifecycle, game_id: str) -> str:
    started = await lifecycle.start(game_id, V100, GM)
    assert started.record is not None and started.record.current_container_id
    return started.record.current_container_id


async def test_a_batch_writes_what_the_per_game_calls_write(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    """Dispose, observed_exited and adopt in one batch: the same records, rows,
    event and drift counts as one call per game."""
    gone, exited, adopted = "batch-gone", "batch-exited", "batch-adopted"
    gone_id = await _started(lifecycle, gone)
    exited_id = await _started(lifecycle, exited)
    fakes.engine.vanish(gone_id)
    fakes.engine.exit(exited_id, 3)
    stray = fakes.engine.add_container(adopted, V100)

    results = await lifecycle.reconcile_many(
        [
            Drift(gone, OpKind.RECONCILE_DISPOSE),
            Drift(exited, OpKind.RECONCILE_OBSERVED_EXITED),
            Drift(adopted, OpKind.RECONCILE_ADOPT, stray),
        ]
    )

    assert [r.outcome for r in results] == [DriftOutcome.WRITTEN] * 3
    assert [(g, (fakes.record(g) or pytest.fail()).status) for g in (gone, exited, adopted)] == [
        (gone, "removed"),
        (exited, "stopped"),
        (adopted, "running"),
    ]
    assert [fakes.rows(g)[-1].op_kind for g in (gone, exited, adopted)] == [
        "reconcile_dispose",
        "reconcile_observed_exited",
        "reconcile_adopt",
    ]
    event = fakes.publisher.health_events[-1]
    assert (event.game_id, event.container_id, event.event_type.value) == (
        gone,
        gone_id,
        "container_disappeared",
    )
    assert [fakes.counter("reconcile_drift", kind=k) for k in ("dispose", "observed_exited")] == [
        1,
        1,
    ]
    assert fakes.leases.holders == {}  # every lease released


async def test_a_batch_leaves_busy_and_healed_games_and_writes_the_rest(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    busy, healed, gone = "batch-busy", "batch-healed", "batch-gone"
    for game_id in (busy, gone):
        fakes.engine.vanish(await _started(lifecycle, game_id))
    await _started(lifecycle, healed)  # its container is still there: nothing to do
    fakes.leases.occupy(busy)

    results = await lifecycle.reconcile_many(
        [Drift(g, OpKind.RECONCILE_DISPOSE) for g in (busy, healed, gone)]
    )

    assert [r.outcome for r in results] == [
        DriftOutcome.BUSY,
        DriftOutcome.NOTHING,
        DriftOutcome.WRITTEN,
    ]
    assert [r.op_kind for r in fakes.rows(busy)] == ["start"]  # no row for a busy game
    assert [r.op_kind for r in fakes.rows(healed)] == ["start"]
    assert fakes.leases.holders == {busy: "someone-else"}


async def test_a_batch_refuses_a_game_a_newer_lease_wrote(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    stale, fine = "batch-stale", "batch-fine"
    for game_id in (stale, fine):
        fakes.engine.vanish(await _started(lifecycle, game_id))
    real_fences = fakes.repos.get_fences

    async def newer_write_meanwhile(game_ids: Sequence[str]) -> dict[str, GameFence]:
        fences = await real_fences(game_ids)
        fakes.repos.fences[stale] = GameFence(10_000, None)  # written after our read
        return fences

    fakes.repos.get_fences = newer_write_meanwhile  # type: ignore[method-assign]
    results = await lifecycle.reconcile_many(
        [Drift(g, OpKind.RECONCILE_DISPOSE) for g in (stale, fine)]
    )

    assert [r.outcome for r in results] == [DriftOutcome.BUSY, DriftOutcome.WRITTEN]
    record = fakes.record(stale)
    assert record is not None and record.status == "running"
    assert [r.op_kind for r in fakes.rows(stale)] == ["start"]
    assert [e.game_id for e in fakes.publisher.health_events[-1:]] == [fine]


async def test_a_failed_batch_leaves_a_failure_row_per_game(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    games = ["batch-a", "batch-b"]
    for game_id in games:
        fakes.engine.vanish(await _started(lifecycle, game_id))
    fakes.repos.commit_failures.append(ServiceUnavailable("postgres unavailable: gone"))

    results = await lifecycle.reconcile_many([Drift(g, OpKind.RECONCILE_DISPOSE) for g in games])

    assert [(r.outcome, getattr(r.error, "code", None)) for r in results] == [
        (DriftOutcome.FAILED, "service_unavailable")
    ] * 2
    for game_id in games:
        row = fakes.rows(game_id)[-1]
        assert (row.op_kind, row.outcome, row.error_code) == (
            "reconcile_dispose",
            "failure",
            "service_unavailable",
        )
        record = fakes.record(game_id)
        assert record is not None and record.status == "running"
    assert fakes.leases.holders == {}
