"""Launching and retiring a game's engine container: the steps start, restart
and patch share, each written once."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from rtm_core.domain.engine import ContainerInfo, ContainerNameInUse, engine_spec
from rtm_core.domain.errors import ContainerStartFailed, StartConfigInvalid
from rtm_core.domain.records import RuntimeRecord
from rtm_core.domain.vocabulary import HealthEventType, HealthSource, RuntimeStatus
from rtm_core.domain.vocabulary import engine_endpoint as endpoint_of
from rtm_core.lifecycle.deps import LifecycleDeps
from rtm_core.lifecycle.operation import AfterCommit
from rtm_core.ports import LeaseGrant
from rtm_core.settings import PullPolicy


def state_path(deps: LifecycleDeps, game_id: str) -> Path:
    return deps.settings.game_state_root / game_id


def _ensure_state_dir(path: Path, mode: int, uid: int, gid: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    if (path.stat().st_uid, path.stat().st_gid) != (uid, gid):
        os.chown(path, uid, gid)


async def ensure_state_dir(deps: LifecycleDeps, game_id: str) -> Path:
    path = state_path(deps, game_id)
    s = deps.settings
    try:
        await asyncio.to_thread(
            _ensure_state_dir,
            path,
            s.game_state_dir_mode,
            s.game_state_owner_uid,
            s.game_state_owner_gid,
        )
    except OSError as exc:
        raise ContainerStartFailed(f"state dir {path}: {exc.strerror or exc}") from exc
    return path


async def launch(
    deps: LifecycleDeps,
    lease: LeaseGrant,
    game_id: str,
    image_ref: str,
    previous: RuntimeRecord | None = None,
    *,
    pull_policy: PullPolicy | None = None,
) -> ContainerInfo:
    """State dir → image per policy → create + start (replacing a leftover of ours).

    A game that ran before is launched on the node its state lives on
    (`previous.placement_node`, multi-node backends). The lease is confirmed
    before each change to the daemon: a holder that lost it (paused past its
    TTL) stops before touching Docker again. `pull_policy` overrides
    RTMANAGER_IMAGE_PULL_POLICY (a rollback starts the image that just ran,
    from the daemon, without asking a registry).
    """
    s = deps.settings
    path = await ensure_state_dir(deps, game_id)
    labels = await deps.docker.ensure_image(image_ref, pull_policy or s.image_pull_policy)
    node = previous.placement_node if previous is not None else None
    try:
        spec = engine_spec(s, game_id, image_ref, str(path), labels, placement_node=node)
    except ValueError as exc:
        raise StartConfigInvalid(f"image {image_ref} resource labels: {exc}") from exc
    await lease.ensure_held()
    try:
        return await deps.docker.create_and_start(spec)
    except ContainerNameInUse:
        # The name is held by a container of ours that is no longer current (the
        # previous run of a stopped game, or a crash between create and commit):
        # retire it and try once more. Anyone else's container keeps the name,
        # and the start fails with container_start_failed.
        leftovers = [c for c in await deps.docker.list_owned(game_id) if c.name == spec.name]
        if not leftovers:
            raise
        for leftover in leftovers:
            await retire(deps, lease, leftover.id)
        await lease.ensure_held()
        return await deps.docker.create_and_start(spec)


async def retire(
    deps: LifecycleDeps, lease: LeaseGrant, container_id: str, *, remove: bool = True
) -> None:
    """Stop (and remove) a container RTM means to end, announcing the exit first."""
    await lease.ensure_held()
    await deps.exits.mark(container_id)
    await deps.docker.stop(container_id, deps.settings.container_stop_timeout_seconds)
    if remove:
        await deps.docker.remove(container_id)


def running_record(
    deps: LifecycleDeps,
    game_id: str,
    info: ContainerInfo,
    image_ref: str,
    previous: RuntimeRecord | None,
) -> RuntimeRecord:
    now = deps.clock()
    return RuntimeRecord(
        game_id=game_id,
        status=RuntimeStatus.RUNNING.value,
        current_container_id=info.id,
        current_image_ref=image_ref,
        engine_endpoint=endpoint_of(game_id),
        state_path=str(state_path(deps, game_id)),
        docker_network=deps.settings.docker_network,
        started_at=now,
        stopped_at=None,
        removed_at=None,
        last_op_at=now,
        created_at=previous.created_at if previous else None,
        placement_node=placement_of(info, previous),
        quarantined=previous.quarantined if previous else False,
    )


def placement_of(info: ContainerInfo, previous: RuntimeRecord | None) -> str | None:
    """The node a game was first placed on stays its node (its state is there);
    a game placed for the first time takes the node its engine landed on."""
    if previous is not None and previous.placement_node:
        return previous.placement_node
    return info.node_id


def announce_started(
    deps: LifecycleDeps, game_id: str, container_id: str, image_ref: str
) -> AfterCommit:
    async def effect() -> None:
        await deps.health.report(
            game_id=game_id,
            container_id=container_id,
            event_type=HealthEventType.CONTAINER_STARTED,
            source=HealthSource.INSPECT,
            details={"image_ref": image_ref},
        )

    return effect


async def is_alive(deps: LifecycleDeps, record: RuntimeRecord) -> bool:
    if not record.current_container_id:
        return False
    info = await deps.docker.inspect(record.current_container_id)
    return info is not None and info.running
