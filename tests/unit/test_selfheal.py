"""Automatic restarts over the fakes (issue 12): the core's `record_crash`,
`auto_restart`, `lift_quarantine`, and rtm-reconciler's `auto_restart` loop."""

from __future__ import annotations

from typing import Any

import pytest

from rtm_core.domain.crashloop import CrashHistory, CrashReason, Verdict
from rtm_core.domain.errors import ContainerStartFailed, NotFound, OperationInProgress
from rtm_core.domain.vocabulary import HealthEventType, SelfHealEventType
from rtm_core.domain.wire import HealthEvent
from rtm_core.lifecycle import Lifecycle
from rtm_core.lifecycle.selfheal import CrashReport
from rtm_core.runtime.loops import LoopRegistry
from rtm_reconciler.auto_restart import AutoRestart
from rtm_reconciler.bootstrap import ReconcilerDeps
from unit.fakes import FakeHealthEventFeed, Fakes, MakeUnit
from unit.helpers import ADMIN, GAME, GM, LOBBY, V100, row_of

ON: dict[str, Any] = {
    "auto_restart": "on",
    "auto_restart_backoff_initial": "10s",
    "auto_restart_backoff_factor": 2,
    "auto_restart_backoff_jitter": 0,
    "auto_restart_budget": 2,
    "auto_restart_window": "30m",
    "auto_restart_reset_after": "10m",
}


@pytest.fixture
def on(make_unit: MakeUnit) -> tuple[Lifecycle, Fakes]:
    return make_unit(**ON)


async def running(lifecycle: Lifecycle, fakes: Fakes) -> str:
    result = await lifecycle.start(GAME, V100, GM)
    assert result.record is not None and result.record.current_container_id
    return result.record.current_container_id


def report(fakes: Fakes, container_id: str, **kw: Any) -> CrashReport:
    values: dict[str, Any] = {
        "game_id": GAME,
        "container_id": container_id,
        "reason": CrashReason.CONTAINER_EXITED,
        "exit_code": 1,
        "at": fakes.clock(),
    }
    values.update(kw)
    return CrashReport(**values)


async def crash(lifecycle: Lifecycle, fakes: Fakes, container_id: str) -> Verdict | None:
    fakes.engine.exit(container_id, 1)
    decision = await lifecycle.record_crash(report(fakes, container_id))
    return None if decision is None else decision.verdict


async def test_a_crash_is_restarted_after_its_delay_like_a_rest_restart(
    on: tuple[Lifecycle, Fakes],
) -> None:
    lifecycle, fakes = on
    first = await running(lifecycle, fakes)
    fakes.clock.advance(seconds=5)

    assert await crash(lifecycle, fakes, first) is Verdict.SCHEDULED
    assert (await lifecycle.auto_restart(GAME)).result == "not_due"
    fakes.clock.advance(seconds=9)
    assert (await lifecycle.auto_restart(GAME)).result == "not_due"
    fakes.clock.advance(seconds=1)
    outcome = await lifecycle.auto_restart(GAME)

    assert outcome.result == "restarted" and outcome.container_id != first
    record = fakes.record(GAME)
    assert record is not None and record.current_container_id == outcome.container_id
    assert record.current_image_ref == V100 and record.status == "running"
    *_, last = fakes.rows(GAME)
    assert row_of(last) == {
        "game_id": GAME,
        "op_kind": "restart",
        "op_source": "auto_restart",
        "outcome": "success",
        "error_code": None,
        "image_ref": V100,
        "previous_image_ref": V100,
        "container_id": outcome.container_id,
    }
    history = fakes.repos.crash[GAME]
    assert not history.in_backoff and len(history.restart_times) == 1
    assert fakes.counter("auto_restarts", reason="container_exited", outcome="success") == 1
    assert [e.event_type for e in fakes.publisher.health_events][-1] == "container_started"


