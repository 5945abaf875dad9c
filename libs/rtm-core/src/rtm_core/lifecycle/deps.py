"""Everything a lifecycle operation talks to, passed in rather than imported."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rtm_core.docker import DockerEngine
from rtm_core.exits import ExpectedExits
from rtm_core.health import HealthReporter
from rtm_core.lease import GameLeases
from rtm_core.lobby import LobbyDiagnostics
from rtm_core.publishers import Publishers
from rtm_core.repositories import Repositories
from rtm_core.settings import Settings
from rtm_core.telemetry import Metrics


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class LifecycleDeps:
    settings: Settings
    repos: Repositories
    docker: DockerEngine
    leases: GameLeases
    publishers: Publishers
    health: HealthReporter
    lobby: LobbyDiagnostics
    exits: ExpectedExits
    metrics: Metrics
    clock: Callable[[], datetime] = field(default=utcnow)
