"""Benchmark (SPEC §10): N start jobs written at once → N results, against N
concurrent raw aiodocker create+start of the same image. Target: ≤ 1.2x.

    source .rtm-dev/test.env && .venv/bin/python bench/bench_jobs.py [--jobs 20] [--rounds 3]

Needs what the tests need: PostgreSQL (`RTM_TEST_POSTGRES_DSN`), Redis
(`RTM_TEST_REDIS_ADDR`), Docker, and the `galaxy/test-engine` images
(`make engine-image`). It makes its own database, network and stack label and
removes them afterwards. The jobs run through the real consumer loops of
`rtm-jobs` (in this process) on the real core; the raw side creates the very
container config RTM would (`EngineSpec.create_config`). Rounds alternate
raw and RTM; medians are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiodocker
import asyncpg

from rtm_core import db
from rtm_core.bootstrap import Core, redis_client, wire
from rtm_core.docker import DockerEngine, EngineSpec
from rtm_core.domain import container_name
from rtm_core.settings import Settings, load_settings
from rtm_core.telemetry import Metrics
from rtm_jobs.consumer import JobConsumer
from rtm_jobs.jobs import START_JOBS, STOP_JOBS
from rtm_jobs.scheduler import JobScheduler

IMAGE = "galaxy/test-engine:1.0.0"


def _settings(dsn: str, network: str, stack: str, state_root: Path, concurrency: int) -> Settings:
    run = uuid.uuid4().hex[:8]
    return load_settings(
        postgres_primary_dsn=dsn,
        redis_master_addr=os.environ.get("RTM_TEST_REDIS_ADDR", "127.0.0.1:6379"),
        docker_network=network,
        stack=stack,
        game_state_root=state_root,
        game_state_owner_uid=os.getuid(),
        game_state_owner_gid=os.getgid(),
        image_pull_policy="never",
        container_stop_timeout_seconds=1,
        lobby_internal_base_url="http://127.0.0.1:9",
        jobs_concurrency=concurrency,
        redis_start_jobs_stream=f"bench{run}:runtime:start_jobs",
        redis_stop_jobs_stream=f"bench{run}:runtime:stop_jobs",
        redis_job_results_stream=f"bench{run}:runtime:job_results",
        redis_health_events_stream=f"bench{run}:runtime:health_events",
        notification_intents_stream=f"bench{run}:notification:intents",
        jobs_consumer_group=f"bench{run}",
    )


async def _remove_stack(docker: aiodocker.Docker, stack: str) -> None:
    containers = await docker.containers.list(
        all=True, filters={"label": [f"com.galaxy.stack={stack}"]}
    )
    await asyncio.gather(*(c.delete(force=True) for c in containers), return_exceptions=True)


async def raw_round(docker: aiodocker.Docker, settings: Settings, jobs: int) -> float:
    """N concurrent create+start of exactly the container RTM would create."""
    specs = []
    for i in range(jobs):
        game_id = f"raw-{uuid.uuid4().hex[:8]}-{i}"
        state = settings.game_state_root / game_id
        state.mkdir()
        specs.append(
            EngineSpec(
                game_id=game_id,
                name=container_name(game_id),
                image_ref=IMAGE,
                network=settings.docker_network,
                stack=settings.stack,
                state_host_path=str(state),
                state_mount_path=settings.engine_state_mount_path,
                state_env_name=settings.engine_state_env_name,
                nano_cpus=int(settings.default_cpu_quota * 1e9),
                memory=settings.default_memory,
                pids_limit=settings.default_pids_limit,
                cpu_quota_label="1",
                memory_label="512m",
            )
        )

    async def one(spec: EngineSpec) -> None:
        container = await docker.containers.create(spec.create_config(), name=spec.name)
        await container.start()

    began = time.perf_counter()
    await asyncio.gather(*(one(spec) for spec in specs))
    return time.perf_counter() - began


async def rtm_round(core: Core, jobs: int) -> float:
    """N start jobs in one pipeline → N entries on runtime:job_results."""
    settings = core.settings
    results = settings.redis_job_results_stream
    last = (await core.redis.xinfo_stream(results))["last-generated-id"]
    pipe = core.redis.pipeline(transaction=False)
    for i in range(jobs):
        fields = {
            "game_id": f"rtm-{uuid.uuid4().hex[:8]}-{i}",
            "image_ref": IMAGE,
            "requested_at_ms": str(time.time_ns() // 1_000_000),
        }
        pipe.xadd(settings.redis_start_jobs_stream, fields)  # type: ignore[arg-type]
    began = time.perf_counter()
    await pipe.execute()
    seen: list[dict[str, str]] = []
    while len(seen) < jobs:
        for _stream, entries in await core.redis.xread({results: last}, block=5000):
            for entry_id, fields in entries:
                last = entry_id
                seen.append(fields)
    elapsed = time.perf_counter() - began
    failed = [f for f in seen if f["outcome"] != "success"]
    if failed:
        raise SystemExit(f"{len(failed)} jobs failed, e.g. {failed[0]}")
    return elapsed


async def bench(jobs: int, rounds: int, concurrency: int) -> None:
    server_dsn = os.environ.get("RTM_TEST_POSTGRES_DSN")
    if not server_dsn:
        raise SystemExit("set RTM_TEST_POSTGRES_DSN (source .rtm-dev/test.env)")
    tag = uuid.uuid4().hex[:8]
    db_name, network, stack = f"rtm_bench_{tag}", f"rtm-bench-{tag}", f"bench-{tag}"
    conn = await asyncpg.connect(server_dsn)
    await conn.execute(f'CREATE DATABASE "{db_name}"')
    await conn.close()
    dsn = f"{server_dsn.rsplit('/', 1)[0]}/{db_name}?search_path=rtmanager&sslmode=disable"
    docker = aiodocker.Docker()
    await docker.networks.create({"Name": network, "Driver": "bridge"})
    stop = asyncio.Event()
    loops: list[asyncio.Task[None]] = []
    core: Core | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="rtm-bench-") as root:
            settings = _settings(dsn, network, stack, Path(root), concurrency)
            engine = db.create_engine(dsn)
            await db.migrate(engine)
            metrics = Metrics()
            engine_docker = DockerEngine.from_settings(settings, metrics.record_docker_latency)
            core = wire(settings, engine, redis_client(settings), engine_docker, metrics, "bench")
            await core.redis.xadd(settings.redis_job_results_stream, {"bench": "start"})
            scheduler = JobScheduler(concurrency)
            loops = [
                asyncio.create_task(
                    JobConsumer(
                        core, jobs, scheduler, consumer="bench", offset_key=f"bench:{tag}:offset"
                    ).run(stop)
                )
                for jobs in (START_JOBS, STOP_JOBS)
            ]
            await asyncio.sleep(1.0)  # both groups created, loops blocked in XREADGROUP

            raw_times, rtm_times = [], []
            for n in range(rounds):
                raw_times.append(await raw_round(docker, settings, jobs))
                await _remove_stack(docker, stack)
                rtm_times.append(await rtm_round(core, jobs))
                await _remove_stack(docker, stack)
                print(
                    f"round {n + 1}: raw {raw_times[-1]:.2f} s, rtm-jobs {rtm_times[-1]:.2f} s",
                    flush=True,
                )
            raw, rtm = statistics.median(raw_times), statistics.median(rtm_times)
            print(
                f"{jobs} concurrent raw create+start: {raw:.2f} s (median of {rounds})\n"
                f"{jobs} start jobs → {jobs} results (concurrency {concurrency}): {rtm:.2f} s\n"
                f"ratio: {rtm / raw:.2f}x (target ≤ 1.20x)"
            )
    finally:
        stop.set()
        await asyncio.gather(*loops, return_exceptions=True)
        await _remove_stack(docker, stack)
        await (await docker.networks.get(network)).delete()
        await docker.close()
        if core is not None:
            await core.redis.delete(
                f"bench:{tag}:offset",
                core.settings.redis_start_jobs_stream,
                core.settings.redis_stop_jobs_stream,
                core.settings.redis_job_results_stream,
                core.settings.redis_health_events_stream,
            )
            await core.aclose()
        conn = await asyncpg.connect(server_dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        await conn.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(os.environ.get("RTMANAGER_JOBS_CONCURRENCY", "16")),
        help="RTMANAGER_JOBS_CONCURRENCY (default: the setting's default, 16)",
    )
    args = parser.parse_args(argv)
    asyncio.run(bench(args.jobs, args.rounds, args.concurrency))


if __name__ == "__main__":
    main(sys.argv[1:])
