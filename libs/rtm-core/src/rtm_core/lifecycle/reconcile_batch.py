"""Reconcile drifts in batches: `reconcile.py`'s rules for many games, with the
round trips shared.

A pass that repairs a thousand games (every engine gone after a daemon
restart) spent its time in per-game round trips: a lease, a fence read, a
record read, an inspect, a transaction, a publish and a release each. Here
every step is one round trip for the whole batch, and nothing per game is
given up:

- each game's lease is its own `SET NX` with its own fence (one pipeline);
  a game someone else holds is left for the next pass (`busy`), as before;
- the drift is checked again *under* the leases, against records read after
  them and Docker seen after them (one list, or inspects where the drift
  needs a container's times), so a start or stop that raced the pass wins;
- the records, fences and rows go in one transaction where each game is
  fenced on its own (`commit_operations`): a game a newer lease wrote is
  refused, the others are written;
- the health events go out in one pipeline after the commit, as
  `container_disappeared` did per game.

Each game still leaves exactly one operation-log row and one `operation
completed` line. A health-gated patch an RTM left unfinished is rolled back
under the batch's lease of its game first, as `run_operation` does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from rtm_core.domain.engine import ContainerInfo, parse_docker_time
from rtm_core.domain.errors import InternalError, OperationInProgress, RtmError
from rtm_core.domain.records import OperationLogEntry, RuntimeRecord
from rtm_core.domain.vocabulary import (
    HealthEventType,
    HealthSource,
    OpKind,
    OpSource,
    Outcome,
    RuntimeStatus,
    is_valid_game_id,
)
from rtm_core.lifecycle.deps import LifecycleDeps
from rtm_core.lifecycle.health import HealthReport
from rtm_core.lifecycle.operation import _finish_interrupted_patch, log_fields
from rtm_core.lifecycle.reconcile import adopted_record
from rtm_core.observability import tracer
from rtm_core.ports import FencedCommit, LeaseGrant

log = logging.getLogger("rtm_core.lifecycle")

#: Below this many disposes a batch inspects each container; from it on, one
#: list of the stack's containers (a list costs about what 30 inspects do).
LIST_FROM = 32
#: Inspects at once for the drifts that need a container's times.
INSPECT_CONCURRENCY = 16

_DRIFT_NAMES = {
    OpKind.RECONCILE_DISPOSE: "dispose",
    OpKind.RECONCILE_OBSERVED_EXITED: "observed_exited",
    OpKind.RECONCILE_ADOPT: "adopt",
}


@dataclass(frozen=True)
class Drift:
    """One game's planned drift: dispose, observed_exited, or adopt `container`."""

    game_id: str
    kind: OpKind
    container: ContainerInfo | None = None


class DriftOutcome(Enum):
    WRITTEN = "written"
    #: Checked again under the lease: nothing to do (the drift healed itself).
    NOTHING = "nothing"
    #: Another holder had the game, or a newer lease wrote it: the next pass retries.
    BUSY = "busy"
    FAILED = "failed"


@dataclass
class DriftResult:
    game_id: str
    kind: OpKind
    outcome: DriftOutcome
    error: Exception | None = None


@dataclass
class _Written:
    drift: Drift
    entry: OperationLogEntry
    record: RuntimeRecord
    lease: LeaseGrant
    began: float
    report: HealthReport | None = None


@dataclass
class _Batch:
    results: dict[str, DriftResult] = field(default_factory=dict)
    written: list[_Written] = field(default_factory=list)

    def settle(self, drift: Drift, outcome: DriftOutcome, error: Exception | None = None) -> None:
        self.results[drift.game_id] = DriftResult(drift.game_id, drift.kind, outcome, error)


