"""Restart and patch: replace the engine container, keep endpoint and state.

With RTMANAGER_PATCH_HEALTH_GATE=on a patch goes through `gated_patch`
(snapshot, health gate, rollback) instead of the plain replacement.
"""

from __future__ import annotations

from rtm_core.domain.errors import Conflict, NotFound
from rtm_core.domain.imageref import check_patch, parse_image_ref, validate_image_ref
from rtm_core.domain.records import RuntimeRecord
from rtm_core.domain.vocabulary import OpKind, OpSource, RuntimeStatus, require_game_id
from rtm_core.lifecycle.deps import LifecycleDeps
from rtm_core.lifecycle.engine import announce_started, launch, retire, running_record
from rtm_core.lifecycle.gated_patch import gated_patch
from rtm_core.lifecycle.operation import Operation, OperationResult, run_operation


async def _replaceable(deps: LifecycleDeps, game_id: str) -> RuntimeRecord:
    record = await deps.repos.get_record(game_id)
    if record is None:
        raise NotFound(f"no runtime for game {game_id}")
    if record.status == RuntimeStatus.REMOVED or not record.current_image_ref:
        raise Conflict(f"runtime {game_id} is removed; start it instead")
    return record


async def replace_engine(
    deps: LifecycleDeps, op: Operation, record: RuntimeRecord, image_ref: str
) -> OperationResult:
    entry = op.entry
    entry.previous_image_ref = record.current_image_ref
    entry.image_ref = image_ref
    if record.current_container_id:
        await retire(deps, op.lease, record.current_container_id)
    info = await launch(deps, op.lease, record.game_id, image_ref, record)
    entry.container_id = info.id
    new = running_record(deps, record.game_id, info, image_ref, record)
    return OperationResult(
        record=new,
        after_commit=[announce_started(deps, record.game_id, info.id, image_ref)],
        relaunched=True,
    )


async def restart(
    deps: LifecycleDeps, game_id: str, source: OpSource, *, lease_wait: float = 0.0
) -> OperationResult:
    require_game_id(game_id)

    async def body(op: Operation) -> OperationResult:
        record = await _replaceable(deps, game_id)
        assert record.current_image_ref is not None
        return await replace_engine(deps, op, record, record.current_image_ref)

    return await run_operation(
        deps, game_id=game_id, kind=OpKind.RESTART, source=source, body=body, lease_wait=lease_wait
    )


async def patch(
    deps: LifecycleDeps,
    game_id: str,
    image_ref: str,
    source: OpSource,
    *,
    lease_wait: float = 0.0,
) -> OperationResult:
    require_game_id(game_id)

    async def body(op: Operation) -> OperationResult:
        target = validate_image_ref(image_ref, deps.settings.image_allowed_prefixes)
        record = await _replaceable(deps, game_id)
        assert record.current_image_ref is not None
        op.entry.previous_image_ref = record.current_image_ref
        # Rules before touching anything: a refused patch leaves the engine as it was.
        check_patch(parse_image_ref(record.current_image_ref), target)
        if deps.settings.patch_health_gate:
            return await gated_patch(deps, op, record, image_ref, source)
        return await replace_engine(deps, op, record, image_ref)

    return await run_operation(
        deps,
        game_id=game_id,
        kind=OpKind.PATCH,
        source=source,
        body=body,
        lease_wait=lease_wait,
        image_ref=image_ref,
    )
