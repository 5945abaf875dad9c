"""Shared harness: real PostgreSQL, Redis and Docker for every test that needs them.

PostgreSQL and Redis come from `RTM_TEST_POSTGRES_DSN` / `RTM_TEST_REDIS_ADDR`
(what `make test` exports after `scripts/ensure-deps.sh`), or else from
testcontainers (a laptop that can pull images). Each session gets its own
database, Docker network and `com.galaxy.stack`, and each test its own
stream names, so parallel sessions on one daemon never see each other.
Nothing here is a fake: a test that needs a dependency fails, never skips,
when the dependency is missing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from harness import fresh_database
from opentelemetry.sdk.trace import ReadableSpan
from redis.asyncio import Redis
from rig import Rig
from tracing import SpanCapture, install

from rtm_core.adapters.redis.client import redis_client
from rtm_core.observability import Metrics
from rtm_core.runtime.bootstrap import CoreAdapters, connect
from rtm_core.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
ENGINE = "galaxy/test-engine"


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session", autouse=True)
def span_capture() -> SpanCapture:
    """A recording tracer provider for the session, as every RTM process has one."""
    return install()


@pytest.fixture
def finished_spans(span_capture: SpanCapture) -> Iterator[list[ReadableSpan]]:
    """Spans that end while the test runs (RTM's own tracer, in process)."""
    with span_capture.capturing() as spans:
        yield spans


@pytest.fixture(scope="session")
def postgres_server_dsn() -> Iterator[str]:
    """A libpq DSN of a server where the tests may create databases."""
    if dsn := os.environ.get("RTM_TEST_POSTGRES_DSN"):
        yield dsn
        return
    from testcontainers.community.postgres import PostgresContainer

    with PostgresContainer("postgres:15", driver=None) as pg:
        yield pg.get_connection_url()


@pytest.fixture(scope="session")
def redis_addr() -> Iterator[str]:
    if addr := os.environ.get("RTM_TEST_REDIS_ADDR"):
        yield addr
        return
    from testcontainers.community.redis import RedisContainer

    with RedisContainer("redis:7") as r:
        yield f"{r.get_container_host_ip()}:{r.get_exposed_port(6379)}"


@pytest.fixture(scope="session")
async def database_dsn(postgres_server_dsn: str) -> AsyncIterator[str]:
    """A fresh database for this session, migrated once."""
    async with fresh_database(postgres_server_dsn, "rtm_test_") as dsn:
        yield dsn


@pytest.fixture(scope="session")
def stack() -> str:
    return _unique("test-")


@pytest.fixture(scope="session")
def engine_images() -> str:
    """Builds the busybox test engine once per session (cheap when current)."""
    subprocess.run([str(REPO / "scripts" / "build-test-engine.sh")], check=True)
    return ENGINE


@pytest.fixture(scope="session")
async def docker_network(stack: str) -> AsyncIterator[str]:
    name = f"rtm-{stack}"
    client = aiodocker.Docker()
    await client.networks.create({"Name": name, "Driver": "bridge", "CheckDuplicate": True})
    yield name
    await _remove_stack_containers(client, stack)
    network = await client.networks.get(name)
    await network.delete()
    await client.close()


async def _remove_stack_containers(client: aiodocker.Docker, stack: str) -> None:
    containers = await client.containers.list(
        all=True, filters={"label": [f"com.galaxy.stack={stack}"]}
    )
    await asyncio.gather(*(c.delete(force=True) for c in containers), return_exceptions=True)


@pytest.fixture
def state_root(tmp_path: Path) -> Path:
    root = tmp_path / "games"
    root.mkdir()
    return root


@pytest.fixture
def make_settings(
    database_dsn: str, redis_addr: str, docker_network: str, stack: str, state_root: Path
) -> Callable[..., Settings]:
    """Settings for one test: its own streams, this session's stack and network."""
    streams = _unique("t")

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "postgres_primary_dsn": database_dsn,
            "redis_master_addr": redis_addr,
            "docker_network": docker_network,
            "stack": stack,
            "game_state_root": state_root,
            "game_state_owner_uid": os.getuid(),
            "game_state_owner_gid": os.getgid(),
            "image_pull_policy": "never",
            "container_stop_timeout_seconds": 5,
            "game_lease_ttl_seconds": 10,
            "lobby_internal_base_url": "http://127.0.0.1:9",
            "lobby_internal_timeout": "1s",
            "redis_start_jobs_stream": f"{streams}:runtime:start_jobs",
            "redis_stop_jobs_stream": f"{streams}:runtime:stop_jobs",
            "redis_job_results_stream": f"{streams}:runtime:job_results",
            "redis_health_events_stream": f"{streams}:runtime:health_events",
            "notification_intents_stream": f"{streams}:notification:intents",
            "jobs_consumer_group": f"{streams}-rtmanager",
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def make_core(
    metrics: Metrics, stack: str, engine_images: str
) -> AsyncIterator[Callable[[Settings], Rig]]:
    """Wires rtm-core over real dependencies; removes this stack's engines afterwards."""
    rigs: list[Rig] = []

    def make(settings: Settings) -> Rig:
        infra = connect(settings, metrics, "test", pool_size=5)
        rig = Rig(infra, CoreAdapters.over(infra))
        rigs.append(rig)
        return rig

    yield make
    client = aiodocker.Docker()
    await _remove_stack_containers(client, stack)
    await client.close()
    for rig in rigs:
        await rig.aclose()


@pytest.fixture
async def core(make_core: Callable[[Settings], Rig], settings: Settings) -> Rig:
    return make_core(settings)


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = redis_client(settings)
    yield client
    await client.aclose()


@pytest.fixture
async def docker() -> AsyncIterator[aiodocker.Docker]:
    client = aiodocker.Docker()
    yield client
    await client.close()


@pytest.fixture
def game_id() -> str:
    return _unique("game-")
