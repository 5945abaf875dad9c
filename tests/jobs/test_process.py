"""The real `rtm-jobs` console command, run as processes with the test settings
as `RTMANAGER_*` variables: boot and probes, a clean SIGTERM, two replicas in
one consumer group, and a replica killed with SIGKILL in the middle of a job."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable

import aiodocker
import httpx
from harness import wait_for
from jobs.conftest import SpawnJobs
from jobs.helpers import hold_lease, nothing_pending, start_job, wait_results
from processes import BOOT_LINES
from redis.asyncio import Redis
from rig import Rig

from rtm_core.settings import Settings

WORKERS = ["start_jobs_consumer", "stop_jobs_consumer"]


async def containers_of(docker: aiodocker.Docker, game_id: str) -> list:
    return await docker.containers.list(
        all=True, filters=json.dumps({"label": [f"com.galaxy.game_id={game_id}"]})
    )


async def test_boots_answers_a_job_and_stops_cleanly_on_sigterm(
    spawn_jobs: SpawnJobs, core: Rig, redis: Redis, game_id: str
) -> None:
    settings = core.settings  # `core` removes this test's engines afterwards
    jobs = await spawn_jobs(settings, shutdown_timeout="10s")
    expected = [*BOOT_LINES, "worker started"]
    messages = [line.get("message") for line in jobs.lines]
    boot = [m for i, m in enumerate(messages) if m in expected and m not in messages[:i]]
    assert boot == expected, jobs.output
    started = sorted(line["worker"] for line in jobs.logged("worker started"))
    assert started == WORKERS

    ops = f"http://{jobs.env['RTMANAGER_OPS_HTTP_ADDR']}"
    async with httpx.AsyncClient(base_url=ops) as http:
        health = await http.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        ready = await http.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})

    entry = await start_job(redis, settings, game_id)
    (result,) = await wait_results(redis, settings, 1)
    assert (result["game_id"], result["outcome"], result["error_code"]) == (game_id, "success", "")
    await wait_for(lambda: _get(redis, "rtmanager:stream_offsets:startjobs", entry))

    assert await jobs.signal(signal.SIGTERM, timeout=15) == 0
    assert len(jobs.logged("worker started")) == 2  # once per loop, at boot only
    assert sorted(line["worker"] for line in jobs.logged("worker stopped")) == WORKERS
    assert len(jobs.logged("stream offset persisted")) == 2
    assert jobs.lines[-1]["message"] == "shutdown complete"
    assert await nothing_pending(redis, settings)


async def _get(redis: Redis, key: str, value: str) -> bool:
    return await redis.get(key) == value


async def test_two_replicas_share_the_streams_one_result_per_job(
    spawn_jobs: SpawnJobs,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    redis: Redis,
    docker: aiodocker.Docker,
    game_id: str,
) -> None:
    # One job at a time per replica, so neither can take the whole burst.
    settings = make_settings(jobs_concurrency=1)
    make_core(settings)  # removes this test's engines afterwards
    a = await spawn_jobs(settings, jobs_consumer_name="replica-a")
    b = await spawn_jobs(settings, jobs_consumer_name="replica-b")
    games = [f"{game_id}-{i}" for i in range(6)]
    entries = [await start_job(redis, settings, g) for g in [*games, *games[:2]]]

    results = await wait_results(redis, settings, len(entries), timeout=40)
    await wait_for(lambda: nothing_pending(redis, settings))
    assert len(await redis.xrange(settings.redis_job_results_stream)) == len(entries)
    ran = [line["entry_id"] for line in a.logged("job completed") + b.logged("job completed")]
    assert sorted(ran) == sorted(entries)  # each job ran exactly once, on one replica
    assert a.logged("job completed") and b.logged("job completed")  # both took a share

    for g in games:
        mine = [(r["outcome"], r["error_code"]) for r in results if r["game_id"] == g]
        twice = g in games[:2]
        assert sorted(mine) == sorted(
            [("success", ""), ("success", "replay_no_op")] if twice else [("success", "")]
        )
        assert len(await containers_of(docker, g)) == 1


async def test_a_replica_killed_mid_job_leaves_the_job_to_the_other(
    spawn_jobs: SpawnJobs,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    redis: Redis,
    docker: aiodocker.Docker,
    game_id: str,
) -> None:
    settings = make_settings(jobs_claim_idle="2s")
    make_core(settings)  # removes this test's engines afterwards
    replicas = {
        name: await spawn_jobs(settings, jobs_consumer_name=name)
        for name in ("replica-a", "replica-b")
    }
    stream, group = settings.redis_start_jobs_stream, settings.jobs_consumer_group
    # The game is busy elsewhere, so whoever reads the job is inside it, waiting.
    lease = await hold_lease(redis, game_id)
    entry = await start_job(redis, settings, game_id)

    async def owner() -> str | None:
        pending = await redis.xpending_range(stream, group, min=entry, max=entry, count=1)
        return str(pending[0]["consumer"]) if pending else None

    victim_name = await wait_for(owner)
    victim = replicas.pop(victim_name)
    (survivor,) = replicas.values()
    assert await victim.signal(signal.SIGKILL) == -signal.SIGKILL
    await redis.delete(lease)

    (result,) = await wait_results(redis, settings, 1, timeout=30)
    assert (result["game_id"], result["outcome"], result["error_code"]) == (game_id, "success", "")
    await wait_for(lambda: nothing_pending(redis, settings))
    assert len(await redis.xrange(settings.redis_job_results_stream)) == 1
    assert [line["entry_id"] for line in survivor.logged("job completed")] == [entry]
    (claimed,) = survivor.logged("claimed idle entries")
    assert claimed["entry_ids"] == [entry]
    (container,) = await containers_of(docker, game_id)
    assert container.id == result["container_id"]
