"""Exactly-once effect per game across both streams and REST (issue 10 §1).

Each game remembers the id of the last job applied to it; a job older than
that is superseded: it touches nothing and is answered from the current
state (`replay_no_op` when the game is already where the job wanted it,
`conflict` naming the newer job otherwise). A REST command is ordered by the
Redis time at which it took the game's lease.
"""

from __future__ import annotations

import aiodocker
import pytest
from redis.asyncio import Redis
from rig import Rig

from rtm_core.domain.errors import Conflict
from rtm_core.domain.vocabulary import OpSource

V100 = "galaxy/test-engine:1.0.0"
V101 = "galaxy/test-engine:1.0.1"
LOBBY = OpSource.LOBBY_STREAM
ADMIN = OpSource.ADMIN_REST


async def redis_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def containers(docker: aiodocker.Docker, game_id: str) -> list[dict[str, object]]:
    found = await docker.containers.list(
        all=True, filters={"label": [f"com.galaxy.game_id={game_id}"]}
    )
    return [c._container for c in found]


async def last_row(core: Rig, game_id: str) -> tuple[str, str, str | None, str | None]:
    entry = (await core.repos.operations(game_id, limit=1))[0]
    return entry.op_kind, entry.outcome, entry.error_code, entry.error_message


async def test_a_start_redelivered_after_a_newer_stop_is_superseded(
    core: Rig, docker: aiodocker.Docker, game_id: str
) -> None:
    now = await redis_ms(core.redis)
    start_id, stop_id = f"{now}-0", f"{now + 5}-0"
    await core.lifecycle.start(game_id, V100, LOBBY, job_id=start_id)
    await core.lifecycle.stop(game_id, "finished", LOBBY, job_id=stop_id)
    before = await containers(docker, game_id)

    with pytest.raises(Conflict) as raised:
        await core.lifecycle.start(game_id, V100, LOBBY, job_id=start_id)

    assert stop_id in raised.value.message
    record = await core.repos.get_record(game_id)
    assert record is not None and record.status == "stopped"
    assert await containers(docker, game_id) == before  # nothing started, nothing removed
    kind, outcome, code, message = await last_row(core, game_id)
    assert (kind, outcome, code) == ("start", "failure", "conflict")
    assert message is not None and stop_id in message


async def test_a_superseded_job_already_in_effect_is_a_replay(core: Rig, game_id: str) -> None:
    now = await redis_ms(core.redis)
    old_stop, start, stop = f"{now}-0", f"{now + 1}-0", f"{now + 2}-0"
    await core.lifecycle.start(game_id, V100, LOBBY, job_id=start)
    await core.lifecycle.stop(game_id, "finished", LOBBY, job_id=stop)
    record = await core.repos.get_record(game_id)
    assert record is not None

    replay = await core.lifecycle.stop(game_id, "finished", LOBBY, job_id=old_stop)

    assert replay.replay and replay.record is not None
    assert replay.record.status == "stopped"
    after = await core.repos.get_record(game_id)
    assert after == record  # superseded: the record is not even touched
    assert await last_row(core, game_id) == ("stop", "success", "replay_no_op", None)
    fence = await core.repos.get_fence(game_id)
    assert fence is not None and fence.last_job_id == stop  # an old job never moves it back


async def test_the_same_job_delivered_twice_runs_idempotently(core: Rig, game_id: str) -> None:
    job = f"{await redis_ms(core.redis)}-3"
    first = await core.lifecycle.start(game_id, V100, LOBBY, job_id=job)
    again = await core.lifecycle.start(game_id, V100, LOBBY, job_id=job)
    assert not first.replay and again.replay
    assert first.record is not None and again.record is not None
    assert again.record.current_container_id == first.record.current_container_id


async def test_a_rest_stop_is_newer_than_a_lobby_start_written_before_it(
    core: Rig, docker: aiodocker.Docker, game_id: str
) -> None:
    """An admin stop after a Lobby start wins over a later re-delivery of that start."""
    start_id = f"{await redis_ms(core.redis)}-0"
    await core.lifecycle.start(game_id, V100, LOBBY, job_id=start_id)
    await core.lifecycle.stop(game_id, "admin_request", ADMIN)

    with pytest.raises(Conflict):
        await core.lifecycle.start(game_id, V100, LOBBY, job_id=start_id)

    record = await core.repos.get_record(game_id)
    assert record is not None and record.status == "stopped"
    fence = await core.repos.get_fence(game_id)
    assert fence is not None and fence.last_job_id is not None
    assert fence.last_job_id > start_id


async def test_a_newer_job_after_a_rest_command_applies(core: Rig, game_id: str) -> None:
    await core.lifecycle.start(game_id, V100, ADMIN)
    await core.lifecycle.stop(game_id, "admin_request", ADMIN)
    newer = f"{await redis_ms(core.redis) + 1}-0"

    started = await core.lifecycle.start(game_id, V100, LOBBY, job_id=newer)

    assert not started.replay and started.record is not None
    assert started.record.status == "running"


async def test_a_failed_job_does_not_move_the_order(core: Rig, game_id: str) -> None:
    """Only an applied job supersedes: a start that failed leaves an older stop valid."""
    now = await redis_ms(core.redis)
    await core.lifecycle.start(game_id, V100, LOBBY, job_id=f"{now}-0")
    with pytest.raises(Conflict):  # another image while running: refused, not applied
        await core.lifecycle.start(
            game_id, "galaxy/test-engine:1.0.1", LOBBY, job_id=f"{now + 9}-0"
        )

    stopped = await core.lifecycle.stop(game_id, "finished", LOBBY, job_id=f"{now + 5}-0")

    assert stopped.record is not None and stopped.record.status == "stopped"


async def test_reconcile_drifts_do_not_move_the_order(
    core: Rig, docker: aiodocker.Docker, game_id: str
) -> None:
    """A drift is an observation, not a command: the last job Lobby sent still orders."""
    start_id = f"{await redis_ms(core.redis)}-0"
    started = await core.lifecycle.start(game_id, V100, LOBBY, job_id=start_id)
    assert started.record is not None
    await docker.containers.container(started.record.current_container_id or "").delete(force=True)
    assert await core.lifecycle.reconcile_dispose(game_id)

    fence = await core.repos.get_fence(game_id)
    assert fence is not None and fence.last_job_id == start_id
