"""What every benchmark under `bench/` needs: rtm-core's infrastructure and
adapters (a `BenchRig`) over the dev dependencies, with its own database,
Docker network, `com.galaxy.stack` and streams, all removed afterwards.
Each benchmark builds the service it measures from the rig the way that
service's `main` does: `bootstrap(rig.infra, rig.adapters)`.

    source .rtm-dev/test.env && .venv/bin/python bench/bench_<what>.py

Scripts in `bench/` import it as `benchkit` (the script's folder is on
`sys.path`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import asyncpg
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from rtm_core.adapters.docker_engine import DockerEngine
from rtm_core.adapters.postgres import database as db
from rtm_core.adapters.postgres.repositories import Repositories
from rtm_core.adapters.redis.client import redis_client
from rtm_core.lifecycle import Lifecycle
from rtm_core.observability import Metrics
from rtm_core.runtime.bootstrap import CoreAdapters, Infrastructure
from rtm_core.runtime.loops import LoopRegistry
from rtm_core.settings import Settings, load_settings

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
    # Few at once: Docker 20.10 wedged (libnetwork's unWatchSvcRecord, every
    # network call blocked) while 16 force-removals of a thousand engines on
    # one bridge ran at once (issue 14's idle run). Unproven as a cure.
    await bounded(4, [c.delete(force=True) for c in listed])


async def _remove_network(client: aiodocker.Docker, network: str) -> None:
    """The bench's network, once the daemon has let go of the endpoints of the
    containers just removed (after a thousand it can take a while)."""
    for attempt in range(30):
        try:
            await (await client.networks.get(network)).delete()
            return
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return
            if attempt == 29:
                print(f"could not remove network {network}: {exc.message}", file=sys.stderr)
                return
            await asyncio.sleep(2)


@dataclass(frozen=True)
class BenchRig:
    """What a benchmark holds: the infrastructure and every adapter over it,
    to arrange load and to build the measured service's own dependencies."""

    infra: Infrastructure
    adapters: CoreAdapters

    @property
    def settings(self) -> Settings:
        return self.infra.settings

    @property
    def postgres(self) -> AsyncEngine:
        return self.infra.postgres

    @property
    def redis(self) -> Redis:
        return self.infra.redis

    @property
    def repos(self) -> Repositories:
        return self.adapters.repos

    @property
    def lifecycle(self) -> Lifecycle:
        return self.adapters.lifecycle


@asynccontextmanager
async def bench_core(
    record_docker_latency: Callable[[str, float], None] | None = None, **overrides: Any
) -> AsyncIterator[BenchRig]:
    """A rig over a fresh database, network, stack and streams; all removed afterwards.

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
    # Built field by field (not `connect()`) so a benchmark can see every Docker call.
    infra = Infrastructure(
        settings=settings,
        postgres=engine,
        redis=redis_client(settings),
        docker=DockerEngine.from_settings(
            settings, record_docker_latency or metrics.record_docker_latency
        ),
        metrics=metrics,
        loops=LoopRegistry(metrics),
        process="bench",
    )
    rig = BenchRig(infra, CoreAdapters.over(infra))
    try:
        yield rig
    finally:
        await remove_stack(client, stack)
        await _remove_network(client, network)
        await client.close()
        keys = [k async for k in infra.redis.scan_iter(f"*{stack}*")]
        if keys:
            await infra.redis.delete(*keys)
        await infra.aclose()
        conn = await asyncpg.connect(server_dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
        shutil.rmtree(state_root, ignore_errors=True)


def load_fields() -> dict[str, Any]:
    """The machine a figure was measured on: cores and the load average then."""
    one, five, _ = os.getloadavg()
    return {"cpus": os.cpu_count(), "load1": round(one, 2), "load5": round(five, 2)}


_handed_out: set[int] = set()


def bench_port() -> int:
    """A free loopback port from `RTM_BENCH_PORTS` (`first-last`, default
    18300-18399): benchmarks share the machine, so they keep to a range of their own."""
    first, last = (int(p) for p in os.environ.get("RTM_BENCH_PORTS", "18300-18399").split("-"))
    for port in range(first, last + 1):
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    sys.exit(f"no free port in RTM_BENCH_PORTS {first}-{last}")
