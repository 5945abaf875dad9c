"""What the reconciler's passes use, picked from rtm-core by `bootstrap()`.

The reconcile pass lists this stack's containers (engine runtime) and the
live records, and settles drifts through the lifecycle; retention cleanup
queries records stopped before a cutoff and cleans each through the
lifecycle. Both are loops in the process's registry. With
RTMANAGER_AUTO_RESTART=on (issue 12) a third loop reads the health events
through its own consumer group (`feed`) and restarts crashed engines through
the lifecycle; its gauges go to `metrics`. Nothing else of the core reaches
this service.
"""

from __future__ import annotations

from dataclasses import dataclass

from rtm_core.adapters.redis.health_feed import HealthEventFeed as RedisHealthEventFeed
from rtm_core.lifecycle import Lifecycle
from rtm_core.observability import Metrics
from rtm_core.ports import EngineRuntime, HealthEventFeed, RuntimeRecords
from rtm_core.runtime.bootstrap import CoreAdapters, Infrastructure
from rtm_core.runtime.loops import LoopRegistry
from rtm_core.settings import Settings


@dataclass(frozen=True)
class ReconcilerDeps:
    settings: Settings
    engines: EngineRuntime
    records: RuntimeRecords
    lifecycle: Lifecycle
    loops: LoopRegistry
    metrics: Metrics
    #: `runtime:health_events` through the auto-restart group; None while auto restart is off.
    feed: HealthEventFeed | None = None


def bootstrap(infra: Infrastructure, core: CoreAdapters) -> ReconcilerDeps:
    settings = infra.settings
    feed = None
    if settings.auto_restart:
        feed = RedisHealthEventFeed(
            infra.redis,
            stream=settings.redis_health_events_stream,
            group=settings.auto_restart_consumer_group,
        )
    return ReconcilerDeps(
        settings=settings,
        engines=infra.docker,
        records=core.repos,
        lifecycle=core.lifecycle,
        loops=infra.loops,
        metrics=infra.metrics,
        feed=feed,
    )
