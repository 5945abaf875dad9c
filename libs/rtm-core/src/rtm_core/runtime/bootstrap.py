"""The boot sequence every RTM process runs (SPEC §2), and the adapters it wires.

Order, each step fatal: migrations → PostgreSQL ping → Redis ping → Docker
ping and network → telemetry. `boot()` returns the process's open
`Infrastructure`; `CoreAdapters.over(infra)` wires the adapters and the
lifecycle on it, and each service's own `bootstrap()` picks from those only
what that service uses. Tests build the same objects with `connect()`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from rtm_core.adapters.docker_engine import DockerEngine
from rtm_core.adapters.engine_probe import EngineProbe
from rtm_core.adapters.lobby import LobbyDiagnostics
from rtm_core.adapters.postgres import database as db
from rtm_core.adapters.postgres.repositories import Repositories
from rtm_core.adapters.redis.client import redis_client
from rtm_core.adapters.redis.exits import ExpectedExits
from rtm_core.adapters.redis.leases import GameLeases
from rtm_core.adapters.redis.publishers import Publishers
from rtm_core.adapters.swarm_engine import SwarmEngine
from rtm_core.lifecycle import Lifecycle, LifecycleDeps
from rtm_core.lifecycle.health import HealthReporter
from rtm_core.observability import Metrics
from rtm_core.runtime.loops import LoopRegistry
from rtm_core.runtime.telemetry import setup_telemetry
from rtm_core.settings import EngineBackend, Settings

log = logging.getLogger("rtm_core.boot")

#: Grace the watcher gets to see an exit RTM caused, past the stop timeout.
EXPECTED_EXIT_GRACE_SECONDS = 120


#: The engine runtime a process drives (`RTMANAGER_ENGINE_BACKEND`).
Engine = DockerEngine | SwarmEngine


def engine_runtime(settings: Settings, metrics: Metrics) -> Engine:
    """The backend the setting names; both satisfy `ports.EngineRuntime`."""
    if settings.engine_backend is EngineBackend.SWARM:
        return SwarmEngine.from_settings(settings, metrics.record_docker_latency)
    return DockerEngine.from_settings(settings, metrics.record_docker_latency)


class BootError(Exception):
    """A boot step failed; the process must exit non-zero before any listener opens."""


@dataclass
class Infrastructure:
    """One process's connections and process-wide registries; closed once, at exit."""

    settings: Settings
    postgres: AsyncEngine
    redis: Redis
    docker: Engine
    metrics: Metrics
    loops: LoopRegistry
    process: str = "rtm"
    _closers: list[Any] = field(default_factory=list)

    def on_close(self, closer: Any) -> None:
        """Register an `aclose()`-able resource built over this infrastructure."""
        self._closers.append(closer)

    async def aclose(self) -> None:
        for closer in reversed(self._closers):
            await closer.aclose()
        await self.docker.close()
        await self.redis.aclose()
        await self.postgres.dispose()


def connect(
    settings: Settings, metrics: Metrics, process: str = "rtm", *, pool_size: int = 10
) -> Infrastructure:
    """Open clients (lazily connecting) without running the boot checks."""
    return Infrastructure(
        settings=settings,
        postgres=db.create_engine(settings.postgres_primary_dsn, pool_size=pool_size),
        redis=redis_client(settings),
        docker=engine_runtime(settings, metrics),
        metrics=metrics,
        loops=LoopRegistry(metrics),
        process=process,
    )


async def _step(message: str, what: str, check: Awaitable[object]) -> None:
    try:
        await check
    except Exception as exc:
        raise BootError(f"{what}: {exc or type(exc).__name__}") from exc
    log.info(message)


async def boot(
    settings: Settings, process: str, *, metrics: Metrics | None = None
) -> Infrastructure:
    """Run the boot steps in order; returns the open infrastructure or raises BootError."""
    infra = connect(settings, metrics or Metrics(), process)
    try:
        await _step("migrations applied", "migrations", db.migrate(infra.postgres))
        await _step("postgres ping ok", "postgres ping", db.ping(infra.postgres))
        await _step("redis ping ok", "redis ping", infra.redis.ping())
        await _step("docker ping ok", "docker ping", infra.docker.ping())
        if not await infra.docker.network_exists():
            raise BootError(_missing_network(settings))
        log.info("docker network found", extra={"network": settings.docker_network})
        setup_telemetry(process)
        # The instruments above were created before the provider existed.
        infra.metrics.start_counters_at_zero()
    except BaseException:
        await infra.aclose()
        raise
    return infra


def _missing_network(settings: Settings) -> str:
    name = settings.docker_network
    if settings.engine_backend is EngineBackend.SWARM:
        return (
            f"docker network {name} not found or not an attachable overlay network; create "
            f"it first (docker network create -d overlay --attachable {name}); RTM never "
            "creates it"
        )
    return (
        f"docker network {name} not found; create it first "
        f"(docker network create {name}); RTM never creates it"
    )


@dataclass(frozen=True)
class CoreAdapters:
    """rtm-core's adapters and lifecycle over one `Infrastructure`.

    Services never hold this whole: their `bootstrap()` takes the few parts
    they use, typed as ports.
    """

    repos: Repositories
    publishers: Publishers
    health: HealthReporter
    leases: GameLeases
    exits: ExpectedExits
    lobby: LobbyDiagnostics
    probe: EngineProbe
    lifecycle: Lifecycle

    @classmethod
    def over(cls, infra: Infrastructure) -> CoreAdapters:
        settings, metrics = infra.settings, infra.metrics
        repos = Repositories(infra.postgres, read_dsn=settings.postgres_primary_dsn)
        infra.on_close(repos)
        publishers = Publishers(
            infra.redis,
            health_events_stream=settings.redis_health_events_stream,
            notification_intents_stream=settings.notification_intents_stream,
            maxlen=settings.stream_maxlen,
        )
        health = HealthReporter(publishers, repos, metrics)
        leases = GameLeases(
            infra.redis, settings.game_lease_ttl_seconds, metrics.count_lease_conflict
        )
        exits = ExpectedExits(
            infra.redis, settings.container_stop_timeout_seconds + EXPECTED_EXIT_GRACE_SECONDS
        )
        lobby = LobbyDiagnostics(
            httpx.AsyncClient(timeout=settings.lobby_internal_timeout),
            settings.lobby_internal_base_url,
        )
        infra.on_close(lobby)
        probe = EngineProbe.from_settings(settings, infra.docker)
        infra.on_close(probe)
        deps = LifecycleDeps(
            settings=settings,
            repos=repos,
            docker=infra.docker,
            leases=leases,
            publishers=publishers,
            health=health,
            lobby=lobby,
            exits=exits,
            metrics=metrics,
            probe=probe,
        )
        return cls(
            repos=repos,
            publishers=publishers,
            health=health,
            leases=leases,
            exits=exits,
            lobby=lobby,
            probe=probe,
            lifecycle=Lifecycle(deps),
        )
