"""What the watcher's loops use, and nothing more (issue 9: layering).

The loops see rtm-core through ports: the engine runtime, the records, the
expected-exit marks and the game leases ("is an operation under way?").
The Redis client reaches them only wrapped in `WatcherMemory`, the
watcher's own coordination keys; no loop knows another Redis key format.
`DaemonWatch` is what the events listener tells the two workers about the
Docker daemon (one per process: the three loops run under one leader term).
"""

from __future__ import annotations

from dataclasses import dataclass

from rtm_core.lifecycle.health import HealthReporter
from rtm_core.observability import Metrics
from rtm_core.ports import (
    EngineRuntime,
    EngineUsages,
    ExpectedExits,
    GameLeases,
    RuntimeRecords,
)
from rtm_core.runtime.bootstrap import CoreAdapters, Infrastructure
from rtm_core.runtime.loops import LoopRegistry
from rtm_core.settings import Settings
from rtm_watcher.daemon import DaemonWatch
from rtm_watcher.memory import WatcherMemory


@dataclass(frozen=True)
class WatcherDeps:
    settings: Settings
    engine: EngineRuntime
    records: RuntimeRecords
    health: HealthReporter
    exits: ExpectedExits
    leases: GameLeases
    metrics: Metrics
    loops: LoopRegistry
    memory: WatcherMemory
    #: How long a death seen while an operation holds the game waits for that
    #: operation to commit before it is dropped: one game lease TTL.
    operation_wait: float
    daemon: DaemonWatch
    #: The usage sampler's store (issue 13).
    usages: EngineUsages


def bootstrap(infra: Infrastructure, core: CoreAdapters) -> WatcherDeps:
    memory = WatcherMemory.over(infra.redis, infra.settings.stack)
    return WatcherDeps(
        settings=infra.settings,
        engine=infra.docker,
        records=core.repos,
        health=core.health,
        exits=core.exits,
        leases=core.leases,
        metrics=infra.metrics,
        loops=infra.loops,
        memory=memory,
        operation_wait=core.leases.ttl_seconds,
        daemon=DaemonWatch(memory.claims, memory.outage),
        usages=core.repos,
    )