async def test_the_budget_spent_quarantines_the_game_once(on: tuple[Lifecycle, Fakes]) -> None:
    lifecycle, fakes = on
    container = await running(lifecycle, fakes)
    for delay in (10, 20):
        fakes.clock.advance(seconds=1)
        assert await crash(lifecycle, fakes, container) is Verdict.SCHEDULED
        fakes.clock.advance(seconds=delay)
        outcome = await lifecycle.auto_restart(GAME)
        assert outcome.result == "restarted" and outcome.container_id
        container = outcome.container_id
    fakes.clock.advance(seconds=1)

    assert await crash(lifecycle, fakes, container) is Verdict.QUARANTINED

    record = fakes.record(GAME)
    assert record is not None and record.quarantined
    assert [r.op_source for r in fakes.rows(GAME)].count("auto_restart") == 2
    (event,) = [e for e in fakes.publisher.health_events if e.event_type == "container_quarantined"]
    assert event.event_type is SelfHealEventType.CONTAINER_QUARANTINED
    assert event.fields()["details"] == '{"restarts":2,"window_seconds":1800,"last_exit_code":1}'
    assert event.container_id == container
    (intent,) = fakes.publisher.notification_intents
    envelope = intent.envelope()
    assert envelope["type"] == "runtime.container_quarantined"
    assert envelope["audience"]["email_address_kind"] == "runtime_container_quarantined"
    assert intent.image_ref == V100 and "quarantine/lift" in intent.error_message
    # Quarantined: the next crash (a new report of it) schedules nothing.
    fakes.clock.advance(minutes=1)
    assert await lifecycle.record_crash(report(fakes, container)) is not None
    assert not fakes.repos.crash[GAME].in_backoff
    assert len(fakes.publisher.notification_intents) == 1


async def test_lifting_and_command_restarts_end_the_quarantine(
    on: tuple[Lifecycle, Fakes],
) -> None:
    lifecycle, fakes = on
    container = await running(lifecycle, fakes)
    assert GAME not in fakes.repos.crash
    await fakes.repos.save_crash_history(
        CrashHistory(game_id=GAME, quarantined=True, last_container_id=container)
    )
    record = fakes.record(GAME)
    assert record is not None and record.quarantined

    lifted = await lifecycle.lift_quarantine(GAME, ADMIN)
    assert lifted.record is not None and not lifted.record.quarantined and not lifted.replay
    assert not fakes.repos.crash[GAME].quarantined
    again = await lifecycle.lift_quarantine(GAME, ADMIN)
    assert again.replay
    assert [(r.op_kind, r.outcome, r.error_code) for r in fakes.rows(GAME)][-2:] == [
        ("quarantine_lift", "success", None),
        ("quarantine_lift", "success", "replay_no_op"),
    ]
    with pytest.raises(NotFound):
        await lifecycle.lift_quarantine("nobody", ADMIN)

    # A command that relaunches the engine lifts it too.
    fakes.repos.crash[GAME].quarantined = True
    await fakes.repos.save_crash_history(fakes.repos.crash[GAME])
    restarted = await lifecycle.restart(GAME, GM)
    assert restarted.record is not None and not restarted.record.quarantined
    record = fakes.record(GAME)
    assert record is not None and not record.quarantined
    assert not fakes.repos.crash[GAME].quarantined


async def test_a_crash_that_no_longer_stands_is_not_one(on: tuple[Lifecycle, Fakes]) -> None:
    lifecycle, fakes = on
    first = await running(lifecycle, fakes)
    # Someone restarted the game meanwhile: the old container's crash is stale.
    await lifecycle.restart(GAME, GM)
    assert await lifecycle.record_crash(report(fakes, first)) is None
    # A stop by command after the crash: left alone.
    current = fakes.record(GAME)
    assert current is not None and current.current_container_id
    fakes.engine.exit(current.current_container_id, 1)
    await lifecycle.stop(GAME, "admin_request", ADMIN)
    assert await lifecycle.record_crash(report(fakes, current.current_container_id)) is None
    assert GAME not in fakes.repos.crash


async def test_a_record_the_reconciler_saw_exited_still_counts(
    on: tuple[Lifecycle, Fakes],
) -> None:
    lifecycle, fakes = on
    container = await running(lifecycle, fakes)
    fakes.engine.exit(container, 3)
    assert await lifecycle.reconcile_observed_exited(GAME)  # e.g. the boot pass after an outage

    decision = await lifecycle.record_crash(report(fakes, container, exit_code=3))

    assert decision is not None and decision.verdict is Verdict.SCHEDULED
    fakes.clock.advance(seconds=10)
    assert (await lifecycle.auto_restart(GAME)).result == "restarted"
    record = fakes.record(GAME)
    assert record is not None and record.status == "running"


async def test_a_busy_game_is_left_for_later(on: tuple[Lifecycle, Fakes]) -> None:
    lifecycle, fakes = on
    container = await running(lifecycle, fakes)
    fakes.leases.occupy(GAME)
    with pytest.raises(OperationInProgress):
        await lifecycle.record_crash(report(fakes, container))
    fakes.leases.release(GAME)
    await crash(lifecycle, fakes, container)
    fakes.clock.advance(seconds=10)
    fakes.leases.occupy(GAME)
    assert (await lifecycle.auto_restart(GAME)).result == "busy"
    assert [r.op_source for r in fakes.rows(GAME)] == ["gm_rest"]  # no row for a busy game
    fakes.leases.release(GAME)
    assert (await lifecycle.auto_restart(GAME)).result == "restarted"