async def reconcile_many(deps: LifecycleDeps, drifts: Sequence[Drift]) -> list[DriftResult]:
    """Settle `drifts` (one per game) together; a result per drift, in order.

    A failure of a shared step (Redis, PostgreSQL or Docker away) fails every
    game not yet written, each with its failure row, as the per-game calls
    would have.
    """
    if len({d.game_id for d in drifts}) != len(drifts):
        raise ValueError("reconcile_many takes one drift per game")
    batch = _Batch()
    todo: list[Drift] = []
    for d in drifts:
        if d.kind is OpKind.RECONCILE_ADOPT and not (
            d.container is not None and is_valid_game_id(d.container.game_id)
        ):
            batch.settle(d, DriftOutcome.NOTHING)  # never a record, a lease key or a path
        else:
            todo.append(d)
    with tracer.start_as_current_span("rtm.reconcile_batch", attributes={"games": len(todo)}):
        started_at = deps.clock()
        began = time.perf_counter()
        try:
            async with deps.leases.hold_many([d.game_id for d in todo]) as grants:
                held = [d for d in todo if d.game_id in grants]
                for d in todo:
                    if d.game_id not in grants:
                        batch.settle(d, DriftOutcome.BUSY)
                await _under_leases(deps, held, grants, batch, started_at, began)
        except Exception as exc:
            unsettled = [d for d in todo if d.game_id not in batch.results]
            await _fail(deps, unsettled, batch, exc, started_at, began)
    await _announce(deps, batch)
    return [batch.results[d.game_id] for d in drifts]


async def _under_leases(
    deps: LifecycleDeps,
    held: list[Drift],
    grants: Mapping[str, LeaseGrant],
    batch: _Batch,
    started_at: datetime,
    began: float,
) -> None:
    if not held:
        return
    ids = [d.game_id for d in held]
    fences = await deps.repos.get_fences(ids)
    for game_id, stored in fences.items():
        await grants[game_id].advance_past(stored.fence)
    if deps.settings.patch_health_gate:
        held = await _finish_interrupted_patches(deps, held, grants, batch)
    records = await deps.repos.get_records([d.game_id for d in held])
    seen = await _docker_now(deps, held, records)
    commits: list[FencedCommit] = []
    for d in held:
        record = records.get(d.game_id)
        changed = _plan(deps, d, record, seen)
        if changed is None:
            batch.settle(d, DriftOutcome.NOTHING)
            continue
        new_record, entry, report = changed
        entry.started_at = started_at
        lease = grants[d.game_id]
        batch.written.append(_Written(d, entry, new_record, lease, began, report))
        commits.append(FencedCommit(entry, new_record, lease.fence))
    if not commits:
        return
    now = deps.clock()
    for c in commits:
        c.entry.finished_at = now
    refused = await deps.repos.commit_operations(commits)
    kept = []
    for w in batch.written:
        if w.drift.game_id in refused:  # a newer lease wrote the game: not a drift to log
            batch.settle(w.drift, DriftOutcome.BUSY)
        else:
            batch.settle(w.drift, DriftOutcome.WRITTEN)
            kept.append(w)
            _completed(deps, w)
    batch.written = kept


async def _finish_interrupted_patches(
    deps: LifecycleDeps, held: list[Drift], grants: Mapping[str, LeaseGrant], batch: _Batch
) -> list[Drift]:
    patched = {p.game_id for p in await deps.repos.patches_in_progress()}
    ready = []
    for d in held:
        if d.game_id in patched:
            try:
                await _finish_interrupted_patch(
                    deps, grants[d.game_id], d.game_id, OpSource.RECONCILER
                )
            except OperationInProgress:
                batch.settle(d, DriftOutcome.BUSY)
                continue
        ready.append(d)
    return ready


async def _docker_now(
    deps: LifecycleDeps, held: list[Drift], records: Mapping[str, RuntimeRecord]
) -> dict[str, ContainerInfo | None]:
    """What Docker shows now, under the leases, for each container a drift is
    about: one list when there are many disposes, inspects where a drift needs
    the container's times (exits and adoptions) or there are only a few."""
    wanted: dict[str, bool] = {}  # container id -> needs an inspect
    for d in held:
        if d.kind is OpKind.RECONCILE_ADOPT and d.container is not None:
            wanted[d.container.id] = True
        elif (record := records.get(d.game_id)) is not None and record.current_container_id:
            wanted[record.current_container_id] = d.kind is OpKind.RECONCILE_OBSERVED_EXITED
    seen: dict[str, ContainerInfo | None] = {}
    listed = [ref for ref, inspect in wanted.items() if not inspect]
    if len(listed) >= LIST_FROM:
        present = {c.id: c for c in await deps.docker.list_owned()}
        seen.update({ref: present.get(ref) for ref in listed})
    to_inspect = [ref for ref in wanted if ref not in seen]
    gate = asyncio.Semaphore(INSPECT_CONCURRENCY)

    async def inspect(ref: str) -> None:
        async with gate:
            seen[ref] = await deps.docker.inspect(ref)

    await asyncio.gather(*(inspect(ref) for ref in to_inspect))
    return seen


