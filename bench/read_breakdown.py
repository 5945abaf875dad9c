"""Where a `GET /runtimes/{id}`'s server CPU goes (issue 14), in-process, no HTTP.

    source .rtm-dev/test.env && .venv/bin/python bench/read_breakdown.py

The rtm-api app (`create_app` over `benchkit`'s rig) is called as ASGI, one
request at a time, and the process's CPU per request is compared across
routes added beside the real one, each a step closer to it:

    /healthz                    the framework floor (no dependency, no read)
    /x/deps/{game_id}           the real route's dependencies (bearer guard, deps), no read
    /x/fetchrow/{game_id}       + one bare asyncpg fetchrow of the record
    /x/get_record/{game_id}     + `Repositories.get_record` (its span, the record built)
    /api/v1/internal/runtimes/… the real route (+ the encoding)

What the real route adds over `/x/fetchrow` is RTM's own share; the rest is
the framework and one PostgreSQL round trip resumed through the ASGI stack.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench_reconcile import seed_records
from benchkit import bench_core
from fastapi import APIRouter, Depends, Response

from rtm_api.app import create_app
from rtm_api.bootstrap import bootstrap
from rtm_api.deps import Deps, bearer_guard
from rtm_core.adapters.postgres.repositories import _GET_RECORD
from rtm_core.runtime.telemetry import setup_telemetry

GAME = "breakdown-1"


async def call(app: Any, path: str) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 200, sent


async def main() -> None:
    setup_telemetry("bench")
    async with bench_core() as core:
        await seed_records(core, [GAME], "running", ["c-1"])
        app = create_app(bootstrap(core.infra, core.adapters))
        pool = await core.repos._plain()  # the read pool the route uses
        assert pool is not None
        steps = APIRouter(prefix="/x", dependencies=[Depends(bearer_guard)])

        @steps.get("/deps/{game_id}")
        async def deps_only(game_id: str, deps: Deps) -> Response:
            return Response(b"{}", media_type="application/json")

        @steps.get("/fetchrow/{game_id}")
        async def fetchrow(game_id: str, deps: Deps) -> Response:
            await pool.fetchrow(_GET_RECORD, game_id)
            return Response(b"{}", media_type="application/json")

        @steps.get("/get_record/{game_id}")
        async def get_record(game_id: str, deps: Deps) -> Response:
            await deps.records.get_record(game_id)
            return Response(b"{}", media_type="application/json")

        app.include_router(steps)
        paths = [
            "/healthz",
            f"/x/deps/{GAME}",
            f"/x/fetchrow/{GAME}",
            f"/x/get_record/{GAME}",
            f"/api/v1/internal/runtimes/{GAME}",
        ]
        results: dict[str, list[float]] = {p: [] for p in paths}
        for _ in range(3):  # interleaved, so the machine's load falls on every step alike
            for path in paths:
                for _ in range(200):
                    await call(app, path)
                n = 2000
                began = time.process_time()
                for _ in range(n):
                    await call(app, path)
                results[path].append((time.process_time() - began) / n * 1e6)
        for path, values in results.items():
            print(f"{path:<45} {sorted(values)[1]:5.0f} µs CPU per request (median of 3)")


if __name__ == "__main__":
    import uvloop

    uvloop.install()
    asyncio.run(main())
