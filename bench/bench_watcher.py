"""Watcher benchmarks (SPEC §10).

    source .rtm-dev/test.env && .venv/bin/python bench/bench_watcher.py \
        [--kills 10] [--engines 500] [--cycles 5] [--slow 25]

(a) `kill`: an engine is SIGKILLed (`docker kill`) → its `container_exited`
    is on `runtime:health_events`. Target: ≤ 1 s median. The events listener
    runs in this process over the deps `rtm-watcher` builds (`bootstrap`);
    each kill is timed from just before the kill call to the moment an
    `XREAD BLOCK` on the stream returns the entry. Docker's own part (kill →
    the `die` event's timestamp) is shown beside it.
(b) `probe`: one probe cycle over N engines. Target: within one 15 s
    interval, under one core. N real engines do not fit this machine, so the
    N `running` records are inserted directly and point (`endpoint` address
    mode) at one aiohttp server on loopback, in a separate process so this
    process's CPU time is the worker's alone (its PostgreSQL snapshot writes
    and Redis calls included). With `--slow K`, K of the engines hang past
    the probe timeout: the cycle then lasts about one timeout, and the
    healthy engines' probe latency shows whether the slow ones delayed them.

(c) `usage` (issue 13): one usage-sampler pass over N real engines, the
    first (slow reads: the daemon takes its own second CPU sample) and the
    following ones (one-shot stats + inspect), each ending with its one
    PostgreSQL write. Target: a pass within one inspect interval (30 s).

Needs what the tests need: PostgreSQL (`RTM_TEST_POSTGRES_DSN`), Redis
(`RTM_TEST_REDIS_ADDR`), Docker and the test-engine images; `benchkit`
makes a database, network and stack label per scenario and removes them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import aiodocker
import httpx
from benchkit import IMAGE, BenchRig, bench_core, bench_port, bounded
from sqlalchemy import insert

from rtm_core.adapters.postgres.tables import HealthSnapshotRow, RuntimeRecordRow
from rtm_core.domain.vocabulary import OpSource
from rtm_core.settings import Settings
from rtm_watcher.bootstrap import WatcherDeps, bootstrap
from rtm_watcher.events_listener import EventsListener
from rtm_watcher.probe_worker import ProbeWorker
from rtm_watcher.usage_sampler import UsageSampler

KILL_TARGET_S = 1.0
PROBE_INTERVAL_S = 15.0

#: The fake engines: GET /g/<i>/healthz → 200, or a 30 s hang for the slow ones.
FAKE_ENGINES = r"""
import asyncio, sys
from aiohttp import web
slow = {int(i) for i in sys.argv[2].split(",") if i}
async def healthz(request):
    if int(request.match_info["i"]) in slow:
        await asyncio.sleep(30)
    return web.Response(text="ok")
app = web.Application()
app.router.add_get("/g/{i}/healthz", healthz)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def watcher_deps(rig: BenchRig) -> WatcherDeps:
    return bootstrap(rig.infra, rig.adapters)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# (a) kill → container_exited ----------------------------------------------


async def next_exited(rig: BenchRig, game_id: str, last_id: str) -> tuple[dict[str, str], str]:
    stream = rig.settings.redis_health_events_stream
    while True:
        # [[stream, [(id, fields), ...]]] (decoded): redis-py types it loosely.
        reply: Any = await rig.redis.xread({stream: last_id}, block=10_000)
        if not reply:
            raise TimeoutError(f"no container_exited for {game_id} within 10 s")
        for entry_id, fields in reply[0][1]:
            last_id = entry_id
            if fields["game_id"] == game_id and fields["event_type"] == "container_exited":
                return fields, last_id


