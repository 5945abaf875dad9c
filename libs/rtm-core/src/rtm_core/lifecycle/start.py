"""Start: bring a game's engine up, or confirm it is already up (replay)."""

from __future__ import annotations

import contextlib

from rtm_core.domain.errors import (
    Conflict,
    ContainerStartFailed,
    ImagePullFailed,
    RtmError,
    StartConfigInvalid,
)
from rtm_core.domain.imageref import validate_image_ref
from rtm_core.domain.records import OperationLogEntry, RuntimeRecord
from rtm_core.domain.vocabulary import OpKind, OpSource, RuntimeStatus, is_valid_game_id
from rtm_core.domain.wire import NotificationIntent, now_ms
from rtm_core.lifecycle.deps import LifecycleDeps
from rtm_core.lifecycle.engine import (
    announce_started,
    is_alive,
    launch,
    retire,
    running_record,
)
from rtm_core.lifecycle.gate import await_healthy
from rtm_core.lifecycle.operation import Job, Operation, OperationResult, run_operation

#: The three first-touch failures that page an admin.
_NOTIFY = (ImagePullFailed, ContainerStartFailed, StartConfigInvalid)


async def start(
    deps: LifecycleDeps,
    game_id: str,
    image_ref: str,
    source: OpSource,
    *,
    lease_wait: float = 0.0,
    job_id: str | None = None,
    wait_ready: bool | None = None,
) -> OperationResult:
    """`job_id`: the stream entry id of a Lobby start job (orders it, see `Job`).

    `wait_ready` (None: RTMANAGER_START_WAIT_READY): answer only once the new
    engine has answered `/healthz`; an engine that has not within
    RTMANAGER_START_READY_TIMEOUT is removed again and the start fails with
    `container_start_failed`, leaving the record as it was (as any failed
    start does). A replay answers at once: its engine is already up.
    """
    wait = bool(deps.settings.start_wait_ready) if wait_ready is None else wait_ready
    if not is_valid_game_id(game_id):
        # Nothing is written for a game_id that cannot name a container or a path.
        raise StartConfigInvalid("game_id must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    attempted_at_ms = now_ms()

    async def superseded(
        entry: OperationLogEntry, record: RuntimeRecord | None, newer: str
    ) -> OperationResult:
        """A start older than the game's last applied job: done already, or refused."""
        validate_image_ref(image_ref, deps.settings.image_allowed_prefixes)
        if record is not None:
            entry.container_id = record.current_container_id
            entry.previous_image_ref = record.current_image_ref
        if (
            record is not None
            and record.status == RuntimeStatus.RUNNING
            and record.current_image_ref == image_ref
        ):
            return OperationResult(record=record, replay=True, write_record=False)
        status = record.status if record is not None else "unknown"
        raise Conflict(f"start superseded by newer job {newer}: game {game_id} is {status}")

    async def body(op: Operation) -> OperationResult:
        entry = op.entry
        validate_image_ref(image_ref, deps.settings.image_allowed_prefixes)
        record = await deps.repos.get_record(game_id)
        if record is not None and record.status == RuntimeStatus.RUNNING:
            entry.previous_image_ref = record.current_image_ref
            entry.container_id = record.current_container_id
            if await is_alive(deps, record):
                if record.current_image_ref != image_ref:
                    raise Conflict(
                        f"game {game_id} runs {record.current_image_ref}; use patch to change it"
                    )
                record.last_op_at = deps.clock()
                return OperationResult(record=record, replay=True)
        deps.lobby.look_up(game_id)
        info = await launch(deps, op.lease, game_id, image_ref, record)
        entry.container_id = info.id
        new = running_record(deps, game_id, info, image_ref, record)
        if wait:
            await _await_ready(deps, op, new, image_ref)
        return OperationResult(
            record=new,
            after_commit=[announce_started(deps, game_id, info.id, image_ref)],
            relaunched=True,
        )

    try:
        return await run_operation(
            deps,
            game_id=game_id,
            kind=OpKind.START,
            source=source,
            body=body,
            lease_wait=lease_wait,
            image_ref=image_ref,
            job=None if job_id is None else Job(job_id, superseded),
        )
    except _NOTIFY as error:
        await _notify(deps, game_id, image_ref, error, attempted_at_ms)
        raise


async def _await_ready(
    deps: LifecycleDeps, op: Operation, record: RuntimeRecord, image_ref: str
) -> None:
    """The first successful `/healthz` of the engine just started, or its removal
    and `container_start_failed`."""
    container_id = record.current_container_id or ""
    gate = await await_healthy(
        deps,
        endpoint=record.engine_endpoint or "",
        container_id=container_id,
        successes=1,
        deadline=deps.settings.start_ready_timeout,
        interval=deps.settings.patch_gate_interval,
    )
    if gate.passed:
        return
    # A failed start leaves nothing behind (SPEC §6): the engine goes again.
    await retire(deps, op.lease, container_id)
    raise ContainerStartFailed(f"engine {image_ref} never became ready: {gate.reason}")


async def _notify(
    deps: LifecycleDeps, game_id: str, image_ref: str, error: RtmError, attempted_at_ms: int
) -> None:
    intent = NotificationIntent(
        game_id=game_id,
        image_ref=image_ref,
        error_code=error.code,
        error_message=error.message,
        attempted_at_ms=attempted_at_ms,
    )
    # An admin e-mail is best effort; the start's own failure result must still go out.
    with contextlib.suppress(Exception):
        await deps.publishers.notification_intent(intent)
