"""rtm-api benchmarks (SPEC §10), against the real `rtm-api` process.

    source .rtm-dev/test.env && .venv/bin/python bench/bench_api.py \
        [--starts 10] [--rate 200] [--seconds 10]

(a) `POST …/{game_id}/start`, request → 200, against a raw aiodocker
    create+start of the very container RTM would create
    (`bench_jobs.raw_round`). Target: ≤ 1.10x. Rounds alternate; medians.
(b) `GET …/runtimes/{game_id}` at a fixed arrival rate (open loop: requests
    are sent on schedule whether or not earlier ones have answered), latency
    measured from the client, its own cost included. Target: p99 ≤ 10 ms
    at 200 requests/s. The server's CPU time per request is printed too: it
    does not depend on what else the machine runs, the latency does.

The server runs as the `rtm-api` console command over `benchkit.bench_core`'s
fresh database, network and stack (settings passed as `RTMANAGER_*`, as the
process tests do); this process only drives it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import aiodocker
import httpx
from bench_jobs import raw_round
from benchkit import IMAGE, REPO, BenchRig, bench_core, remove_stack

sys.path.insert(0, str(REPO / "tests"))
from processes import RtmProcess, free_port, settings_env

RUNTIMES = "/api/v1/internal/runtimes"


def new_game() -> str:
    return f"api-{uuid.uuid4().hex[:10]}"


async def start_round(http: httpx.AsyncClient, game_id: str) -> float:
    began = time.perf_counter()
    response = await http.post(
        f"{RUNTIMES}/{game_id}/start",
        headers={"X-Galaxy-Caller": "gm"},
        json={"image_ref": IMAGE},
    )
    elapsed = time.perf_counter() - began
    if response.status_code != 200:
        sys.exit(f"start failed: {response.status_code} {response.text}")
    return elapsed


async def starts(core: BenchRig, http: httpx.AsyncClient, rounds: int) -> None:
    docker = aiodocker.Docker()
    raw_times, api_times = [], []
    try:
        for n in range(rounds):
            raw_times.append(await raw_round(docker, core, 1))
            await remove_stack(docker, core.settings.stack)
            api_times.append(await start_round(http, new_game()))
            await remove_stack(docker, core.settings.stack)
            print(
                f"round {n + 1}: raw {raw_times[-1] * 1000:.0f} ms, "
                f"REST {api_times[-1] * 1000:.0f} ms"
            )
    finally:
        await docker.close()
    raw, api = statistics.median(raw_times), statistics.median(api_times)
    print(
        f"raw create+start: {raw * 1000:.0f} ms, REST start → 200: {api * 1000:.0f} ms "
        f"(medians of {rounds}); ratio {api / raw:.2f}x (target ≤ 1.10x)"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def reads(http: httpx.AsyncClient, server_pid: int, rate: int, seconds: float) -> None:
    game_id = new_game()
    await start_round(http, game_id)
    path = f"{RUNTIMES}/{game_id}"
    for _ in range(50):  # warm the connection pools on both sides
        (await http.get(path)).raise_for_status()
    latencies: list[float] = []

    async def one() -> None:
        began = time.perf_counter()
        response = await http.get(path)
        latencies.append(time.perf_counter() - began)
        response.raise_for_status()

    total = int(rate * seconds)
    tasks = []
    cpu_before, client_before = cpu_seconds(server_pid), time.process_time()
    t0 = time.perf_counter()
    for i in range(total):
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(max(0.0, t0 + (i + 1) / rate - time.perf_counter()))
    await asyncio.gather(*tasks)
    server_cpu = cpu_seconds(server_pid) - cpu_before
    client_cpu = time.process_time() - client_before
    latencies.sort()
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    print(
        f"GET {RUNTIMES}/{{game_id}} at {rate}/s for {seconds:g} s: "
        f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms "
        f"(target p99 ≤ 10 ms); server CPU {server_cpu / total * 1000:.2f} ms per request "
        f"({server_cpu / seconds:.0%} of a core; the client used {client_cpu / seconds:.0%})"
    )


async def bench(rounds: int, rate: int, seconds: float) -> None:
    async with bench_core() as core:
        addr = f"127.0.0.1:{free_port()}"
        server = RtmProcess("rtm-api", settings_env(core.settings, internal_http_addr=addr))
        await server.start()
        try:
            await server.wait_for_message("internal http listening")
            # Idle connections expire before uvicorn's 5 s keep-alive timeout closes
            # them, so a request never races the server's close (httpx.ReadError).
            limits = httpx.Limits(
                max_connections=64, max_keepalive_connections=64, keepalive_expiry=4
            )
            async with httpx.AsyncClient(
                base_url=f"http://{addr}", timeout=60, limits=limits
            ) as http:
                await starts(core, http, rounds)
                assert server.proc is not None
                await reads(http, server.proc.pid, rate, seconds)
        finally:
            await server.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="rtm-api start and read latency (SPEC §10)")
    parser.add_argument("--starts", type=int, default=10, help="start rounds")
    parser.add_argument("--rate", type=int, default=200, help="GET requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="GET duration")
    args = parser.parse_args(argv)
    asyncio.run(bench(args.starts, args.rate, args.seconds))


if __name__ == "__main__":
    main(sys.argv[1:])
