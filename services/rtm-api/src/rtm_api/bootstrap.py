"""What the REST handlers use, and nothing more (issue 9: layering).

Reads go through the records and operation-log ports, writes through the
lifecycle (which holds the lease, the engine and the streams itself), and
`/readyz` asks one readiness check. The Infrastructure stays the runtime's:
`bootstrap()` hands the API only the check over it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rtm_core.lifecycle import Lifecycle
from rtm_core.ports import EngineUsages, OperationLog, RuntimeRecords
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
    usages: EngineUsages


def bootstrap(infra: Infrastructure, core: CoreAdapters) -> ApiDeps:
    return ApiDeps(
        settings=infra.settings,
        lifecycle=core.lifecycle,
        records=core.repos,
        operations=core.repos,
        ready=lambda: first_failure(infra),
        usages=core.repos,
    )
