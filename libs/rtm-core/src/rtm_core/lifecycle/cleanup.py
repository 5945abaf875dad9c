"""Cleanup: remove a stopped engine's container; the state dir stays."""

from __future__ import annotations

from datetime import datetime

from rtm_core.domain.errors import Conflict, NotFound
from rtm_core.domain.vocabulary import OpKind, OpSource, RuntimeStatus, require_game_id
from rtm_core.lifecycle.deps import LifecycleDeps
from rtm_core.lifecycle.engine import retire
from rtm_core.lifecycle.operation import Operation, OperationResult, run_operation


async def cleanup(
    deps: LifecycleDeps,
    game_id: str,
    source: OpSource,
    *,
    lease_wait: float = 0.0,
    stopped_before: datetime | None = None,
) -> OperationResult:
    """`stopped_before` (retention cleanup) re-checks age under the lease."""
    require_game_id(game_id)

    async def body(op: Operation) -> OperationResult:
        entry = op.entry
        record = await deps.repos.get_record(game_id)
        if record is None:
            raise NotFound(f"no runtime for game {game_id}")
        if stopped_before is not None and (
            record.status != RuntimeStatus.STOPPED
            or record.stopped_at is None
            or record.stopped_at >= stopped_before
        ):
            return OperationResult(record=None)  # restarted or re-stopped meanwhile
        entry.container_id = record.current_container_id
        entry.image_ref = record.current_image_ref
        if record.status == RuntimeStatus.RUNNING:
            raise Conflict(f"runtime {game_id} is running; stop it first")
        now = deps.clock()
        record.last_op_at = now
        if record.status == RuntimeStatus.REMOVED:
            return OperationResult(record=record, replay=True)
        if record.current_container_id:
            await retire(deps, op.lease, record.current_container_id)
        record.status = RuntimeStatus.REMOVED.value
        record.removed_at = now
        return OperationResult(record=record)

    return await run_operation(
        deps,
        game_id=game_id,
        kind=OpKind.CLEANUP_CONTAINER,
        source=source,
        body=body,
        lease_wait=lease_wait,
        # Retention skips a busy game quietly (next pass); a caller's cleanup records it.
        record_conflicts=stopped_before is None,
    )