async def bench_kills(kills: int) -> None:
    """SIGKILL (exit 137: the listener inspects to tell it from an OOM kill) and a
    crash (exit 3 through the engine's `exit_code` control file: decided from
    the event alone); the crash's start is the engine's, so only RTM's part
    (die event time -> entry) is measured for it."""
    print(f"(a) engine killed -> container_exited on the stream, {kills} kills (+1 warm-up)")
    async with bench_core(container_stop_timeout_seconds=1) as rig:
        stop = asyncio.Event()
        listener = asyncio.create_task(EventsListener(watcher_deps(rig)).run(stop))
        client = aiodocker.Docker()
        totals, dockers, crashes = [], [], []
        last_id = "0-0"
        try:
            for i in range(2 * kills + 1):
                game_id = f"kill-{i}"
                result = await rig.lifecycle.start(game_id, IMAGE, OpSource.GM_REST)
                assert result.record is not None and result.record.current_container_id
                await asyncio.sleep(0.3)  # let the engine settle, as a real one would have
                began_ns = time.time_ns()
                if i % 2 == 0:
                    container = client.containers.container(result.record.current_container_id)
                    await container.kill(signal="SIGKILL")
                else:
                    (rig.settings.game_state_root / game_id / "exit_code").write_text("3")
                fields, last_id = await next_exited(rig, game_id, last_id)
                arrived_ns = time.time_ns()
                died_ns = int(fields["occurred_at_ms"]) * 1_000_000
                if i == 0:
                    print(f"  warm-up: {(arrived_ns - began_ns) / 1e6:.0f} ms")
                elif i % 2 == 0:
                    totals.append((arrived_ns - began_ns) / 1e9)
                    dockers.append((died_ns - began_ns) / 1e9)
                else:
                    crashes.append((arrived_ns - died_ns) / 1e9)
        finally:
            stop.set()
            await listener
            await client.close()
    median = statistics.median(totals)
    rtm_part = statistics.median([t - d for t, d in zip(totals, dockers, strict=True)])
    print(
        f"  kill -> entry on stream: median {median * 1000:.0f} ms, "
        f"p90 {percentile(totals, 90) * 1000:.0f} ms, max {max(totals) * 1000:.0f} ms"
    )
    print(
        f"  of which Docker (kill -> die event time): median "
        f"{statistics.median(dockers) * 1000:.0f} ms; RTM (die -> entry): median "
        f"{rtm_part * 1000:.0f} ms"
    )
    print(
        f"  crash (exit 3), RTM (die -> entry): median {statistics.median(crashes) * 1000:.0f} ms,"
        f" max {max(crashes) * 1000:.0f} ms"
    )
    verdict = "OK" if median <= KILL_TARGET_S else "MISSED"
    print(f"  target <= {KILL_TARGET_S:.0f} s median: {verdict}")


# (b) probe cycle over N engines ---------------------------------------------


async def fake_engines(slow: list[int]) -> tuple[subprocess.Popen[bytes], str]:
    port = bench_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", FAKE_ENGINES, str(port), ",".join(map(str, slow))]
    )
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(trust_env=False) as client:
        for _ in range(200):
            with suppress(httpx.HTTPError):
                await client.get(f"{base}/up")  # any answer (a 404) means it listens
                return proc, base
            await asyncio.sleep(0.05)
    proc.kill()
    raise RuntimeError("fake engine server did not come up")


async def seed(rig: BenchRig, base: str, engines: int) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "game_id": f"probe-{i}",
            "status": "running",
            "current_container_id": f"fake-{i:04d}",
            "current_image_ref": IMAGE,
            "engine_endpoint": f"{base}/g/{i}",
            "started_at": now,
            "last_op_at": now,
        }
        for i in range(engines)
    ]
    async with rig.postgres.begin() as conn:
        await conn.execute(insert(RuntimeRecordRow.__table__), rows)  # type: ignore[attr-defined]


async def healthy_latencies_ms(rig: BenchRig, slow: set[int]) -> list[float]:
    async with rig.repos.session() as s:
        snapshots = (await s.execute(HealthSnapshotRow.__table__.select())).all()  # type: ignore[attr-defined]
    return [
        float(row.details["latency_ms"])
        for row in snapshots
        if int(row.game_id.split("-")[1]) not in slow and "latency_ms" in row.details
    ]


