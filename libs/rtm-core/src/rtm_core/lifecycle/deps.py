"""Everything a lifecycle operation talks to, passed in rather than imported:
ports only, so the same rules run on the real adapters and on the unit tier's fakes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rtm_core.lifecycle.health import HealthReporter
from rtm_core.observability import Metrics
from rtm_core.ports import (
    EngineRuntime,
    EventPublisher,
    ExpectedExits,
    GameLeases,
    LobbyDiagnostics,
    Repositories,
)
from rtm_core.settings import Settings


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class LifecycleDeps:
    settings: Settings
    repos: Repositories
    docker: EngineRuntime
    leases: GameLeases
    publishers: EventPublisher
    health: HealthReporter
    lobby: LobbyDiagnostics
    exits: ExpectedExits
    metrics: Metrics
    clock: Callable[[], datetime] = field(default=utcnow)
