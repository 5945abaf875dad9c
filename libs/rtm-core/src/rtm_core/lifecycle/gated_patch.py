"""Patch behind a health gate, with rollback (issue 12; RTMANAGER_PATCH_HEALTH_GATE=on).

Under the game's lease, in this order; each phase is stored in
`patch_progress` before its step begins:

1. Checks that touch nothing: the patch rules (`replace.patch`), the new
   image present per pull policy, and (snapshots on) the state directory's
   size under `RTMANAGER_PATCH_SNAPSHOT_MAX_SIZE` and its filesystem's free
   space. A refusal here (`conflict`) leaves the engine running as it was.
2. `stopping`: the old engine is stopped and removed.
3. `snapshotting`: the state directory is copied to
   `<root>/.snapshots/<game_id>/<stamp>` (`lifecycle.snapshots`). The copy is
   taken once the old engine has stopped, so it is a state the engine left
   at rest, never one it was halfway through writing.
4. `gating`: the new engine is created and started, then probed: it must
   answer `RTMANAGER_PATCH_GATE_PROBES` consecutive `/healthz` within
   `RTMANAGER_PATCH_GATE_DEADLINE`. Passed: record, operation-log row and
   the end of the progress row are one commit, then `container_started`.
5. `rolling_back` (the gate failed, or the new engine did not start, or the
   snapshot could not be taken): every container of the game is removed, the
   state directory is restored from the snapshot, the previous image is
   started again, and one commit writes the record, a `patch_rollback` row
   (image_ref = the previous image, previous_image_ref = the rejected one)
   and ends the progress row. The patch itself answers `patch_rolled_back`
   (502) naming the failed check, and leaves its own failure row.

Health events tell the same story after the fact: `container_started` of the
rejected engine, `probe_failed` with the gate's last answer (when the gate
probed it), then `container_started` of the restored one.

Interrupted: an RTM that dies (or loses its lease) mid-patch leaves the
progress row. The reconciler's pass, or the game's next operation, finds it
under the game's lease and rolls back from whatever phase was stored
(`finish_interrupted`): nothing was stopped yet → nothing to undo; anything
later → remove the game's containers, restore the snapshot if one was
complete, start the previous image. The interrupted patch gets its failure
row then (`patch_rolled_back`, "interrupted in phase …").
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from rtm_core.domain.errors import (
    Conflict,
    ContainerStartFailed,
    ImagePullFailed,
    PatchRolledBack,
    RtmError,
    StartConfigInvalid,
)
from rtm_core.domain.records import (
    OperationLogEntry,
    PatchPhase,
    PatchProgress,
    RuntimeRecord,
)
from rtm_core.domain.vocabulary import (
    HealthEventType,
    HealthSource,
    OpKind,
    OpSource,
    Outcome,
    RuntimeStatus,
)
from rtm_core.lifecycle import snapshots
from rtm_core.lifecycle.deps import LifecycleDeps
from rtm_core.lifecycle.engine import (
    announce_started,
    ensure_state_dir,
    launch,
    retire,
    running_record,
    state_path,
)
from rtm_core.lifecycle.gate import GateResult, await_healthy
from rtm_core.lifecycle.operation import AfterCommit, Operation, OperationResult
from rtm_core.ports import LeaseGrant
from rtm_core.settings import PullPolicy

log = logging.getLogger("rtm_core.lifecycle.gated_patch")


@dataclass
class _Story:
    """Health events to publish once the outcome is committed, in order."""

    effects: list[AfterCommit] = field(default_factory=list)

    def started(self, deps: LifecycleDeps, game_id: str, container_id: str, image: str) -> None:
        self.effects.append(announce_started(deps, game_id, container_id, image))

    def gate_failed(
        self, deps: LifecycleDeps, game_id: str, container_id: str, gate: GateResult
    ) -> None:
        last = gate.last

        async def effect() -> None:
            await deps.health.report(
                game_id=game_id,
                container_id=container_id,
                event_type=HealthEventType.PROBE_FAILED,
                source=HealthSource.PROBE,
                details={
                    "consecutive_failures": gate.failing,
                    "last_status": last.status if last else 0,
                    "last_error": (last.error if last else "") or gate.reason,
                },
            )

        self.effects.append(effect)

    async def tell(self) -> None:
        for effect in self.effects:
            try:
                await effect()
            except Exception:
                log.exception("patch health event failed")


async def gated_patch(
    deps: LifecycleDeps, op: Operation, record: RuntimeRecord, image_ref: str, source: OpSource
) -> OperationResult:
    """The body of a patch with the gate on; `record` passed the patch rules."""
    s = deps.settings
    game_id = record.game_id
    assert record.current_image_ref is not None
    entry = op.entry
    entry.previous_image_ref = record.current_image_ref
    entry.image_ref = image_ref
    # 1. Nothing touched yet: refusals leave the engine as it was.
    await deps.docker.ensure_image(image_ref, s.image_pull_policy)
    state_dir = await ensure_state_dir(deps, game_id)
    if s.patch_snapshots:
        try:
            await asyncio.to_thread(snapshots.check_size, state_dir, s.patch_snapshot_max_size)
        except snapshots.SnapshotTooLarge as exc:
            raise Conflict(f"patch refused, nothing changed: {exc}") from None
    progress = PatchProgress(
        game_id=game_id,
        phase=PatchPhase.STOPPING.value,
        source=source.value,
        from_image_ref=record.current_image_ref,
        to_image_ref=image_ref,
        from_container_id=record.current_container_id,
        from_status=record.status,
        started_at=entry.started_at,
    )
    await deps.repos.save_patch_progress(progress)
    try:
        return await _replace_gated(deps, op, record, image_ref, source, progress, state_dir)
    except PatchRolledBack:
        raise
    except Exception:
        # This patch answers now (the frame writes its failure row): whoever
        # finishes the rollback later writes only the rollback's row. A
        # cancelled patch (shutdown) writes no row: the finisher writes it.
        progress.answered = True
        try:
            await asyncio.shield(deps.repos.save_patch_progress(progress))
        except Exception:
            log.exception("could not mark the interrupted patch", extra={"game_id": game_id})
        raise


async def _replace_gated(
    deps: LifecycleDeps,
    op: Operation,
    record: RuntimeRecord,
    image_ref: str,
    source: OpSource,
    progress: PatchProgress,
    state_dir: Path,
) -> OperationResult:
    s = deps.settings
    game_id = record.game_id
    entry = op.entry
    # 2. The old engine goes.
    if record.current_container_id:
        await retire(deps, op.lease, record.current_container_id)
    # 3. Its state, at rest.
    story = _Story()
    failure = ""
    if s.patch_snapshots:
        progress.phase = PatchPhase.SNAPSHOTTING.value
        await deps.repos.save_patch_progress(progress)
        try:
            taken = await asyncio.to_thread(
                snapshots.take,
                s.game_state_root,
                game_id,
                state_dir,
                deps.clock(),
                s.game_state_owner_gid,
            )
            progress.snapshot_path = str(taken)
        except OSError as exc:
            failure = f"the state snapshot failed: {exc.strerror or exc}"
    # 4. The new engine, behind the gate.
    if not failure:
        progress.phase = PatchPhase.GATING.value
        await deps.repos.save_patch_progress(progress)
        try:
            info = await launch(deps, op.lease, game_id, image_ref, record)
        except (ContainerStartFailed, ImagePullFailed, StartConfigInvalid) as exc:
            failure = f"the new engine did not start: {exc.message}"
        else:
            entry.container_id = info.id  # the patch's row names the engine it tried
            progress.new_container_id = info.id
            await deps.repos.save_patch_progress(progress)
            endpoint = running_record(deps, game_id, info, image_ref, record).engine_endpoint
            gate = await await_healthy(
                deps,
                endpoint=endpoint or "",
                container_id=info.id,
                successes=s.patch_gate_probes,
                deadline=s.patch_gate_deadline,
                interval=s.patch_gate_interval,
            )
            if gate.passed:
                entry.container_id = info.id
                new = running_record(deps, game_id, info, image_ref, record)
                return OperationResult(
                    record=new,
                    after_commit=[
                        announce_started(deps, game_id, info.id, image_ref),
                        _pruner(deps, game_id),
                    ],
                    relaunched=True,
                    finish_patch=True,
                )
            failure = f"the new engine failed its health gate: {gate.reason}"
            story.started(deps, game_id, info.id, image_ref)
            story.gate_failed(deps, game_id, info.id, gate)
    # 5. Undo.
    await roll_back(deps, op.lease, progress, failure, source, story)
    await story.tell()
    raise PatchRolledBack(
        f"patch of {game_id} to {image_ref} rolled back to {progress.from_image_ref}: {failure}"
    )


async def roll_back(
    deps: LifecycleDeps,
    lease: LeaseGrant,
    progress: PatchProgress,
    failure: str,
    source: OpSource,
    story: _Story,
) -> RuntimeRecord:
    """Remove the game's containers, restore its state, start the previous image,
    and commit the record with a `patch_rollback` row (ending the progress row).
    Every step is safe to repeat: an interrupted rollback is run again."""
    s = deps.settings
    game_id = progress.game_id
    started_at = deps.clock()
    progress.phase = PatchPhase.ROLLING_BACK.value
    progress.failure = progress.failure or failure
    await deps.repos.save_patch_progress(progress)
    for container in await deps.docker.list_owned(game_id):
        await retire(deps, lease, container.id)
    state_dir = state_path(deps, game_id)
    await asyncio.to_thread(snapshots.discard_partials, s.game_state_root, game_id)
    if progress.snapshot_path:
        rejected = await asyncio.to_thread(
            snapshots.restore,
            Path(progress.snapshot_path),
            state_dir,
            deps.clock(),
            s.game_state_owner_gid,
        )
        log.info(
            "patch rollback restored the state directory",
            extra={
                "game_id": game_id,
                "snapshot": progress.snapshot_path,
                "rejected_state": str(rejected) if rejected else None,
            },
        )
    # The previous image ran until a moment ago: take it from the daemon when
    # it is there, whatever the pull policy (a registry outage must not keep
    # the game down).
    previous = await deps.repos.get_record(game_id)
    info = await launch(
        deps,
        lease,
        game_id,
        progress.from_image_ref,
        previous,
        pull_policy=PullPolicy.IF_NOT_PRESENT,
    )
    record = running_record(deps, game_id, info, progress.from_image_ref, previous)
    row = OperationLogEntry(
        game_id=game_id,
        op_kind=OpKind.PATCH_ROLLBACK.value,
        op_source=source.value,
        outcome=Outcome.SUCCESS.value,
        image_ref=progress.from_image_ref,
        previous_image_ref=progress.to_image_ref,
        container_id=info.id,
        started_at=started_at,
        finished_at=deps.clock(),
    )
    # No job id: a rollback restores, it is no command of its own (and the
    # failed patch does not move the game's order either).
    await deps.repos.commit_operation(row, record, fence=lease.fence, finish_patch=True)
    deps.metrics.operations.add(
        1, {"op_kind": row.op_kind, "outcome": row.outcome, "error_code": ""}
    )
    log.warning(
        "patch rolled back",
        extra={
            "game_id": game_id,
            "op_kind": row.op_kind,
            "image_ref": progress.from_image_ref,
            "rejected_image_ref": progress.to_image_ref,
            "container_id": info.id,
            "error": progress.failure,
        },
    )
    story.started(deps, game_id, info.id, progress.from_image_ref)
    try:
        await asyncio.to_thread(
            snapshots.prune,
            s.game_state_root,
            game_id,
            s.patch_snapshot_keep,
            s.patch_snapshot_max_age,
            deps.clock(),
        )
    except OSError:
        log.warning("snapshot retention failed", extra={"game_id": game_id}, exc_info=True)
    return record


async def finish_interrupted(
    deps: LifecycleDeps, lease: LeaseGrant, progress: PatchProgress, by: OpSource
) -> None:
    """Roll back a patch an RTM left unfinished, under the game's lease: from the
    game's next operation (`by` its source) or the reconciler's sweep."""
    game_id = progress.game_id
    phase = progress.phase
    failed = OperationLogEntry(
        game_id=game_id,
        op_kind=OpKind.PATCH.value,
        op_source=progress.source,
        outcome=Outcome.FAILURE.value,
        error_code=PatchRolledBack.code,
        image_ref=progress.to_image_ref,
        previous_image_ref=progress.from_image_ref,
        container_id=progress.new_container_id,
        started_at=progress.started_at,
        finished_at=deps.clock(),
    )
    if phase == PatchPhase.STOPPING and await _untouched(deps, progress):
        failed.error_message = (
            f"patch interrupted before the engine was stopped; nothing changed "
            f"({progress.from_image_ref} kept)"
        )
        if progress.answered:  # the patch wrote its own failure row
            await deps.repos.delete_patch_progress(game_id)
        else:
            await deps.repos.commit_operation(failed, None, fence=lease.fence, finish_patch=True)
        log.warning("interrupted patch dropped", extra={"game_id": game_id, "phase": phase})
        return
    story = _Story()
    reason = progress.failure or f"patch interrupted in phase {phase}"
    restored = await roll_back(deps, lease, progress, reason, by, story)
    if not progress.answered:
        failed.error_message = (
            f"patch of {game_id} to {progress.to_image_ref} rolled back to "
            f"{progress.from_image_ref}: {reason}"
        )
        failed.finished_at = deps.clock()
        await deps.repos.append_operation(failed)
        deps.metrics.operations.add(
            1,
            {
                "op_kind": failed.op_kind,
                "outcome": failed.outcome,
                "error_code": PatchRolledBack.code,
            },
        )
    log.warning(
        "interrupted patch rolled back",
        extra={"game_id": game_id, "phase": phase, "container_id": restored.current_container_id},
    )
    await story.tell()


async def _untouched(deps: LifecycleDeps, progress: PatchProgress) -> bool:
    """Interrupted while stopping: is the old engine still as the patch found it?"""
    record = await deps.repos.get_record(progress.game_id)
    if record is None or record.current_container_id != progress.from_container_id:
        return False
    if not progress.from_container_id:
        return False
    info = await deps.docker.inspect(progress.from_container_id)
    if info is None:
        return False
    return info.running if progress.from_status == RuntimeStatus.RUNNING else True


def _pruner(deps: LifecycleDeps, game_id: str) -> AfterCommit:
    async def prune() -> None:
        s = deps.settings
        await asyncio.to_thread(
            snapshots.prune,
            s.game_state_root,
            game_id,
            s.patch_snapshot_keep,
            s.patch_snapshot_max_age,
            deps.clock(),
        )

    return prune


async def finish_interrupted_patches(deps: LifecycleDeps) -> int:
    """The reconciler's sweep: every patch left unfinished whose game no operation
    holds is rolled back (whatever RTMANAGER_PATCH_HEALTH_GATE says now). Returns
    how many were; a game that is busy, or whose rollback fails, waits for the
    next sweep."""
    done = 0
    for pending in await deps.repos.patches_in_progress():
        game_id = pending.game_id
        try:
            async with deps.leases.hold(game_id) as lease:
                stored = await deps.repos.get_fence(game_id)
                if stored is not None:
                    await lease.advance_past(stored.fence)
                progress = await deps.repos.get_patch_progress(game_id)
                if progress is None:
                    continue  # finished meanwhile
                await finish_interrupted(deps, lease, progress, OpSource.RECONCILER)
        except RtmError as exc:
            log.warning(
                "interrupted patch not finished yet",
                extra={"game_id": game_id, "error_code": exc.code, "error": exc.message},
            )
            continue
        except Exception:
            # A restore that cannot be done (the snapshot is gone, the disk
            # full): the game stays as it is and the pass goes on; an operator
            # restores by hand (runbook "Patch behind a health gate").
            log.exception("interrupted patch could not be rolled back", extra={"game_id": game_id})
            continue
        done += 1
    return done


async def prune_snapshots(deps: LifecycleDeps) -> int:
    """Snapshot retention over every game (the cleanup loop): count and age."""
    s = deps.settings
    folder = s.game_state_root / snapshots.SNAPSHOTS_DIR

    def sweep() -> int:
        if not folder.is_dir():
            return 0
        count = 0
        for game in sorted(p.name for p in folder.iterdir() if p.is_dir()):
            count += len(
                snapshots.prune(
                    s.game_state_root,
                    game,
                    s.patch_snapshot_keep,
                    s.patch_snapshot_max_age,
                    deps.clock(),
                )
            )
        return count

    return await asyncio.to_thread(sweep)
