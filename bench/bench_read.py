"""rtm-api's read path (issue 14), each figure beside its floor in the same run.

    source .rtm-dev/test.env && .venv/bin/python bench/bench_read.py \
        [--rate 300] [--seconds 10] [--records 10000] [--profile bench/profiles/x.svg]

(a) `GET …/runtimes/{game_id}` at a fixed rate from a separate process
    (`bench/loadgen.py`, open loop), beside `GET /healthz` of the same server
    at the same rate: the floor is what this server, machine and client cost
    for a request that reads nothing. Targets: p99 ≤ 10 ms and ≤ 2x the
    healthz p99; server CPU ≤ 0.7 ms per request. The server is pinned to
    CPU 0 and the load generator to CPU 1 (`taskset`) so that neither starves
    the other; the load generator's own CPU share is reported.
(b) `GET …/runtimes` with `--records` records: one page (`?limit=100` when the
    API pages, see `paged`) and the unpaged list, medians of sequential
    requests; floor: the same rows fetched with asyncpg in this process.

With `--profile FILE.svg` py-spy records the server during (a)'s GET phase.
The server is the `rtm-api` console command over `benchkit.bench_core`'s
fresh database (as bench_api runs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from bench_reconcile import seed_records
from benchkit import REPO, BenchRig, bench_core, bench_port, load_fields

sys.path.insert(0, str(REPO / "tests"))
from processes import RtmProcess, settings_env

RUNTIMES = "/api/v1/internal/runtimes"
PAGE = 100
SERVER_CPU, CLIENT_CPU = 0, 1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (every thread) so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin(pid: int, cpu: int) -> None:
    """Every thread of `pid` onto one CPU (when the machine has more than one)."""
    if (os.cpu_count() or 1) > 1:
        subprocess.run(
            ["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=True, capture_output=True
        )


async def loadgen(port: int, path: str, rate: int, seconds: float) -> dict[str, Any]:
    command = [sys.executable, str(REPO / "bench" / "loadgen.py"), "--port", str(port)]
    command += ["--path", path, "--rate", str(rate), "--seconds", str(seconds)]
    if (os.cpu_count() or 1) > 1:
        command = ["taskset", "-c", str(CLIENT_CPU), *command]
    proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"loadgen failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(out)
    return result


async def at_rate(
    server_pid: int, port: int, path: str, rate: int, seconds: float, profile: str | None = None
) -> dict[str, Any]:
    spy = None
    if profile:
        spy = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "py-spy"), "record", "--pid", str(server_pid),
             "--output", profile, "--duration", str(int(seconds)), "--rate", "250", "--nonblocking",
             "--format", "raw" if profile.endswith(".txt") else "flamegraph"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    before = cpu_seconds(server_pid)
    result = await loadgen(port, path, rate, seconds)
    result["server_cpu_ms_per_request"] = round(
        (cpu_seconds(server_pid) - before) / result["requests"] * 1000, 3
    )
    if spy is not None:
        spy.wait(timeout=60)
    return result


async def median_ms(http: httpx.AsyncClient, path: str, n: int) -> tuple[float, Any]:
    times, body = [], None
    for _ in range(n):
        began = time.perf_counter()
        response = await http.get(path)
        times.append(time.perf_counter() - began)
        response.raise_for_status()
        body = response.json()
    return statistics.median(times) * 1000, body


async def db_floor_ms(core: BenchRig, limit: int | None, n: int) -> float:
    dsn = core.settings.postgres_primary_dsn.split("?")[0]
    conn = await asyncpg.connect(dsn)
    query = "SELECT * FROM rtmanager.runtime_records ORDER BY game_id"
    query += f" LIMIT {limit}" if limit else ""
    times = []
    try:
        for _ in range(n):
            began = time.perf_counter()
            await conn.fetch(query)
            times.append(time.perf_counter() - began)
    finally:
        await conn.close()
    return statistics.median(times) * 1000


def paged(body: Any) -> bool:
    """Whether the server answered `?limit=` with one page (keyset pagination)."""
    return isinstance(body, dict) and "next_cursor" in body


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"load": load_fields()}
    async with bench_core() as core:
        game_ids = [f"read-{i:05d}" for i in range(args.records)]
        await seed_records(core, game_ids, "running", [f"c-{g}" for g in game_ids])
        port = bench_port()
        env = settings_env(core.settings, internal_http_addr=f"127.0.0.1:{port}")
        server = RtmProcess("rtm-api", env)
        await server.start()
        try:
            await server.wait_for_message("internal http listening")
            assert server.proc is not None
            pid = server.proc.pid
            pin(pid, SERVER_CPU)
            one = f"{RUNTIMES}/{game_ids[len(game_ids) // 2]}"
            rate, secs = args.rate, args.seconds
            results["healthz"] = await at_rate(pid, port, "/healthz", rate, secs)
            results["get"] = await at_rate(pid, port, one, rate, secs, args.profile)
            results["healthz_again"] = await at_rate(pid, port, "/healthz", rate, secs)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                page_ms, body = await median_ms(http, f"{RUNTIMES}?limit={PAGE}", 30)
                results["list_paged"] = paged(body)
                results["list_page_ms"] = round(page_ms, 2) if paged(body) else None
                full_ms, body = await median_ms(http, RUNTIMES, 10)
                items = body["items"] if isinstance(body, dict) else body
                results["list_all_ms"] = round(full_ms, 2)
                results["list_all_items"] = len(items)
            results["db_page_ms"] = round(await db_floor_ms(core, PAGE, 30), 2)
            results["db_all_ms"] = round(await db_floor_ms(core, None, 10), 2)
        finally:
            await server.close()
    results["load_after"] = load_fields()
    return results


def report(r: dict[str, Any]) -> None:
    h, g = r["healthz"], r["get"]
    print(
        f"healthz at {h['rate']:g}/s: p50 {h['p50_ms']} ms, p99 {h['p99_ms']} ms, "
        f"server CPU {h['server_cpu_ms_per_request']} ms/req, load generator "
        f"{h['client_cpu_share']:.0%} of a core"
    )
    print(
        f"GET one runtime at {g['rate']:g}/s: p50 {g['p50_ms']} ms, p99 {g['p99_ms']} ms "
        f"(target ≤ 10 ms, ≤ 2x healthz: {g['p99_ms'] / h['p99_ms']:.2f}x), server CPU "
        f"{g['server_cpu_ms_per_request']} ms/req (target ≤ 0.7), errors {g['errors']}, "
        f"load generator {g['client_cpu_share']:.0%} of a core"
    )
    page = r["list_page_ms"]
    page_text = f"{page:.1f} ms" if page is not None else "n/a (the API does not page yet)"
    print(
        f"list of {r['list_all_items']}: one page {page_text}"
        f" (db floor {r['db_page_ms']} ms), unpaged {r['list_all_ms']:.1f} ms "
        f"(db floor {r['db_all_ms']} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--profile", help="py-spy SVG of the server during the GET phase")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    results = asyncio.run(bench(args))
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
