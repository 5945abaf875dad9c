"""Stop: end a running engine, keep its container for inspection and cleanup."""

from __future__ import annotations

from rtm_core.domain.errors import NotFound
from rtm_core.domain.records import OperationLogEntry
from rtm_core.domain.vocabulary import OpKind, OpSource, RuntimeStatus, StopReason, require_game_id
from rtm_core.lifecycle.deps import LifecycleDeps
from rtm_core.lifecycle.engine import retire
from rtm_core.lifecycle.operation import OperationResult, run_operation


async def stop(
    deps: LifecycleDeps,
    game_id: str,
    reason: str,
    source: OpSource,
    *,
    lease_wait: float = 0.0,
) -> OperationResult:
    require_game_id(game_id)
    StopReason.parse(reason)

    async def body(entry: OperationLogEntry) -> OperationResult:
        record = await deps.repos.get_record(game_id)
        if record is None:
            raise NotFound(f"no runtime for game {game_id}")
        entry.container_id = record.current_container_id
        entry.image_ref = record.current_image_ref
        now = deps.clock()
        record.last_op_at = now
        if record.status != RuntimeStatus.RUNNING:
            return OperationResult(record=record, replay=True)
        if record.current_container_id:
            await retire(deps, record.current_container_id, remove=False)
        record.status = RuntimeStatus.STOPPED.value
        record.stopped_at = now
        return OperationResult(record=record)

    return await run_operation(
        deps, game_id=game_id, kind=OpKind.STOP, source=source, body=body, lease_wait=lease_wait
    )
