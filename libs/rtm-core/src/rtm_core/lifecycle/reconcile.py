"""Reconcile drifts: records brought back in line with what Docker shows.

Each drift is re-checked under the game's lease before it is written, so a
start or stop that raced the pass wins and the pass writes nothing.
"""

from __future__ import annotations

from datetime import datetime

from rtm_core.domain.engine import ContainerInfo, parse_docker_time
from rtm_core.domain.records import RuntimeRecord
from rtm_core.domain.vocabulary import (
    HealthEventType,
    HealthSource,
    OpKind,
    OpSource,
    RuntimeStatus,
    engine_endpoint,
    is_valid_game_id,
    require_game_id,
)
from rtm_core.lifecycle.deps import LifecycleDeps
from rtm_core.lifecycle.engine import state_path
from rtm_core.lifecycle.operation import Body, Operation, OperationResult, run_operation


async def dispose(deps: LifecycleDeps, game_id: str) -> bool:
    """`running` record whose container is gone → `removed`, `container_disappeared`."""

    async def body(op: Operation) -> OperationResult:
        entry = op.entry
        record = await deps.repos.get_record(game_id)
        if record is None or record.status != RuntimeStatus.RUNNING:
            return OperationResult(record=None)
        container_id = record.current_container_id or ""
        if container_id and await deps.docker.inspect(container_id) is not None:
            return OperationResult(record=None)
        entry.container_id = container_id or None
        entry.image_ref = record.current_image_ref
        now = deps.clock()
        record.status = RuntimeStatus.REMOVED.value
        record.removed_at = now
        record.last_op_at = now

        async def announce() -> None:
            await deps.health.report(
                game_id=game_id,
                container_id=container_id,
                event_type=HealthEventType.CONTAINER_DISAPPEARED,
                source=HealthSource.INSPECT,
                details={},
            )

        return OperationResult(record=record, after_commit=[announce])

    return await _drift(deps, game_id, OpKind.RECONCILE_DISPOSE, "dispose", body)


async def observed_exited(deps: LifecycleDeps, game_id: str) -> bool:
    """`running` record whose container exited → `stopped`."""

    async def body(op: Operation) -> OperationResult:
        entry = op.entry
        record = await deps.repos.get_record(game_id)
        if record is None or record.status != RuntimeStatus.RUNNING:
            return OperationResult(record=None)
        info = await deps.docker.inspect(record.current_container_id or "")
        if info is None or info.running:
            return OperationResult(record=None)
        entry.container_id = info.id
        entry.image_ref = record.current_image_ref
        now = deps.clock()
        record.status = RuntimeStatus.STOPPED.value
        record.stopped_at = parse_docker_time(info.finished_at) or now
        record.last_op_at = now
        return OperationResult(record=record)

    return await _drift(deps, game_id, OpKind.RECONCILE_OBSERVED_EXITED, "observed_exited", body)


async def adopt(deps: LifecycleDeps, container: ContainerInfo) -> bool:
    """A container of ours (owner + stack) with no live record → a new record.

    A label that is not a valid game_id never becomes a record, a lease key or
    a state path: such a container is left alone.
    """
    if not is_valid_game_id(container.game_id):
        return False
    game_id = require_game_id(container.game_id)

    async def body(op: Operation) -> OperationResult:
        entry = op.entry
        record = await deps.repos.get_record(game_id)
        if record is not None and record.status != RuntimeStatus.REMOVED:
            return OperationResult(record=None)
        info = await deps.docker.inspect(container.id)
        if info is None:
            return OperationResult(record=None)
        now = deps.clock()
        entry.container_id = info.id
        entry.image_ref = info.image_ref
        adopted = adopted_record(deps, game_id, info, record, now)
        return OperationResult(record=adopted)

    return await _drift(deps, game_id, OpKind.RECONCILE_ADOPT, "adopt", body)


async def _drift(deps: LifecycleDeps, game_id: str, kind: OpKind, drift: str, body: Body) -> bool:
    result = await run_operation(
        deps,
        game_id=game_id,
        kind=kind,
        source=OpSource.RECONCILER,
        body=body,
        record_conflicts=False,
    )
    if result.record is None:
        return False
    deps.metrics.reconcile_drift.add(1, {"kind": drift})
    return True


def adopted_record(
    deps: LifecycleDeps,
    game_id: str,
    info: ContainerInfo,
    record: RuntimeRecord | None,
    now: datetime,
) -> RuntimeRecord:
    """The record an adopted container gets: running or stopped as Docker shows it,
    its times from Docker's, the old record's creation time and node kept."""
    running = info.running
    return RuntimeRecord(
        game_id=game_id,
        status=(RuntimeStatus.RUNNING if running else RuntimeStatus.STOPPED).value,
        current_container_id=info.id,
        current_image_ref=info.image_ref,
        engine_endpoint=engine_endpoint(game_id),
        state_path=str(state_path(deps, game_id)),
        docker_network=deps.settings.docker_network,
        started_at=parse_docker_time(info.started_at) or now,
        stopped_at=None if running else (parse_docker_time(info.finished_at) or now),
        removed_at=None,
        last_op_at=now,
        created_at=record.created_at if record else None,
        # An engine found running somewhere is where its state is used now.
        placement_node=info.node_id or (record.placement_node if record else None),
    )