async def bench_probes(engines: int, cycles: int, slow_count: int, concurrency: int) -> None:
    slow = list(range(0, engines, max(1, engines // slow_count)))[:slow_count] if slow_count else []
    print(
        f"(b) probe cycle over {engines} engines ({len(slow)} hanging), concurrency "
        f"{concurrency}, timeout 2 s, {cycles} cycles"
    )
    overrides: dict[str, Any] = {"probe_address_mode": "endpoint", "probe_concurrency": concurrency}
    async with bench_core(**overrides) as rig:
        proc, base = await fake_engines(slow)
        try:
            await seed(rig, base, engines)
            worker = ProbeWorker(watcher_deps(rig))
            walls, cpus = [], []
            try:
                for _ in range(cycles):
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    await worker.run_once()
                    walls.append(time.perf_counter() - wall0)
                    cpus.append(time.process_time() - cpu0)
            finally:
                await worker.aclose()
            latencies = await healthy_latencies_ms(rig, set(slow))
        finally:
            proc.kill()  # SIGTERM would wait for the hanging handlers
            proc.wait(10)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    print(
        f"  cycle wall: median {wall:.2f} s (min {min(walls):.2f}, max {max(walls):.2f}); "
        f"CPU of the worker's process: median {cpu:.2f} s per cycle"
    )
    share = cpu / PROBE_INTERVAL_S
    print(f"  CPU share over a {PROBE_INTERVAL_S:.0f} s interval: {share:.1%} of one core")
    if latencies:
        print(
            "  healthy engines' probe latency (last cycle): median "
            f"{statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
            f"max {max(latencies):.1f} ms"
        )
    verdict = "OK" if wall <= PROBE_INTERVAL_S and cpu <= PROBE_INTERVAL_S else "MISSED"
    print(f"  target: within one {PROBE_INTERVAL_S:.0f} s interval, under one core: {verdict}")


async def bench_usage(engines: int, cycles: int) -> None:
    print(f"(c) usage-sampler pass over {engines} real engines, {cycles} passes after the first")
    async with bench_core() as rig:
        await bounded(
            8,
            [rig.lifecycle.start(f"usage-{i}", IMAGE, OpSource.GM_REST) for i in range(engines)],
        )
        sampler = UsageSampler(watcher_deps(rig))
        wall0 = time.perf_counter()
        await sampler.run_once()
        first = time.perf_counter() - wall0
        walls, cpus = [], []
        for _ in range(cycles):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await sampler.run_once()
            walls.append(time.perf_counter() - wall0)
            cpus.append(time.process_time() - cpu0)
        stored = await rig.repos.usages([f"usage-{i}" for i in range(engines)])
    wall = statistics.median(walls)
    print(f"  first pass (slow reads): {first:.2f} s")
    print(
        f"  later passes (one-shot): median {wall:.2f} s (min {min(walls):.2f}, max "
        f"{max(walls):.2f}), {wall / engines * 1000:.0f} ms per engine at concurrency "
        f"{Settings.model_fields['engine_usage_concurrency'].default}; CPU of this process "
        f"median {statistics.median(cpus):.2f} s per pass"
    )
    memory = sorted(u.memory_bytes for u in stored.values())
    print(
        f"  samples stored: {len(stored)}/{engines}; memory median "
        f"{memory[len(memory) // 2] / 2**20:.2f} MiB"
        if memory
        else "  no samples stored"
    )
    verdict = "OK" if wall <= 30.0 else "MISSED"
    print(f"  target: a pass within one 30 s inspect interval: {verdict}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--engines", type=int, default=500)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--slow", type=int, default=25, help="hanging engines in a second run")
    parser.add_argument(
        "--concurrency", type=int, default=Settings.model_fields["probe_concurrency"].default
    )
    parser.add_argument("--usage-engines", type=int, default=20)
    parser.add_argument("--only", choices=["kill", "probe", "usage"])
    args = parser.parse_args()
    if args.only in (None, "kill"):
        await bench_kills(args.kills)
    if args.only in (None, "probe"):
        await bench_probes(args.engines, args.cycles, 0, args.concurrency)
        if args.slow:
            await bench_probes(args.engines, args.cycles, args.slow, args.concurrency)
    if args.only in (None, "usage"):
        await bench_usage(args.usage_engines, args.cycles)


if __name__ == "__main__":
    asyncio.run(main())
