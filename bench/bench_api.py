"""rtm-api's REST start (issue 14), against the real `rtm-api` process.

    source .rtm-dev/test.env && .venv/bin/python bench/bench_api.py [--starts 10] [--json out]

`POST …/{game_id}/start`, request → 200, against a raw aiodocker
create+start of the very container RTM would create (`bench_jobs.raw_round`,
through the Docker API, not the docker CLI). Target: ≤ 1.05x. Rounds
alternate; medians, and the median of the per-round ratios (a round's raw and
REST starts run seconds apart, under the same load). The read path is
`bench_read.py`.

The server runs as the `rtm-api` console command over `benchkit.bench_core`'s
fresh database, network and stack (settings passed as `RTMANAGER_*`, as the
process tests do); this process only drives it.
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
import httpx
from bench_jobs import raw_round
from benchkit import IMAGE, REPO, BenchRig, bench_core, bench_port, load_fields, remove_stack

sys.path.insert(0, str(REPO / "tests"))
from processes import RtmProcess, settings_env

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


async def starts(core: BenchRig, http: httpx.AsyncClient, rounds: int) -> dict[str, Any]:
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
    paired = statistics.median(a / r for a, r in zip(api_times, raw_times, strict=True))
    print(
        f"raw create+start: {raw * 1000:.0f} ms, REST start → 200: {api * 1000:.0f} ms "
        f"(medians of {rounds}); ratio {api / raw:.2f}x, median per-round ratio "
        f"{paired:.2f}x (target ≤ 1.05x)"
    )
    return {
        "raw_ms": round(raw * 1000, 1),
        "rest_ms": round(api * 1000, 1),
        "ratio": round(api / raw, 3),
        "paired_ratio": round(paired, 3),
        "rounds": rounds,
    }


async def bench(rounds: int) -> dict[str, Any]:
    result: dict[str, Any] = {"load": load_fields()}
    async with bench_core() as core:
        addr = f"127.0.0.1:{bench_port()}"
        server = RtmProcess("rtm-api", settings_env(core.settings, internal_http_addr=addr))
        await server.start()
        try:
            await server.wait_for_message("internal http listening")
            limits = httpx.Limits(max_keepalive_connections=4, keepalive_expiry=4)
            async with httpx.AsyncClient(
                base_url=f"http://{addr}", timeout=60, limits=limits
            ) as http:
                await start_round(http, new_game())  # warm: image, pools, state root
                result.update(await starts(core, http, rounds))
        finally:
            await server.close()
    result["load_after"] = load_fields()
    return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="REST start vs raw create+start (issue 14)")
    parser.add_argument("--starts", type=int, default=10, help="start rounds")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    result = asyncio.run(bench(args.starts))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
