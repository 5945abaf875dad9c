"""Retention cleanup (`RetentionCleanup.run_once`) against real PostgreSQL and Docker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiodocker
import pytest
from reconciler.helpers import deps_of, start_engine
from rig import Rig
from sqlalchemy import text

from rtm_core.domain.vocabulary import OpSource
from rtm_core.settings import Settings
from rtm_reconciler.cleanup import RetentionCleanup


async def stopped_engine(core: Rig, game_id: str) -> str:
    record = await start_engine(core, game_id)
    await core.lifecycle.stop(game_id, "finished", OpSource.GM_REST)
    assert record.current_container_id
    return record.current_container_id


async def test_only_runtimes_stopped_past_retention_are_cleaned(
    core: Rig, cleanup_worker: RetentionCleanup, docker: aiodocker.Docker, game_id: str
) -> None:
    old, recent = f"{game_id}-old", f"{game_id}-recent"
    old_cid = await stopped_engine(core, old)
    recent_cid = await stopped_engine(core, recent)
    days = core.settings.container_retention_days
    # Stopped a day longer ago than retention allows.
    async with core.infra.postgres.begin() as conn:
        await conn.execute(
            text(
                "UPDATE rtmanager.runtime_records"
                " SET stopped_at = now() - make_interval(days => :d) WHERE game_id = :g"
            ),
            {"d": int(days) + 1, "g": old},
        )

    await cleanup_worker.run_once()

    with pytest.raises(aiodocker.DockerError):
        await docker.containers.get(old_cid)
    old_record = await core.repos.get_record(old)
    assert old_record is not None and old_record.status == "removed"
    row = (await core.repos.operations(old))[0]
    assert (row.op_kind, row.op_source, row.outcome, row.container_id) == (
        "cleanup_container",
        "cleanup_worker",
        "success",
        old_cid,
    )
    assert (core.settings.game_state_root / old).is_dir()  # the game's data stays

    assert (await docker.containers.get(recent_cid))._container["State"]["Status"] == "exited"
    recent_record = await core.repos.get_record(recent)
    assert recent_record is not None and recent_record.status == "stopped"
    assert [r.op_kind for r in await core.repos.operations(recent)] == ["stop", "start"]


async def test_a_tiny_retention_cleans_a_just_stopped_runtime(
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    settings: Settings,
    stop: asyncio.Event,
    docker: aiodocker.Docker,
    game_id: str,
) -> None:
    dsn = settings.postgres_primary_dsn
    core = make_core(make_settings(postgres_primary_dsn=dsn, container_retention_days=0))
    cid = await stopped_engine(core, game_id)

    await RetentionCleanup(deps_of(core), stop).run_once()

    with pytest.raises(aiodocker.DockerError):
        await docker.containers.get(cid)
    record = await core.repos.get_record(game_id)
    assert record is not None and record.status == "removed"
