"""One reconcile pass over 1,000 records and 1,000 containers (SPEC §10: ≤ 2 s).

Run against the dev dependencies (a fresh database, its own Docker network and
`com.galaxy.stack`, all removed afterwards):

    source .rtm-dev/test.env && .venv/bin/python bench/bench_reconcile.py

Scenarios, each timed through `Reconciler.reconcile()` (the pass the loop runs):

- `real-50`: 50 engines started through `Lifecycle.start`; a pass in sync,
  then a pass after `docker rm -f` of all 50 (50 disposes).
- `in-sync-1000`: 1,000 `stopped` records, each pointing at one of 1,000
  created-but-never-started engine containers (cheap: no process, no network).
  Nothing drifts; the pass is list + query + plan. This is the steady state.
- `exited-1000`: the same containers, records `running`: 1,000 observed exits.
- `vanished-1000`: 1,000 `running` records and no container (a daemon restart): 1,000 disposes.
- `adopt-1000`: 1,000 containers and no record: 1,000 adoptions.

Where the time goes: the pass reports its Docker list, records query and
settle phases; Docker call latencies are summed per op (they overlap, the
pass runs `RECONCILE_CONCURRENCY` games at once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiodocker
import asyncpg
from benchkit import IMAGE, BenchRig, bench_core, bounded, load_fields, remove_stack

from rtm_core.domain.vocabulary import OpSource, engine_endpoint
from rtm_reconciler.bootstrap import bootstrap
from rtm_reconciler.reconciler import Reconciler

TARGET_S = 2.0
TRUNCATE = "TRUNCATE rtmanager.runtime_records, rtmanager.operation_log, rtmanager.health_snapshots"


class DockerTimes:
    """Per-op count and summed latency of the Docker calls a pass makes."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = defaultdict(list)

    def record(self, op: str, seconds: float) -> None:
        self.calls[op].append(seconds)

    def summary(self) -> str:
        parts = [
            f"{op} x{len(v)} sum {sum(v) * 1000:.0f}ms p50 {statistics.median(v) * 1000:.1f}ms"
            for op, v in sorted(self.calls.items())
        ]
        self.calls.clear()
        return ", ".join(parts) or "-"


async def reset(core: BenchRig) -> None:
    client = aiodocker.Docker()
    await remove_stack(client, core.settings.stack)
    await client.close()
    async with core.postgres.begin() as conn:
        await conn.exec_driver_sql(TRUNCATE)


async def create_idle(core: BenchRig, game_ids: list[str]) -> list[str]:
    """Created-but-never-started engine containers with RTM's labels."""
    client = aiodocker.Docker()
    s = core.settings

    async def create(game_id: str) -> str:
        labels = {
            "com.galaxy.owner": "rtmanager",
            "com.galaxy.stack": s.stack,
            "com.galaxy.game_id": game_id,
            "com.galaxy.image_ref": IMAGE,
        }
        c = await client.containers.create(
            {"Image": IMAGE, "Labels": labels}, name=f"galaxy-game-{game_id}"
        )
        return str(c.id)

    began = time.perf_counter()
    ids = await bounded(16, [create(g) for g in game_ids])
    print(f"  created {len(ids)} idle containers in {time.perf_counter() - began:.1f}s")
    await client.close()
    return ids


async def seed_records(
    core: BenchRig, game_ids: list[str], status: str, container_ids: list[str | None]
) -> None:
    s = core.settings
    rows = [
        (
            g,
            status,
            cid,
            IMAGE,
            engine_endpoint(g),
            str(s.game_state_root / g),
            s.docker_network,
        )
        for g, cid in zip(game_ids, container_ids, strict=True)
    ]
    async with core.postgres.begin() as conn:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.executemany(  # type: ignore[union-attr]
            "INSERT INTO rtmanager.runtime_records (game_id, status, current_container_id,"
            " current_image_ref, engine_endpoint, state_path, docker_network, started_at,"
            " stopped_at, last_op_at) VALUES ($1, $2, $3, $4, $5, $6, $7, now(),"
            " CASE WHEN $2 = 'stopped' THEN now() END, now())",
            rows,
        )


async def raw_list_ms(core: BenchRig, repeat: int = 3) -> float:
    """The floor of any pass: Docker's own list of this stack's containers
    (the same filters, straight through aiodocker), median of `repeat`."""
    client = aiodocker.Docker()
    labels = ["com.galaxy.owner=rtmanager", f"com.galaxy.stack={core.settings.stack}"]
    times = []
    try:
        for _ in range(repeat):
            began = time.perf_counter()
            await client.containers.list(all=True, filters=json.dumps({"label": labels}))
            times.append(time.perf_counter() - began)
    finally:
        await client.close()
    return statistics.median(times) * 1000


async def raw_write_ms(core: BenchRig) -> float:
    """The floor of a repair: the same durable writes as raw SQL (every live
    record marked removed, one operation_log row each), one transaction, rolled back."""
    dsn = core.settings.postgres_primary_dsn.split("?")[0]
    conn = await asyncpg.connect(dsn)
    try:
        began = time.perf_counter()
        async with conn.transaction():
            await conn.execute(
                "UPDATE rtmanager.runtime_records SET status = 'removed', removed_at = now(),"
                " last_op_at = now() WHERE status <> 'removed'"
            )
            await conn.execute(
                "INSERT INTO rtmanager.operation_log (game_id, op_kind, op_source, outcome,"
                " started_at, finished_at) SELECT game_id, 'reconcile_dispose', 'reconciler',"
                " 'success', now(), now() FROM rtmanager.runtime_records"
            )
            elapsed = time.perf_counter() - began
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await conn.close()
    return elapsed * 1000


