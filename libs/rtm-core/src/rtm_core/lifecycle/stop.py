"""Stop: end a running engine, keep its container for inspection and cleanup."""

from __future__ import annotations

from rtm_core.domain.errors import Conflict, NotFound
from rtm_core.domain.records import OperationLogEntry, RuntimeRecord
from rtm_core.domain.vocabulary import OpKind, OpSource, RuntimeStatus, StopReason, require_game_id
from rtm_core.lifecycle.deps import LifecycleDeps
from rtm_core.lifecycle.engine import retire
from rtm_core.lifecycle.operation import Job, Operation, OperationResult, run_operation


async def stop(
    deps: LifecycleDeps,
    game_id: str,
    reason: str,
    source: OpSource,
    *,
    lease_wait: float = 0.0,
    job_id: str | None = None,
) -> OperationResult:
    """`job_id`: the stream entry id of a Lobby stop job (orders it, see `Job`)."""
    require_game_id(game_id)
    StopReason.parse(reason)

    async def body(op: Operation) -> OperationResult:
        entry = op.entry
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
            await retire(deps, op.lease, record.current_container_id, remove=False)
        record.status = RuntimeStatus.STOPPED.value
        record.stopped_at = now
        return OperationResult(record=record)

    return await run_operation(
        deps,
        game_id=game_id,
        kind=OpKind.STOP,
        source=source,
        body=body,
        lease_wait=lease_wait,
        job=None if job_id is None else Job(job_id, _superseded_stop),
    )


async def _superseded_stop(
    entry: OperationLogEntry, record: RuntimeRecord | None, newer: str
) -> OperationResult:
    """A stop older than the game's last applied job: done already, or refused."""
    if record is None:
        raise NotFound(f"no runtime for game {entry.game_id}")
    entry.container_id = record.current_container_id
    entry.image_ref = record.current_image_ref
    if record.status != RuntimeStatus.RUNNING:
        return OperationResult(record=record, replay=True, write_record=False)
    raise Conflict(
        f"stop superseded by newer job {newer}: game {entry.game_id} runs "
        f"{record.current_image_ref}"
    )
