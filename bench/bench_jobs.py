"""Benchmark (SPEC §10): N start jobs written at once → N results, against N
concurrent raw aiodocker create+start of the same image. Target: ≤ 1.2x.

    source .rtm-dev/test.env && .venv/bin/python bench/bench_jobs.py \
        [--jobs 20] [--rounds 3] [--concurrency 16]

The jobs run through the real consumer loops of `rtm-jobs` (in this process)
on a real core (`benchkit.bench_core`, with the deps `rtm-jobs` main builds:
`bootstrap(infra, adapters)`); the raw side creates the very
container config RTM would (`docker_engine.create_config`), in fresh state
dirs. Rounds alternate raw and RTM; medians are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from typing import Any

import aiodocker
from benchkit import IMAGE, BenchRig, bench_core, remove_stack

from rtm_core.adapters.docker_engine import create_config
from rtm_core.domain.engine import EngineSpec, engine_spec
from rtm_jobs.bootstrap import bootstrap
from rtm_jobs.consumer import JobConsumer
from rtm_jobs.jobs import START_JOBS, STOP_JOBS
from rtm_jobs.scheduler import JobScheduler


async def raw_round(docker: aiodocker.Docker, core: BenchRig, jobs: int) -> float:
    """N concurrent create+start of exactly the container RTM would create."""
    s = core.settings
    specs = []
    for i in range(jobs):
        game_id = f"raw-{uuid.uuid4().hex[:8]}-{i}"
        state = s.game_state_root / game_id
        state.mkdir()
        specs.append(engine_spec(s, game_id, IMAGE, str(state), {}))

    async def one(spec: EngineSpec) -> None:
        container = await docker.containers.create(create_config(spec), name=spec.name)
        await container.start()

    began = time.perf_counter()
    await asyncio.gather(*(one(spec) for spec in specs))
    return time.perf_counter() - began


async def rtm_round(core: BenchRig, jobs: int) -> float:
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
        response: Any = await core.redis.xread({results: last}, block=5000)
        for _stream, entries in response:
            for entry_id, result in entries:
                last = entry_id
                seen.append(result)
    elapsed = time.perf_counter() - began
    if failed := [f for f in seen if f["outcome"] != "success"]:
        sys.exit(f"{len(failed)} jobs failed, e.g. {failed[0]}")
    return elapsed


async def bench(jobs: int, rounds: int, concurrency: int) -> None:
    async with bench_core(jobs_concurrency=concurrency) as core:
        stack = core.settings.stack
        await core.redis.xadd(core.settings.redis_job_results_stream, {"bench": "start"})
        deps = bootstrap(core.infra, core.adapters)
        scheduler = JobScheduler(concurrency)
        stop = asyncio.Event()
        loops = [
            asyncio.create_task(
                JobConsumer(
                    deps, kind, scheduler, consumer="bench", offset_key=f"{stack}:{kind.label}"
                ).run(stop)
            )
            for kind in (START_JOBS, STOP_JOBS)
        ]
        docker = aiodocker.Docker()
        try:
            await asyncio.sleep(1.0)  # groups created, both loops blocked in XREADGROUP
            raw_times, rtm_times = [], []
            for n in range(rounds):
                raw_times.append(await raw_round(docker, core, jobs))
                await remove_stack(docker, stack)
                rtm_times.append(await rtm_round(core, jobs))
                await remove_stack(docker, stack)
                print(f"round {n + 1}: raw {raw_times[-1]:.2f} s, rtm-jobs {rtm_times[-1]:.2f} s")
        finally:
            stop.set()
            await asyncio.gather(*loops, return_exceptions=True)
            await docker.close()
    raw, rtm = statistics.median(raw_times), statistics.median(rtm_times)
    print(
        f"{jobs} concurrent raw create+start: {raw:.2f} s (median of {rounds})\n"
        f"{jobs} start jobs → {jobs} results, concurrency {concurrency}: {rtm:.2f} s\n"
        f"ratio: {rtm / raw:.2f}x (target ≤ 1.20x)"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="20 start jobs vs 20 raw starts (SPEC §10)")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--concurrency", type=int, default=16, help="RTMANAGER_JOBS_CONCURRENCY (default 16)"
    )
    args = parser.parse_args(argv)
    asyncio.run(bench(args.jobs, args.rounds, args.concurrency))


if __name__ == "__main__":
    main(sys.argv[1:])
