"""The lifecycle services: the one place RTM's rules about a game's engine live.

REST handlers and stream consumers call `Lifecycle` with only `source` (and,
for streams, a lease wait) differing; the reconciler and cleanup worker call
the drift and retention entry points, and (issue 12) the auto-restart loop
the crash-loop ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rtm_core.domain.crashloop import CrashHistory, CrashPolicy, Decision
from rtm_core.domain.engine import ContainerInfo
from rtm_core.domain.vocabulary import OpSource
from rtm_core.lifecycle import reconcile, reconcile_batch, selfheal
from rtm_core.lifecycle.cleanup import cleanup
from rtm_core.lifecycle.deps import LifecycleDeps
from rtm_core.lifecycle.gated_patch import finish_interrupted_patches, prune_snapshots
from rtm_core.lifecycle.operation import OperationResult
from rtm_core.lifecycle.reconcile_batch import Drift, DriftOutcome, DriftResult
from rtm_core.lifecycle.replace import patch, restart
from rtm_core.lifecycle.start import start
from rtm_core.lifecycle.stop import stop

__all__ = [
    "Drift",
    "DriftOutcome",
    "DriftResult",
    "Lifecycle",
    "LifecycleDeps",
    "OperationResult",
]


class Lifecycle:
    def __init__(self, deps: LifecycleDeps) -> None:
        self.deps = deps
        self.crash_policy = CrashPolicy.of(deps.settings)

    async def start(
        self,
        game_id: str,
        image_ref: str,
        source: OpSource,
        *,
        lease_wait: float = 0.0,
        job_id: str | None = None,
        wait_ready: bool | None = None,
    ) -> OperationResult:
        return await start(
            self.deps,
            game_id,
            image_ref,
            source,
            lease_wait=lease_wait,
            job_id=job_id,
            wait_ready=wait_ready,
        )

    async def stop(
        self,
        game_id: str,
        reason: str,
        source: OpSource,
        *,
        lease_wait: float = 0.0,
        job_id: str | None = None,
    ) -> OperationResult:
        return await stop(self.deps, game_id, reason, source, lease_wait=lease_wait, job_id=job_id)

    async def restart(
        self, game_id: str, source: OpSource, *, lease_wait: float = 0.0
    ) -> OperationResult:
        return await restart(self.deps, game_id, source, lease_wait=lease_wait)

    async def patch(
        self, game_id: str, image_ref: str, source: OpSource, *, lease_wait: float = 0.0
    ) -> OperationResult:
        return await patch(self.deps, game_id, image_ref, source, lease_wait=lease_wait)

    async def cleanup(
        self,
        game_id: str,
        source: OpSource,
        *,
        lease_wait: float = 0.0,
        stopped_before: datetime | None = None,
    ) -> OperationResult:
        return await cleanup(
            self.deps, game_id, source, lease_wait=lease_wait, stopped_before=stopped_before
        )

    async def reconcile_dispose(self, game_id: str) -> bool:
        return await reconcile.dispose(self.deps, game_id)

    async def reconcile_observed_exited(self, game_id: str) -> bool:
        return await reconcile.observed_exited(self.deps, game_id)

    async def reconcile_adopt(self, container: ContainerInfo) -> bool:
        return await reconcile.adopt(self.deps, container)

    async def reconcile_many(self, drifts: Sequence[Drift]) -> list[DriftResult]:
        """The three drifts above for many games at once (one round trip per step)."""
        return await reconcile_batch.reconcile_many(self.deps, drifts)

    # issue 12: self-healing ------------------------------------------------

    async def lift_quarantine(
        self, game_id: str, source: OpSource, *, lease_wait: float = 0.0
    ) -> OperationResult:
        return await selfheal.lift_quarantine(self.deps, game_id, source, lease_wait=lease_wait)

    async def record_crash(self, report: selfheal.CrashReport) -> Decision | None:
        return await selfheal.record_crash(self.deps, self.crash_policy, report)

    async def auto_restart(self, game_id: str) -> selfheal.AttemptOutcome:
        return await selfheal.auto_restart(self.deps, self.crash_policy, game_id)

    async def exited_engines(self) -> list[selfheal.CrashReport]:
        return await selfheal.exited_engines(self.deps, self.crash_policy)

    async def crash_histories(self) -> list[CrashHistory]:
        return await self.deps.repos.crash_histories()

    async def finish_interrupted_patches(self) -> int:
        return await finish_interrupted_patches(self.deps)

    async def prune_snapshots(self) -> int:
        return await prune_snapshots(self.deps)
