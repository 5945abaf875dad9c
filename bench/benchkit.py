"""What every benchmark under `bench/` needs: a `Core` over the dev dependencies
with its own database, Docker network, `com.galaxy.stack` and streams, all
removed afterwards.

    source .rtm-dev/test.env && .venv/bin/python bench/bench_<what>.py

Scripts in `bench/` import it as `benchkit` (the script's folder is on
`sys.path`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiodocker
import asyncpg

from rtm_core.adapters.docker_engine import DockerEngine
from rtm_core.adapters.postgres import database as db
from rtm_core.observability import Metrics
from rtm_core.runtime.bootstrap import Core, redis_client, wire
from rtm_core.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
IMAGE = "galaxy/test-engine:1.0.0"


def dev_dependencies() -> tuple[str, str]:
    """(PostgreSQL server DSN, Redis address) from `.rtm-dev/test.env`."""
    server_dsn = os.environ.get("RTM_TEST_POSTGRES_DSN")
    redis_addr = os.environ.get("RTM_TEST_REDIS_ADDR")
    if not server_dsn or not redis_addr:
        sys.exit("source .rtm-dev/test.env first (RTM_TEST_POSTGRES_DSN, RTM_TEST_REDIS_ADDR)")
    return server_dsn, redis_addr


async def bounded(limit: int, coros: list[Any]) -> list[Any]:
    """Await `coros`, at most `limit` at once; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def remove_stack(client: aiodocker.Docker, stack: str) -> None:
    listed = await client.containers.list(
        all=True, filters={"label": [f"com.galaxy.stack={stack}"]}
    )
    await bounded(16, [c.delete(force=True) for c in listed])


@asynccontextmanager
async def bench_core(
    record_docker_latency: Callable[[str, float], None] | None = None, **overrides: Any
) -> AsyncIterator[Core]:
    """A core over a fresh database, network, stack and streams; all removed afterwards.

    `overrides` are `Settings` fields; `record_docker_latency(op, seconds)`
    sees every Docker call (default: the core's histogram).
    """
    server_dsn, redis_addr = dev_dependencies()
    subprocess.run([str(REPO / "scripts" / "build-test-engine.sh")], check=True)
    tag = uuid.uuid4().hex[:8]
    name, stack, network = f"rtm_bench_{tag}", f"bench-{tag}", f"rtm-bench-{tag}"
    conn = await asyncpg.connect(server_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    client = aiodocker.Docker()
    await client.networks.create({"Name": network, "Driver": "bridge"})
    state_root = Path(tempfile.mkdtemp(prefix="rtm-bench-"))
    settings = load_settings(
        **{
            "postgres_primary_dsn": f"{server_dsn.rsplit('/', 1)[0]}/{name}"
            "?search_path=rtmanager&sslmode=disable",
            "redis_master_addr": redis_addr,
            "docker_network": network,
            "stack": stack,
            "game_state_root": state_root,
            "game_state_owner_uid": os.getuid(),
            "game_state_owner_gid": os.getgid(),
            "image_pull_policy": "never",
            "container_stop_timeout_seconds": 5,
            "lobby_internal_base_url": "http://127.0.0.1:9",
            "redis_start_jobs_stream": f"{stack}:runtime:start_jobs",
            "redis_stop_jobs_stream": f"{stack}:runtime:stop_jobs",
            "redis_job_results_stream": f"{stack}:runtime:job_results",
            "redis_health_events_stream": f"{stack}:runtime:health_events",
            "notification_intents_stream": f"{stack}:notification:intents",
            "jobs_consumer_group": f"{stack}-rtmanager",
            **overrides,
        }
    )
    engine = db.create_engine(settings.postgres_primary_dsn)
    await db.migrate(engine)
    metrics = Metrics()
    docker = DockerEngine.from_settings(
        settings, record_docker_latency or metrics.record_docker_latency
    )
    core = wire(settings, engine, redis_client(settings), docker, metrics, "bench")
    try:
        yield core
    finally:
        await remove_stack(client, stack)
        await (await client.networks.get(network)).delete()
        await client.close()
        keys = [k async for k in core.redis.scan_iter(f"*{stack}*")]
        if keys:
            await core.redis.delete(*keys)
        await core.aclose()
        conn = await asyncpg.connect(server_dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
        shutil.rmtree(state_root, ignore_errors=True)
