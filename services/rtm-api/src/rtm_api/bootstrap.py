"""What the REST handlers use, and nothing more (issue 9: layering).

Reads go through the records, operation-log, health and engine-log ports, writes through the
lifecycle (which holds the lease, the engine and the streams itself), and
`/readyz` asks one readiness check. The Infrastructure stays the runtime's:
`bootstrap()` hands the API only the check over it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rtm_api.streams import Followers
from rtm_core.adapters.redis.health_log import HealthEventLog as RedisHealthEventLog
from rtm_core.lifecycle import Lifecycle
from rtm_core.ports import (
    EngineRuntime,
    EngineUsages,
    HealthEventLog,
    HealthSnapshots,
    OperationLog,
    RuntimeRecords,
)
from rtm_core.runtime.bootstrap import CoreAdapters, Infrastructure
from rtm_core.runtime.ops_http import Readiness
from rtm_core.runtime.readiness import first_failure
from rtm_core.settings import Settings


@dataclass(frozen=True)
class ApiDeps:
    settings: Settings
    lifecycle: Lifecycle
    records: RuntimeRecords
    operations: OperationLog
    ready: Readiness
    #: Issue 13's reads: engine logs, health snapshots and events, follow streams.
    engine: EngineRuntime
    snapshots: HealthSnapshots
    health_events: HealthEventLog
    followers: Followers
    usages: EngineUsages


def bootstrap(infra: Infrastructure, core: CoreAdapters) -> ApiDeps:
    return ApiDeps(
        settings=infra.settings,
        lifecycle=core.lifecycle,
        records=core.repos,
        operations=core.repos,
        ready=lambda: first_failure(infra),
        engine=infra.docker,
        snapshots=core.repos,
        health_events=RedisHealthEventLog(
            infra.redis, stream=infra.settings.redis_health_events_stream
        ),
        followers=Followers(infra.settings.api_max_followers),
        usages=core.repos,
    )
