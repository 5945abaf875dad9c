"""Benchmark (issue 14): N start jobs written at once → N results, against N
concurrent raw create+start of the same containers through the Docker API.
Targets: 20 jobs ≤ 1.10x; 100 jobs with 3 rtm-jobs replicas ≤ 1.15x.

    source .rtm-dev/test.env && .venv/bin/python bench/bench_jobs.py \
        [--jobs 20] [--replicas 1] [--rounds 3] [--concurrency 16] [--json out.json]

The jobs run through `--replicas` real `rtm-jobs` processes (one consumer
group, as deployed) over `benchkit.bench_core`'s fresh database, network and
streams; the raw side creates the very container config RTM would
(`docker_engine.create_config`) in fresh state dirs, all at once through
aiodocker. Rounds alternate raw and RTM; medians. Every container is removed
after each round (the stack label is the bench's own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiodocker
from benchkit import IMAGE, REPO, BenchRig, bench_core, bench_port, load_fields, remove_stack

from rtm_core.adapters.docker_engine import create_config
from rtm_core.domain.engine import EngineSpec, engine_spec

sys.path.insert(0, str(REPO / "tests"))
from processes import RtmProcess, settings_env


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


async def bench(jobs: int, replicas: int, rounds: int, concurrency: int) -> dict[str, Any]:
    result: dict[str, Any] = {"jobs": jobs, "replicas": replicas, "load": load_fields()}
    async with bench_core(jobs_concurrency=concurrency) as core:
        stack = core.settings.stack
        await core.redis.xadd(core.settings.redis_job_results_stream, {"bench": "start"})
        workers = [
            RtmProcess(
                "rtm-jobs",
                settings_env(core.settings, ops_http_addr=f"127.0.0.1:{bench_port()}"),
                name=f"rtm-jobs-{n}",
            )
            for n in range(replicas)
        ]
        docker = aiodocker.Docker()
        raw_times: list[float] = []
        rtm_times: list[float] = []
        try:
            for w in workers:
                await w.start()
            for w in workers:
                await w.wait_for_message("worker started", count=2, timeout=60)
            await rtm_round(core, min(jobs, 4))  # warm: image, pools, state root
            await remove_stack(docker, stack)
            for n in range(rounds):
                raw_times.append(await raw_round(docker, core, jobs))
                await remove_stack(docker, stack)
                rtm_times.append(await rtm_round(core, jobs))
                await remove_stack(docker, stack)
                print(f"round {n + 1}: raw {raw_times[-1]:.2f} s, rtm-jobs {rtm_times[-1]:.2f} s")
        finally:
            for w in workers:
                await w.close()
            await remove_stack(docker, stack)
            await docker.close()
    raw, rtm = statistics.median(raw_times), statistics.median(rtm_times)
    result.update(raw_s=round(raw, 3), rtm_s=round(rtm, 3), ratio=round(rtm / raw, 3))
    result.update(raw_rounds=raw_times, rtm_rounds=rtm_times, load_after=load_fields())
    print(
        f"{jobs} concurrent raw create+start: {raw:.2f} s (median of {rounds})\n"
        f"{jobs} start jobs → {jobs} results, {replicas} rtm-jobs, concurrency {concurrency}: "
        f"{rtm:.2f} s\nratio: {rtm / raw:.2f}x"
    )
    return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="N start jobs vs N raw starts (issue 14)")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--concurrency", type=int, default=16, help="RTMANAGER_JOBS_CONCURRENCY (default 16)"
    )
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    result = asyncio.run(bench(args.jobs, args.replicas, args.rounds, args.concurrency))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
