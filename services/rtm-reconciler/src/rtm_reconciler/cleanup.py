"""Retention cleanup (SPEC §8): containers of runtimes stopped longer than
`RTMANAGER_CONTAINER_RETENTION_DAYS` are removed through the core's cleanup
(record `removed`, op `cleanup_container` with source `cleanup_worker`; the
state directory stays). The core re-checks the age under the game's lease, so
a runtime started again meanwhile is left alone. With
RTMANAGER_PATCH_HEALTH_GATE=on the sweep also applies the patch snapshots'
retention (count and age) to every game.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from rtm_core.domain.errors import NotFound, OperationInProgress
from rtm_core.domain.records import RuntimeRecord
from rtm_core.domain.vocabulary import OpKind, OpSource
from rtm_core.observability import tracer
from rtm_reconciler.bootstrap import ReconcilerDeps
from rtm_reconciler.passes import GamePass, error_fields, fan_out

log = logging.getLogger("rtm_reconciler.cleanup")

#: Runtimes cleaned at once; each is a Docker stop (a no-op, it is stopped) and remove.
CLEANUP_CONCURRENCY = 8


@dataclass
class CleanupReport:
    candidates: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped_busy: int = 0
    failed: int = 0
    aborted: int = 0
    #: Patch snapshots past their retention (issue 12), removed.
    snapshots_removed: int = 0
    duration_ms: float = 0.0


class RetentionCleanup(GamePass):
    """The `cleanup` loop."""

    name = "cleanup"

    def __init__(
        self,
        deps: ReconcilerDeps,
        stop: asyncio.Event,
        *,
        concurrency: int = CLEANUP_CONCURRENCY,
    ) -> None:
        super().__init__(deps, stop)
        self.interval = deps.settings.cleanup_interval
        self._concurrency = concurrency

    def cutoff(self) -> datetime:
        return datetime.now(UTC) - timedelta(days=self._deps.settings.container_retention_days)

    async def run_once(self) -> None:
        report = await self.sweep()
        level = logging.INFO if report.candidates else logging.DEBUG
        log.log(level, "retention cleanup completed", extra=asdict(report))

    async def sweep(self) -> CleanupReport:
        report = CleanupReport()
        began = time.perf_counter()
        cutoff = self.cutoff()
        with tracer.start_as_current_span("rtm.retention_cleanup"):
            records = await self._deps.records.stopped_before(cutoff)
            report.candidates = len(records)

            async def clean(record: RuntimeRecord) -> None:
                await self._clean(record.game_id, cutoff, report)

            report.aborted = await fan_out(
                records, clean, limit=self._concurrency, halted=self.halted
            )
            if self._deps.settings.patch_health_gate:
                try:
                    report.snapshots_removed = await self._deps.lifecycle.prune_snapshots()
                except OSError as exc:
                    log.warning("snapshot retention failed", extra={"error": str(exc)})
        report.duration_ms = round((time.perf_counter() - began) * 1000, 1)
        return report

    async def _clean(self, game_id: str, cutoff: datetime, report: CleanupReport) -> None:
        fields = {"game_id": game_id, "op_kind": OpKind.CLEANUP_CONTAINER.value}
        try:
            result = await self._deps.lifecycle.cleanup(
                game_id, OpSource.CLEANUP_WORKER, stopped_before=cutoff
            )
        except OperationInProgress:
            report.skipped_busy += 1
            log.info("retention cleanup skipped a busy game", extra=fields)
            return
        except NotFound:
            report.unchanged += 1  # the record went away meanwhile
            return
        except Exception as exc:
            report.failed += 1
            log.warning(
                "retention cleanup failed; sweep continues", extra={**fields, **error_fields(exc)}
            )
            return
        if result.record is None:
            report.unchanged += 1  # started or stopped again since the query
        else:
            report.removed += 1
