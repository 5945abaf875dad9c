"""Automatic restarts by the crash-loop policy (issue 12; RTMANAGER_AUTO_RESTART=on).

The rules of `domain.crashloop` applied to a game, each step under the
game's lease so it sees what every operation committed before it:

- `record_crash`: a death (or probe failure) of the engine a `running`
  record points at schedules its restart, or quarantines the game when the
  window's budget is spent (one `container_quarantined` health event and one
  `runtime.container_quarantined` admin intent). The crash of a container
  that is no longer the game's current engine, or that a command has stopped
  meanwhile, is not one: nothing is written. A record the reconciler turned
  `stopped` because it saw the engine exited (`reconcile_observed_exited`,
  e.g. its boot pass after an RTM outage) still counts as crashed.
- `auto_restart`: a due restart runs exactly like a REST restart (same
  image, same state dir; op `restart`, source `auto_restart`; one row; the
  lease and fencing), after re-checking under the lease that the crash still
  stands. Its attempt is counted before it runs, once, so an RTM that dies
  mid-restart neither forgets it nor counts it twice; a restart that fails
  is retried after the next delay, and counts.
- `lift_quarantine`: an admin's `POST …/quarantine/lift` (op
  `quarantine_lift`, one row): the policy starts over. A command that
  relaunches the engine (start, restart, patch by Lobby, GM or an admin)
  starts it over too, in its own commit (`run_operation`).

The `auto_restart` loop of rtm-reconciler feeds this from
`runtime:health_events` and its own sweep of exited engines.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from rtm_core.domain.crashloop import (
    Crash,
    CrashHistory,
    CrashPolicy,
    CrashReason,
    Decision,
    Verdict,
    after_failed_attempt,
    begin_attempt,
    lifted,
    on_crash,
    settled,
)
from rtm_core.domain.engine import parse_docker_time
from rtm_core.domain.errors import NotFound, OperationInProgress, RtmError
from rtm_core.domain.records import RuntimeRecord
from rtm_core.domain.vocabulary import (
    HealthSource,
    OpKind,
    OpSource,
    Outcome,
    RuntimeStatus,
    SelfHealEventType,
    require_game_id,
)
from rtm_core.domain.wire import NotificationIntent, now_ms
from rtm_core.lifecycle.deps import LifecycleDeps
from rtm_core.lifecycle.operation import Operation, OperationResult, run_operation
from rtm_core.lifecycle.replace import replace_engine

log = logging.getLogger("rtm_core.lifecycle.selfheal")

#: Operation-log rows looked at to tell a reconciler's `stopped` from a command's.
_RECENT_ROWS = 20
QUARANTINE_CODE = "container_quarantined"


@dataclass(frozen=True)
class CrashReport:
    """A death or probe failure as the auto-restart loop heard of it."""

    game_id: str
    container_id: str
    reason: CrashReason
    exit_code: int | None
    at: datetime


async def crash_stands(
    deps: LifecycleDeps, record: RuntimeRecord | None, container_id: str
) -> bool:
    """The game's engine is still the crashed container, and nobody since asked
    for anything else: its record is `running`, or `stopped` only because the
    reconciler saw the container exited."""
    if record is None or not container_id or record.current_container_id != container_id:
        return False
    if record.status == RuntimeStatus.RUNNING:
        return True
    if record.status != RuntimeStatus.STOPPED:
        return False
    for row in await deps.repos.operations(record.game_id, _RECENT_ROWS):
        if row.outcome == Outcome.SUCCESS and row.error_code is None:
            return row.op_kind == OpKind.RECONCILE_OBSERVED_EXITED
    return False


async def record_crash(
    deps: LifecycleDeps, policy: CrashPolicy, report: CrashReport
) -> Decision | None:
    """Schedule the restart after `report`, or quarantine; None when the crash does
    not stand. OperationInProgress when an operation holds the game: try later."""
    async with deps.leases.hold(report.game_id) as _lease:
        record = await deps.repos.get_record(report.game_id)
        if not await crash_stands(deps, record, report.container_id):
            return None
        assert record is not None
        started = record.started_at
        uptime = (report.at - started).total_seconds() if started else None
        crash = Crash(
            game_id=report.game_id,
            container_id=report.container_id,
            reason=report.reason,
            exit_code=report.exit_code,
            at=report.at,
            uptime=uptime,
        )
        history = await deps.repos.get_crash_history(report.game_id)
        decision = on_crash(policy, history, crash, deps.draw)
        if decision.changed:
            await deps.repos.save_crash_history(decision.history)
    fields = {
        "game_id": report.game_id,
        "container_id": report.container_id,
        "reason": report.reason.value,
        "exit_code": report.exit_code,
        "verdict": decision.verdict.value,
    }
    if decision.verdict is Verdict.SCHEDULED:
        log.info("engine crash: restart scheduled", extra={**fields, "delay_s": decision.delay})
    elif decision.verdict is Verdict.QUARANTINED:
        await announce_quarantine(deps, policy, record, decision.history)
    elif decision.verdict is Verdict.ALREADY_QUARANTINED:
        log.info("engine crash of a quarantined game: left alone", extra=fields)
    return decision


async def announce_quarantine(
    deps: LifecycleDeps, policy: CrashPolicy, record: RuntimeRecord, history: CrashHistory
) -> None:
    """One `container_quarantined` event and one admin intent, best effort each."""
    restarts = len(history.restart_times)
    window = int(policy.window)
    log.warning(
        "engine quarantined: restart budget spent",
        extra={
            "game_id": record.game_id,
            "container_id": history.last_container_id,
            "restarts": restarts,
            "window_seconds": window,
            "reason": history.last_reason,
            "exit_code": history.last_exit_code,
        },
    )
    try:
        await deps.health.report(
            game_id=record.game_id,
            container_id=history.last_container_id or "",
            event_type=SelfHealEventType.CONTAINER_QUARANTINED,
            source=HealthSource.INSPECT,
            details={
                "restarts": restarts,
                "window_seconds": window,
                "last_exit_code": history.last_exit_code,
            },
        )
    except Exception:
        log.exception("could not publish container_quarantined", extra={"game_id": record.game_id})
    exit_text = (
        f"exit code {history.last_exit_code}" if history.last_exit_code is not None else "no exit"
    )
    intent = NotificationIntent(
        game_id=record.game_id,
        image_ref=record.current_image_ref or "",
        error_code=QUARANTINE_CODE,
        error_message=(
            f"engine of game {record.game_id} quarantined after {restarts} automatic restarts "
            f"in {window}s; last crash: {history.last_reason} ({exit_text}); lift with "
            f"POST /api/v1/internal/runtimes/{record.game_id}/quarantine/lift"
        ),
        attempted_at_ms=now_ms(),
    )
    with contextlib.suppress(Exception):
        await deps.publishers.notification_intent(intent)


@dataclass
class AttemptOutcome:
    """What one due restart came to."""

    game_id: str
    #: restarted | failed | skipped (the crash no longer stands) | quarantined | busy | not_due
    result: str
    container_id: str | None = None
    error_code: str | None = None


async def auto_restart(
    deps: LifecycleDeps, policy: CrashPolicy, game_id: str, now: datetime | None = None
) -> AttemptOutcome:
    """Run the game's due restart, if it still is one."""
    when = now or deps.clock()
    state: dict[str, CrashHistory] = {}
    outcome = AttemptOutcome(game_id, "not_due")
    quarantine: list[tuple[RuntimeRecord, CrashHistory]] = []

    async def body(op: Operation) -> OperationResult:
        history = await deps.repos.get_crash_history(game_id)
        if history is None or not history.is_due(when):
            return OperationResult(record=None)
        record = await deps.repos.get_record(game_id)
        crashed = history.pending_container_id or ""
        if not await crash_stands(deps, record, crashed):
            await deps.repos.save_crash_history(settled(history))
            outcome.result = "skipped"
            return OperationResult(record=None)
        assert record is not None and record.current_image_ref is not None
        decision = begin_attempt(policy, history, when)
        await deps.repos.save_crash_history(decision.history)
        if decision.verdict is Verdict.QUARANTINED:
            quarantine.append((record, decision.history))
            outcome.result = "quarantined"
            return OperationResult(record=None)
        state["history"] = decision.history
        return await replace_engine(deps, op, record, record.current_image_ref)

    try:
        result = await run_operation(
            deps,
            game_id=game_id,
            kind=OpKind.RESTART,
            source=OpSource.AUTO_RESTART,
            body=body,
            record_conflicts=False,
        )
    except OperationInProgress:
        return AttemptOutcome(game_id, "busy")
    except RtmError as exc:
        history = state.get("history")
        if history is not None:
            decision = after_failed_attempt(policy, history, deps.clock(), deps.draw)
            await deps.repos.save_crash_history(decision.history)
            _count(deps, history, Outcome.FAILURE)
            log.warning(
                "automatic restart failed; retrying after backoff",
                extra={"game_id": game_id, "error_code": exc.code, "delay_s": decision.delay},
            )
        return AttemptOutcome(game_id, "failed", error_code=exc.code)
    if quarantine:
        record, history = quarantine[0]
        await announce_quarantine(deps, policy, record, history)
        return outcome
    history = state.get("history")
    if result.record is None or history is None:
        return outcome
    await deps.repos.save_crash_history(settled(history))
    _count(deps, history, Outcome.SUCCESS)
    return AttemptOutcome(game_id, "restarted", container_id=result.record.current_container_id)