class _Rollback(Exception):
    pass


RESULTS: dict[str, dict[str, Any]] = {}


async def timed_pass(
    core: BenchRig, times: DockerTimes, label: str, *, repeat: int = 1, batch: int = 250
) -> float:
    deps = bootstrap(core.infra, core.adapters)  # what `rtm-reconciler` main builds
    reconciler = Reconciler(deps, asyncio.Event(), batch_size=batch)
    durations = []
    cpu = time.process_time()
    for _ in range(repeat):
        report = await reconciler.reconcile()
        durations.append(report.duration_ms / 1000)
    cpu = (time.process_time() - cpu) / repeat
    wall = statistics.median(durations)
    RESULTS[label] = {
        "wall_s": round(wall, 3),
        "list_ms": report.list_ms,
        "records_ms": report.records_ms,
        "settle_ms": report.settle_ms,
        "rtm_cpu_s": round(cpu, 3),
        "records": report.records,
        "containers": report.containers,
        "drifts": report.disposed + report.observed_exited + report.adopted,
        "failed": report.failed,
        "load": load_fields(),
    }
    verdict = "ok" if wall <= TARGET_S else "OVER TARGET"
    print(
        f"{label:<28} {wall:6.3f}s  [{verdict}]  records {report.records}, containers "
        f"{report.containers}; drift: disposed {report.disposed}, exited "
        f"{report.observed_exited}, adopted {report.adopted}, failed {report.failed}\n"
        f"{'':<30}phases: list {report.list_ms:.0f}ms, records {report.records_ms:.0f}ms, "
        f"settle {report.settle_ms:.0f}ms (median of {repeat}); RTM CPU {cpu:.2f}s/pass\n"
        f"{'':<30}docker: {times.summary()}"
    )
    return wall


async def real_engines(core: BenchRig, times: DockerTimes, n: int) -> None:
    game_ids = [f"bench-real-{i:04d}" for i in range(n)]
    began = time.perf_counter()
    results = await bounded(
        8, [core.lifecycle.start(g, IMAGE, OpSource.ADMIN_REST) for g in game_ids]
    )
    print(f"  started {n} engines in {time.perf_counter() - began:.1f}s")
    times.summary()
    await timed_pass(core, times, f"real-{n} in sync", repeat=5)
    client = aiodocker.Docker()
    await bounded(
        16,
        [
            client.containers.container(r.record.current_container_id).delete(force=True)
            for r in results
        ],
    )
    await client.close()
    await timed_pass(core, times, f"real-{n} all vanished")


async def thousand(
    core: BenchRig, times: DockerTimes, n: int, batch: int, profile_dir: str | None = None
) -> None:
    game_ids = [f"bench-{i:04d}" for i in range(n)]
    container_ids: list[str | None] = list(await create_idle(core, game_ids))
    await seed_records(core, game_ids, "stopped", container_ids)
    await timed_pass(core, times, f"in-sync-{n}", repeat=5)
    RESULTS[f"in-sync-{n}"]["floor_ms"] = round(await raw_list_ms(core, 5), 1)

    async with core.postgres.begin() as conn:
        await conn.exec_driver_sql("UPDATE rtmanager.runtime_records SET status = 'running'")
    await timed_pass(core, times, f"exited-{n}", batch=batch)

    async with core.postgres.begin() as conn:  # no records at all: every container is adopted
        await conn.exec_driver_sql(TRUNCATE)
    await timed_pass(core, times, f"adopt-{n}", batch=batch)

    await reset(core)
    await seed_records(core, game_ids, "running", [f"gone-{g}" for g in game_ids])
    floor = await raw_list_ms(core) + await raw_write_ms(core)
    with profiled(profile_dir, "reconcile-vanished-batched.txt"):
        await timed_pass(core, times, f"vanished-{n}", batch=batch)
    RESULTS[f"vanished-{n}"]["floor_ms"] = round(floor, 1)

    # The same repair game by game, as the pass did before issue 14 (one
    # `reconcile_dispose` per game, 16 at once): the gain, measured in this run.
    await reset(core)
    await seed_records(core, game_ids, "running", [f"gone-{g}" for g in game_ids])
    began, cpu = time.perf_counter(), time.process_time()
    with profiled(profile_dir, "reconcile-vanished-per-game.txt"):
        await bounded(16, [core.lifecycle.reconcile_dispose(g) for g in game_ids])
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    RESULTS[f"vanished-{n}-per-game"] = {
        "wall_s": round(wall, 3),
        "rtm_cpu_s": round(cpu, 3),
        "load": load_fields(),
    }
    print(f"{f'vanished-{n} per game (before)':<28} {wall:6.3f}s  RTM CPU {cpu:.2f}s")


@contextmanager
def profiled(directory: str | None, name: str) -> Iterator[None]:
    """pyinstrument over the block (wall-clock, async-aware) into `directory/name`."""
    if directory is None:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(async_mode="enabled")
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        Path(directory, name).write_text(profiler.output_text(unicode=False))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--real", type=int, default=50)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--profile-dir", help="pyinstrument text of the vanished passes here")
    args = parser.parse_args()
    times = DockerTimes()
    async with bench_core(times.record) as core:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"target: one pass ≤ {TARGET_S:.1f}s (SPEC §10); {os.cpu_count()} CPUs, load {load}")
        await real_engines(core, times, args.real)
        await reset(core)
        await thousand(core, times, args.records, args.batch, args.profile_dir)
    if args.json:
        Path(args.json).write_text(json.dumps(RESULTS, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
