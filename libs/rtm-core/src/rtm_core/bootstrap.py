"""The boot sequence every RTM process runs (SPEC §2), and the wired `Core`.

Order, each step fatal: migrations → PostgreSQL ping → Redis ping → Docker
ping and network → telemetry. Processes then open their listener and start
their loops. Tests build a `Core` the same way, against real dependencies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from rtm_core import db
from rtm_core.docker import DockerEngine
from rtm_core.exits import ExpectedExits
from rtm_core.health import HealthReporter
from rtm_core.lease import GameLeases
from rtm_core.lifecycle import Lifecycle, LifecycleDeps
from rtm_core.lobby import LobbyDiagnostics
from rtm_core.loops import LoopRegistry
from rtm_core.publishers import Publishers
from rtm_core.repositories import Repositories
from rtm_core.settings import Settings
from rtm_core.telemetry import Metrics, setup_telemetry

log = logging.getLogger("rtm_core.boot")


class BootError(Exception):
    """A boot step failed; the process must exit non-zero before any listener opens."""


def redis_client(settings: Settings, *, decode_responses: bool = True) -> Redis:
    """A client of the configured Redis. `decode_responses=False` returns bytes, for
    readers of entries written by others that must survive any byte sequence."""
    host, _, port = settings.redis_master_addr.rpartition(":")
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    return Redis(
        host=host or "127.0.0.1",
        port=int(port),
        password=password,
        db=settings.redis_db,
        decode_responses=decode_responses,
        health_check_interval=30,
        socket_connect_timeout=5,
    )


@dataclass
class Core:
    settings: Settings
    engine: AsyncEngine
    redis: Redis
    docker: DockerEngine
    repos: Repositories
    metrics: Metrics
    publishers: Publishers
    health: HealthReporter
    leases: GameLeases
    exits: ExpectedExits
    lobby: LobbyDiagnostics
    lifecycle: Lifecycle
    loops: LoopRegistry
    process: str = field(default="rtm")

    async def aclose(self) -> None:
        await self.lobby.aclose()
        await self.docker.close()
        await self.redis.aclose()
        await self.engine.dispose()


async def _step(message: str, what: str, coro: object) -> None:
    try:
        await coro  # type: ignore[misc]
    except Exception as exc:
        raise BootError(f"{what}: {exc or type(exc).__name__}") from exc
    log.info(message)


async def boot(settings: Settings, process: str, *, metrics: Metrics | None = None) -> Core:
    """Run the boot steps in order; returns the wired core or raises BootError."""
    metrics = metrics or Metrics()
    engine = db.create_engine(settings.postgres_primary_dsn)
    redis = redis_client(settings)
    docker = DockerEngine.from_settings(settings, metrics.record_docker_latency)
    try:
        await _step("migrations applied", "migrations", db.migrate(engine))
        await _step("postgres ping ok", "postgres ping", db.ping(engine))
        await _step("redis ping ok", "redis ping", redis.ping())
        await _step("docker ping ok", "docker ping", docker.ping())
        if not await docker.network_exists():
            raise BootError(
                f"docker network {settings.docker_network} not found; create it first "
                f"(docker network create {settings.docker_network}); RTM never creates it"
            )
        log.info("docker network found", extra={"network": settings.docker_network})
        setup_telemetry(process)
        # The instruments above were created before the provider existed.
        metrics.start_counters_at_zero()
    except BaseException:
        await docker.close()
        await redis.aclose()
        await engine.dispose()
        raise
    return wire(settings, engine, redis, docker, metrics, process)


def wire(
    settings: Settings,
    engine: AsyncEngine,
    redis: Redis,
    docker: DockerEngine,
    metrics: Metrics,
    process: str = "rtm",
) -> Core:
    repos = Repositories(engine)
    publishers = Publishers(
        redis,
        job_results_stream=settings.redis_job_results_stream,
        health_events_stream=settings.redis_health_events_stream,
        notification_intents_stream=settings.notification_intents_stream,
        maxlen=settings.stream_maxlen,
    )
    health = HealthReporter(publishers, repos, metrics)
    leases = GameLeases(redis, settings.game_lease_ttl_seconds, metrics.count_lease_conflict)
    exits = ExpectedExits(redis, settings.container_stop_timeout_seconds + 120)
    lobby = LobbyDiagnostics(
        httpx.AsyncClient(timeout=settings.lobby_internal_timeout),
        settings.lobby_internal_base_url,
    )
    deps = LifecycleDeps(
        settings=settings,
        repos=repos,
        docker=docker,
        leases=leases,
        publishers=publishers,
        health=health,
        lobby=lobby,
        exits=exits,
        metrics=metrics,
    )
    return Core(
        settings=settings,
        engine=engine,
        redis=redis,
        docker=docker,
        repos=repos,
        metrics=metrics,
        publishers=publishers,
        health=health,
        leases=leases,
        exits=exits,
        lobby=lobby,
        lifecycle=Lifecycle(deps),
        loops=LoopRegistry(metrics),
        process=process,
    )