def _count(deps: LifecycleDeps, history: CrashHistory, outcome: Outcome) -> None:
    reason = history.pending_reason or history.last_reason or ""
    deps.metrics.auto_restarts.add(1, {"reason": reason, "outcome": outcome.value})


async def lift_quarantine(
    deps: LifecycleDeps, game_id: str, source: OpSource, *, lease_wait: float = 0.0
) -> OperationResult:
    """An admin lifts the game's quarantine: its crash-loop policy starts over.
    Not quarantined: `replay_no_op`. The engine is left as it is (restart it)."""
    require_game_id(game_id)

    async def body(op: Operation) -> OperationResult:
        record = await deps.repos.get_record(game_id)
        if record is None:
            raise NotFound(f"no runtime for game {game_id}")
        op.entry.container_id = record.current_container_id
        op.entry.image_ref = record.current_image_ref
        history = await deps.repos.get_crash_history(game_id)
        record.quarantined = False
        if history is None or not history.quarantined:
            return OperationResult(record=record, replay=True, write_record=False)
        await deps.repos.save_crash_history(lifted(history))
        return OperationResult(record=record, write_record=False)

    return await run_operation(
        deps,
        game_id=game_id,
        kind=OpKind.QUARANTINE_LIFT,
        source=source,
        body=body,
        lease_wait=lease_wait,
    )


async def exited_engines(deps: LifecycleDeps, policy: CrashPolicy) -> list[CrashReport]:
    """Engines of `running` records found exited (one Docker list, an inspect per
    exited one): deaths no health event reported, such as a clean exit (code 0,
    when RTMANAGER_AUTO_RESTART_COUNT_CLEAN_EXIT counts it), or one missed while
    the stream was trimmed."""
    containers = {c.id: c for c in await deps.docker.list_owned()}
    reports: list[CrashReport] = []
    for record in await deps.repos.list_records(RuntimeStatus.RUNNING.value):
        listed = containers.get(record.current_container_id or "")
        if listed is None or listed.running:
            continue
        info = await deps.docker.inspect(listed.id)
        if info is None or info.running:
            continue
        reason = CrashReason.CONTAINER_OOM if info.oom_killed else CrashReason.CONTAINER_EXITED
        if not policy.counts(reason, info.exit_code):
            continue
        finished = parse_docker_time(info.finished_at) or datetime.now(UTC)
        reports.append(CrashReport(record.game_id, info.id, reason, info.exit_code, finished))
    return reports