async def test_a_failing_restart_counts_and_backs_off_further(
    on: tuple[Lifecycle, Fakes],
) -> None:
    lifecycle, fakes = on
    container = await running(lifecycle, fakes)
    await crash(lifecycle, fakes, container)
    fakes.clock.advance(seconds=10)
    fakes.engine.fail("start", ContainerStartFailed("start failed: boom"))

    outcome = await lifecycle.auto_restart(GAME)

    assert (outcome.result, outcome.error_code) == ("failed", "container_start_failed")
    *_, last = fakes.rows(GAME)
    assert (last.op_source, last.outcome, last.error_code) == (
        "auto_restart",
        "failure",
        "container_start_failed",
    )
    history = fakes.repos.crash[GAME]
    assert len(history.restart_times) == 1 and history.in_backoff
    assert history.next_restart_at is not None
    assert (history.next_restart_at - fakes.clock()).total_seconds() == 20
    fakes.clock.advance(seconds=20)
    assert (await lifecycle.auto_restart(GAME)).result == "restarted"
    assert len(fakes.repos.crash[GAME].restart_times) == 2


async def test_with_auto_restart_off_commands_write_no_crash_state(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    await lifecycle.start(GAME, V100, LOBBY)
    await lifecycle.restart(GAME, GM)
    assert fakes.repos.crash == {}
    record = fakes.record(GAME)
    assert record is not None and not record.quarantined


# ------------------------------------------------------------------ the loop


def event(fakes: Fakes, container_id: str, kind: HealthEventType, **details: Any) -> HealthEvent:
    return HealthEvent(
        game_id=GAME,
        container_id=container_id,
        event_type=kind,
        occurred_at_ms=int(fakes.clock().timestamp() * 1000),
        details=details,
    )


def loop_of(lifecycle: Lifecycle, fakes: Fakes, feed: FakeHealthEventFeed) -> AutoRestart:
    deps = ReconcilerDeps(
        settings=fakes.settings,
        engines=fakes.engine,
        records=fakes.repos,
        lifecycle=lifecycle,
        loops=LoopRegistry(fakes.metrics),
        metrics=fakes.metrics,
        feed=feed,
    )
    return AutoRestart(deps, feed)


async def test_the_loop_acks_only_what_it_recorded_and_survives_a_new_leader(
    on: tuple[Lifecycle, Fakes],
) -> None:
    lifecycle, fakes = on
    feed = FakeHealthEventFeed()
    container = await running(lifecycle, fakes)
    feed.publish(event(fakes, container, HealthEventType.CONTAINER_STARTED, image_ref=V100))
    feed.publish(None, "details: not JSON")
    probe_failed = event(
        fakes,
        container,
        HealthEventType.PROBE_FAILED,
        consecutive_failures=3,
        last_status=0,
        last_error="x",
    )
    crashed = feed.publish(probe_failed)
    fakes.leases.occupy(GAME)

    report_1 = await loop_of(lifecycle, fakes, feed).iterate(sweep=False)

    assert (report_1.entries, report_1.crashes, report_1.waiting_busy) == (3, 1, 1)
    assert feed.pending == [crashed]
    # The leader dies; a new one is given the unacknowledged entry again.
    feed.reconnect()
    fakes.leases.release(GAME)
    loop = loop_of(lifecycle, fakes, feed)
    report_2 = await loop.iterate(sweep=False)
    assert (report_2.scheduled, report_2.in_backoff) == (1, 1)
    assert feed.pending == []
    assert fakes.metrics.games_in_backoff.get() == 1.0
    fakes.clock.advance(seconds=10)
    report_3 = await loop.iterate(sweep=False)
    assert report_3.restarted == 1 and report_3.in_backoff == 0
    assert fakes.counter("auto_restarts", reason="probe_failed") == 1


async def test_the_sweep_finds_clean_exits_only_when_they_count(make_unit: MakeUnit) -> None:
    for counted in (False, True):
        lifecycle, fakes = make_unit(**ON, auto_restart_count_clean_exit=counted)
        feed = FakeHealthEventFeed()
        container = await running(lifecycle, fakes)
        fakes.engine.exit(container, 0)

        swept = await loop_of(lifecycle, fakes, feed).iterate(sweep=True)

        assert (swept.swept, swept.scheduled) == ((1, 1) if counted else (0, 0))
        assert (GAME in fakes.repos.crash) is counted
