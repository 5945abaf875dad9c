"""What a test holds of rtm-core: the infrastructure and every adapter over it.

Services receive only their own dependency sets (each service's
`bootstrap(infra, adapters)`); a test sees everything, to arrange and to
assert what a user would check (the row, the stream entry, the container).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from rtm_core.adapters.docker_engine import DockerEngine
from rtm_core.adapters.lobby import LobbyDiagnostics
from rtm_core.adapters.postgres.repositories import Repositories
from rtm_core.adapters.redis.exits import ExpectedExits
from rtm_core.adapters.redis.leases import GameLeases
from rtm_core.adapters.redis.publishers import Publishers
from rtm_core.lifecycle import Lifecycle
from rtm_core.lifecycle.health import HealthReporter
from rtm_core.observability import Metrics
from rtm_core.runtime.bootstrap import CoreAdapters, Infrastructure
from rtm_core.runtime.loops import LoopRegistry
from rtm_core.settings import Settings


@dataclass
class Rig:
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
    def docker(self) -> DockerEngine:
        return self.infra.docker

    @property
    def metrics(self) -> Metrics:
        return self.infra.metrics

    @property
    def loops(self) -> LoopRegistry:
        return self.infra.loops

    @property
    def repos(self) -> Repositories:
        return self.adapters.repos

    @property
    def lifecycle(self) -> Lifecycle:
        return self.adapters.lifecycle

    @property
    def publishers(self) -> Publishers:
        return self.adapters.publishers

    @property
    def health(self) -> HealthReporter:
        return self.adapters.health

    @property
    def leases(self) -> GameLeases:
        return self.adapters.leases

    @property
    def exits(self) -> ExpectedExits:
        return self.adapters.exits

    @property
    def lobby(self) -> LobbyDiagnostics:
        return self.adapters.lobby

    async def aclose(self) -> None:
        await self.infra.aclose()
