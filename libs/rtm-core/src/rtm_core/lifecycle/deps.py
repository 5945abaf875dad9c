"""Everything a lifecycle operation talks to, passed in rather than imported:
ports only, so the same rules run on the real adapters and on the unit tier's fakes."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rtm_core.lifecycle.health import HealthReporter
from rtm_core.observability import Metrics
from rtm_core.ports import (
    EngineProbe,
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
    #: `/healthz` of one engine: the patch health gate and a start that waits (issue 12).
    probe: EngineProbe
    clock: Callable[[], datetime] = field(default=utcnow)
    #: Uniform draws in [0, 1) for the auto-restart backoff's jitter.
    draw: Callable[[], float] = field(default=random.random)
