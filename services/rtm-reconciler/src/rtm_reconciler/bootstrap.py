"""What the reconciler's passes use, picked from rtm-core by `bootstrap()`.

The reconcile pass lists this stack's containers (engine runtime) and the
live records, and settles drifts through the lifecycle; retention cleanup
queries records stopped before a cutoff and cleans each through the
lifecycle. Both are loops in the process's registry. Nothing else of the
core reaches this service.
"""

from __future__ import annotations

from dataclasses import dataclass

from rtm_core.lifecycle import Lifecycle
from rtm_core.ports import EngineRuntime, RuntimeRecords
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


def bootstrap(infra: Infrastructure, core: CoreAdapters) -> ReconcilerDeps:
    return ReconcilerDeps(
        settings=infra.settings,
        engines=infra.docker,
        records=core.repos,
        lifecycle=core.lifecycle,
        loops=infra.loops,
    )