def _plan(
    deps: LifecycleDeps,
    d: Drift,
    record: RuntimeRecord | None,
    seen: Mapping[str, ContainerInfo | None],
) -> tuple[RuntimeRecord, OperationLogEntry, HealthReport | None] | None:
    """`reconcile.py`'s bodies over what was read under the lease; None: nothing to do."""
    entry = OperationLogEntry(
        game_id=d.game_id,
        op_kind=d.kind.value,
        op_source=OpSource.RECONCILER.value,
        outcome=Outcome.SUCCESS.value,
        started_at=deps.clock(),
        finished_at=deps.clock(),
    )
    now = deps.clock()
    if d.kind is OpKind.RECONCILE_ADOPT:
        assert d.container is not None
        if record is not None and record.status != RuntimeStatus.REMOVED:
            return None
        info = seen.get(d.container.id)
        if info is None:
            return None
        entry.container_id = info.id
        entry.image_ref = info.image_ref
        adopted = adopted_record(deps, d.game_id, info, record, now)
        return adopted, entry, None
    if record is None or record.status != RuntimeStatus.RUNNING:
        return None
    container_id = record.current_container_id or ""
    info = seen.get(container_id) if container_id else None
    entry.image_ref = record.current_image_ref
    if d.kind is OpKind.RECONCILE_DISPOSE:
        if info is not None:
            return None
        entry.container_id = container_id or None
        record.status = RuntimeStatus.REMOVED.value
        record.removed_at = now
        record.last_op_at = now
        report = HealthReport(
            game_id=d.game_id,
            container_id=container_id,
            event_type=HealthEventType.CONTAINER_DISAPPEARED,
            source=HealthSource.INSPECT,
            details={},
        )
        return record, entry, report
    if info is None or info.running:  # observed_exited
        return None
    entry.container_id = info.id
    record.status = RuntimeStatus.STOPPED.value
    record.stopped_at = parse_docker_time(info.finished_at) or now
    record.last_op_at = now
    return record, entry, None


def _completed(deps: LifecycleDeps, w: _Written) -> None:
    entry = w.entry
    _count(deps, entry)
    deps.metrics.reconcile_drift.add(1, {"kind": _DRIFT_NAMES[w.drift.kind]})
    log.info("operation completed", extra=log_fields(entry, OpSource.RECONCILER, w.began))


async def _announce(deps: LifecycleDeps, batch: _Batch) -> None:
    """After the commit and the leases, as `run_operation`'s after-commit effects."""
    reports = [w.report for w in batch.written if w.report is not None]
    try:
        await deps.health.report_many(reports)
    except Exception:
        log.exception("after-commit effect failed", extra={"op_kind": "reconcile_dispose"})


async def _fail(
    deps: LifecycleDeps,
    drifts: list[Drift],
    batch: _Batch,
    exc: Exception,
    started_at: datetime,
    began: float,
) -> None:
    """A shared step failed: every game not yet settled fails with it and gets its
    failure row (as `run_operation` appends one), in one transaction."""
    error = exc if isinstance(exc, RtmError) else InternalError(str(exc) or repr(exc))
    now = deps.clock()
    entries = []
    for d in drifts:
        batch.settle(d, DriftOutcome.FAILED, error)
        entry = OperationLogEntry(
            game_id=d.game_id,
            op_kind=d.kind.value,
            op_source=OpSource.RECONCILER.value,
            outcome=Outcome.FAILURE.value,
            started_at=started_at,
            finished_at=now,
            error_code=error.code,
            error_message=error.message,
        )
        entries.append(entry)
        _count(deps, entry)
        unexpected = isinstance(error, InternalError)
        log.log(
            logging.ERROR if unexpected else logging.WARNING,
            "operation failed",
            extra=log_fields(entry, OpSource.RECONCILER, began),
            exc_info=exc if unexpected else None,
        )
    batch.written = [w for w in batch.written if w.drift.game_id not in {d.game_id for d in drifts}]
    if entries:
        try:
            await asyncio.shield(deps.repos.commit_operations([FencedCommit(e) for e in entries]))
        except Exception:
            log.exception("could not append the failure rows to operation_log")


def _count(deps: LifecycleDeps, entry: OperationLogEntry) -> None:
    deps.metrics.operations.add(
        1,
        {"op_kind": entry.op_kind, "outcome": entry.outcome, "error_code": entry.error_code or ""},
    )
