"""A job re-delivered after a newer job of its game (issue 10 §1, stream side).

The consumers hand each entry's id to the lifecycle as the job's place in
its game's order. A re-delivery is what happens when a replica applied a
job and died before answering it: the entry stays pending until a peer
claims it, and by then Lobby may have written, and RTM applied, a newer job
for the game. The old job is answered from the game's state, exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import aiodocker
from harness import wait_for
from jobs.conftest import RunJobs
from jobs.helpers import V100, nothing_pending, start_job, stop_job, untraced, wait_results
from redis.asyncio import Redis
from rig import Rig

from rtm_core.domain.vocabulary import OpSource
from rtm_core.settings import Settings


async def containers(docker: aiodocker.Docker, game_id: str) -> list:
    return await docker.containers.list(
        all=True, filters=json.dumps({"label": [f"com.galaxy.game_id={game_id}"]})
    )


async def test_a_start_redelivered_after_lobby_stopped_the_game_is_superseded(
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    run_jobs: RunJobs,
    redis: Redis,
    docker: aiodocker.Docker,
    game_id: str,
) -> None:
    core = make_core(make_settings(jobs_claim_idle="2s"))
    settings = core.settings
    stream, group = settings.redis_start_jobs_stream, settings.jobs_consumer_group
    await redis.xgroup_create(stream, group, id="0", mkstream=True)
    start = await start_job(redis, settings, game_id)
    # A replica read the start and applied it (as the job it is), then died
    # before its result: the entry stays pending under the dead replica's name.
    await redis.xreadgroup(group, "dead-replica", {stream: ">"}, count=1)
    started = await core.lifecycle.start(game_id, V100, OpSource.LOBBY_STREAM, job_id=start)
    assert started.record is not None
    # Lobby stops the game; a live replica runs that stop first (the start is
    # not idle long enough to be claimed yet).
    stop = await stop_job(redis, settings, game_id, "cancelled")
    await redis.xclaim(stream, group, "dead-replica", 0, [start], justid=True)
    await run_jobs(core, consumer="live-replica")

    stopped, superseded = await wait_results(redis, settings, 2, timeout=30)

    assert (stopped["outcome"], stopped["error_code"]) == ("success", "")
    assert untraced(superseded) == {
        "game_id": game_id,
        "outcome": "failure",
        "container_id": "",
        "engine_endpoint": "",
        "error_code": "conflict",
        "error_message": f"start superseded by newer job {stop}: game {game_id} is stopped",
    }
    await wait_for(lambda: nothing_pending(redis, settings))
    assert await redis.xlen(settings.redis_job_results_stream) == 2  # one result per job
    record = await core.repos.get_record(game_id)
    assert record is not None and record.status == "stopped"
    (container,) = await containers(docker, game_id)
    assert container.id == started.record.current_container_id
    assert not (await container.show())["State"]["Running"]
    fence = await core.repos.get_fence(game_id)
    assert fence is not None and fence.last_job_id == stop  # the old start never moves it back


async def test_a_stop_redelivered_after_a_newer_stop_is_a_replay(
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    run_jobs: RunJobs,
    redis: Redis,
    game_id: str,
) -> None:
    core = make_core(make_settings(jobs_claim_idle="2s"))
    settings = core.settings
    stream, group = settings.redis_stop_jobs_stream, settings.jobs_consumer_group
    await core.lifecycle.start(game_id, V100, OpSource.ADMIN_REST)
    await redis.xgroup_create(stream, group, id="0", mkstream=True)
    first = await stop_job(redis, settings, game_id, "finished")
    await redis.xreadgroup(group, "dead-replica", {stream: ">"}, count=1)
    await core.lifecycle.stop(game_id, "finished", OpSource.LOBBY_STREAM, job_id=first)
    second = await stop_job(redis, settings, game_id, "cancelled")
    await redis.xclaim(stream, group, "dead-replica", 0, [first], justid=True)
    await run_jobs(core, consumer="live-replica")

    newer, older = await wait_results(redis, settings, 2, timeout=30)

    assert (newer["outcome"], newer["error_code"]) == ("success", "replay_no_op")
    assert (older["outcome"], older["error_code"]) == ("success", "replay_no_op")
    assert older["container_id"] == newer["container_id"] != ""
    fence = await core.repos.get_fence(game_id)
    assert fence is not None and fence.last_job_id == second
    await wait_for(lambda: nothing_pending(redis, settings))
