"""The frame every lifecycle operation runs in.

Validate outside, then: lease (with its fencing number) → a stream job
older than the last one applied is answered from the current state
(superseded) → body → record, fence and operation-log row in one
transaction, refused when a newer lease wrote the game meanwhile →
after-commit effects (health events). Failures append their row too, so
every operation leaves exactly one row. Logs carry game_id and op_kind; one
span covers the whole operation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from opentelemetry.trace import Span, Status, StatusCode

from rtm_core.domain.errors import REPLAY_NO_OP, InternalError, OperationInProgress, RtmError
from rtm_core.domain.ordering import GameFence, is_superseded
from rtm_core.domain.records import OperationLogEntry, RuntimeRecord
from rtm_core.domain.vocabulary import OpKind, OpSource, Outcome
from rtm_core.lifecycle.deps import LifecycleDeps
from rtm_core.observability import operation_context, tracer
from rtm_core.ports import LeaseGrant

log = logging.getLogger("rtm_core.lifecycle")

AfterCommit = Callable[[], Awaitable[None]]


@dataclass
class OperationResult:
    """What a successful operation leaves: the record, and whether it was a replay.

    `record=None` means the body found nothing to do (a drift that healed
    itself before the lease was taken): no row, no log line.
    """

    record: RuntimeRecord | None
    replay: bool = False
    after_commit: list[AfterCommit] = field(default_factory=list)
    #: False: append the row but leave the record as it is (a superseded job).
    write_record: bool = True
    #: A new engine was launched (start, restart, patch): a command doing so
    #: starts the game's crash-loop policy over (RTMANAGER_AUTO_RESTART=on).
    relaunched: bool = False
    #: The commit ends a health-gated patch: its progress row goes with it.
    finish_patch: bool = False

    @property
    def error_code(self) -> str:
        return REPLAY_NO_OP if self.replay else ""


@dataclass
class Operation:
    """What a body works with: the row it fills in and the lease it holds."""

    entry: OperationLogEntry
    lease: LeaseGrant


Body = Callable[[Operation], Awaitable[OperationResult]]
#: Answers a superseded job from the game's current record (None: no record).
Superseded = Callable[[OperationLogEntry, RuntimeRecord | None, str], Awaitable[OperationResult]]


@dataclass(frozen=True)
class Job:
    """A stream job's place in its game's order: its entry id, and how it is
    answered when a newer job was applied before it got here."""

    entry_id: str
    superseded: Superseded


async def run_operation(
    deps: LifecycleDeps,
    *,
    game_id: str,
    kind: OpKind,
    source: OpSource,
    body: Body,
    lease_wait: float = 0.0,
    image_ref: str | None = None,
    record_conflicts: bool = True,
    job: Job | None = None,
) -> OperationResult:
    """Run `body` under the game's lease and leave exactly one operation-log row.

    `record_conflicts=False` lets a background pass skip a game that is busy
    without logging a failed operation: a busy game is not a drift. `job`
    orders a stream job against the game's last applied one; a command
    without it (REST) is ordered by the time it took the lease.
    """
    entry = OperationLogEntry(
        game_id=game_id,
        op_kind=kind.value,
        op_source=source.value,
        outcome=Outcome.SUCCESS.value,
        image_ref=image_ref,
        started_at=deps.clock(),
        finished_at=deps.clock(),
    )
    began = time.perf_counter()
    with (
        operation_context(game_id, kind.value),
        tracer.start_as_current_span(
            f"rtm.{kind.value}",
            attributes={"game_id": game_id, "op_kind": kind.value, "rtm.op_source": source.value},
        ) as span,
    ):
        try:
            async with deps.leases.hold(game_id, wait=lease_wait) as lease:
                stored = await deps.repos.get_fence(game_id)
                if stored is not None:
                    await lease.advance_past(stored.fence)
                if deps.settings.patch_health_gate:
                    await _finish_interrupted_patch(deps, lease, game_id, source)
                newer = _newer_job(job, stored)
                if job is not None and newer is not None:
                    record = await deps.repos.get_record(game_id)
                    result = await job.superseded(entry, record, newer)
                else:
                    result = await body(Operation(entry, lease))
                if result.record is None:
                    return result
                entry.finished_at = deps.clock()
                entry.error_code = result.error_code or None
                await _commit(deps, entry, result, source, lease, job)
        except OperationInProgress as exc:
            if record_conflicts:
                await _record_failure(deps, entry, source, began, span, exc)
            raise
        except Exception as exc:
            error = await _record_failure(deps, entry, source, began, span, exc)
            if error is exc:
                raise
            raise error from exc
        _count(deps, entry)
        log.info("operation completed", extra=log_fields(entry, source, began))
        for effect in result.after_commit:
            try:
                await effect()
            except Exception:
                log.exception("after-commit effect failed", extra={"op_kind": kind.value})
        return result


async def _commit(
    deps: LifecycleDeps,
    entry: OperationLogEntry,
    result: OperationResult,
    source: OpSource,
    lease: LeaseGrant,
    job: Job | None,
) -> None:
    """The record (fenced), the row, and what goes with them, in one transaction."""
    if not result.write_record:
        await deps.repos.append_operation(entry)
        return
    assert result.record is not None
    job_id = job.entry_id if job else lease.order_id if source.is_command else None
    # A command that relaunches the engine starts its crash-loop policy over.
    reset = bool(result.relaunched and source.is_command and deps.settings.auto_restart)
    if reset:
        result.record.quarantined = False
    await deps.repos.commit_operation(
        entry,
        result.record,
        fence=lease.fence,
        job_id=job_id,
        finish_patch=result.finish_patch,
        reset_crash_history=reset,
    )


async def _finish_interrupted_patch(
    deps: LifecycleDeps, lease: LeaseGrant, game_id: str, source: OpSource
) -> None:
    """A health-gated patch of this game that an RTM left unfinished (it died, or
    lost its lease): roll it back before this operation touches the game. A
    rollback that cannot finish yet leaves the game busy: `operation_in_progress`
    (the reconciler's pass, or a later call, tries again)."""
    progress = await deps.repos.get_patch_progress(game_id)
    if progress is None:
        return
    # Imported here: the rollback runs operations' steps, which import this frame.
    from rtm_core.lifecycle.gated_patch import finish_interrupted

    try:
        await finish_interrupted(deps, lease, progress, source)
    except OperationInProgress:
        raise
    except Exception as exc:
        code = exc.code if isinstance(exc, RtmError) else InternalError.code
        detail = exc.message if isinstance(exc, RtmError) else (str(exc) or repr(exc))
        raise OperationInProgress(
            f"game {game_id} is still rolling back an interrupted patch "
            f"({code}: {detail}); try again later"
        ) from exc


def _newer_job(job: Job | None, stored: GameFence | None) -> str | None:
    """The id of the newer job that supersedes `job`, if one was applied."""
    if job is None or stored is None or not is_superseded(job.entry_id, stored.last_job_id):
        return None
    return stored.last_job_id


async def _record_failure(
    deps: LifecycleDeps,
    entry: OperationLogEntry,
    source: OpSource,
    began: float,
    span: Span,
    exc: BaseException,
) -> RtmError:
    error = exc if isinstance(exc, RtmError) else InternalError(str(exc) or repr(exc))
    entry.outcome = Outcome.FAILURE.value
    entry.error_code = error.code
    entry.error_message = error.message
    entry.finished_at = deps.clock()
    span.set_status(Status(StatusCode.ERROR, error.code))
    await _append_failure(deps, entry)
    _count(deps, entry)
    unexpected = isinstance(error, InternalError)
    log.log(
        logging.ERROR if unexpected else logging.WARNING,
        "operation failed",
        extra=log_fields(entry, source, began),
        exc_info=exc if unexpected else None,
    )
    return error


async def _append_failure(deps: LifecycleDeps, entry: OperationLogEntry) -> None:
    try:
        # Shielded: a cancelled job must still leave its row behind.
        await asyncio.shield(deps.repos.append_operation(entry))
    except Exception:
        log.exception("could not append the failure row to operation_log")


def _count(deps: LifecycleDeps, entry: OperationLogEntry) -> None:
    deps.metrics.operations.add(
        1,
        {
            "op_kind": entry.op_kind,
            "outcome": entry.outcome,
            "error_code": entry.error_code or "",
        },
    )


def log_fields(entry: OperationLogEntry, source: OpSource, began: float) -> dict[str, object]:
    """The fields of an operation's `operation completed` / `operation failed` line."""
    return {
        "game_id": entry.game_id,
        "op_kind": entry.op_kind,
        "op_source": source.value,
        "outcome": entry.outcome,
        "error_code": entry.error_code,
        "error_message": entry.error_message,
        "container_id": entry.container_id,
        "image_ref": entry.image_ref,
        "duration_ms": round((time.perf_counter() - began) * 1000, 1),
    }
