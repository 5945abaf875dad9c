"""The `auto_restart` loop (issue 12; runs only with RTMANAGER_AUTO_RESTART=on).

Behind the reconciler's leader lease, every `RTMANAGER_AUTO_RESTART_INTERVAL`:

1. **Events.** Reads `runtime:health_events` through its own consumer group
   (`RTMANAGER_AUTO_RESTART_CONSUMER_GROUP`, `HealthEventFeed`):
   `container_exited`, `container_oom` and `probe_failed` become crash
   reports for the core (`Lifecycle.record_crash`), which schedules the
   restart or quarantines the game; every other event is acknowledged and
   ignored. An entry is acknowledged only once its crash is recorded: an
   entry whose game an operation holds waits in memory for the next
   iteration, and an entry a leader never acknowledged (it died) is
   delivered again to the next leader, so no crash is lost across an RTM
   restart. A crash reported twice (a redelivery, the sweep below) is
   recognised by its container and counted once.
2. **Sweep.** Every `RTMANAGER_INSPECT_INTERVAL`, and once before the
   reconciler's boot pass (`catch_up`): engines of `running` records found
   exited that no event reported, i.e. a clean exit (code 0) when
   `RTMANAGER_AUTO_RESTART_COUNT_CLEAN_EXIT` counts it, or a death missed
   while the stream was trimmed.
3. **Due restarts.** Every game whose scheduled restart time has come is
   restarted by the core (`Lifecycle.auto_restart`: op `restart`, source
   `auto_restart`, under the game's lease, re-checked there).
4. **Gauges.** `rtmanager.games_in_backoff` and `rtmanager.games_quarantined`
   from `crash_history`.

`run_once()` does one iteration (tests call it with short settings); `run`
is the loop. Cancellation: `stop` (SIGTERM or a lost leader lease) ends the
loop between iterations; a restart under way finishes and commits; entries
not yet acknowledged stay pending in the group for the next leader.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from rtm_core.domain.crashloop import CrashReason, Verdict
from rtm_core.domain.errors import OperationInProgress
from rtm_core.domain.vocabulary import HealthEventType
from rtm_core.lifecycle.selfheal import CrashReport
from rtm_core.ports import FeedEntry, HealthEventFeed
from rtm_core.runtime.loops import PeriodicLoop
from rtm_reconciler.bootstrap import ReconcilerDeps

log = logging.getLogger("rtm_reconciler.auto_restart")

NAME = "auto_restart"
#: Entries read from the stream per call; an iteration reads until it is drained.
READ_BATCH = 100
#: …but at most this many per iteration, so due restarts are never starved.
MAX_ENTRIES_PER_ITERATION = 1000
#: An iteration may restart engines (a Docker stop and create each): `/readyz`
#: calls the loop wedged only after three of these without one completing.
LIVENESS_SECONDS = 30.0

_CRASHES = {
    HealthEventType.CONTAINER_EXITED: CrashReason.CONTAINER_EXITED,
    HealthEventType.CONTAINER_OOM: CrashReason.CONTAINER_OOM,
    HealthEventType.PROBE_FAILED: CrashReason.PROBE_FAILED,
}


@dataclass
class IterationReport:
    entries: int = 0
    crashes: int = 0
    scheduled: int = 0
    quarantined: int = 0
    waiting_busy: int = 0
    swept: int = 0
    restarted: int = 0
    restart_failed: int = 0
    skipped: int = 0
    in_backoff: int = 0
    quarantined_games: int = 0


def crash_of(entry: FeedEntry) -> CrashReport | None:
    """The crash a health event reports, or None for any other event."""
    event = entry.event
    if event is None or not isinstance(event.event_type, HealthEventType):
        return None
    reason = _CRASHES.get(event.event_type)
    if reason is None:
        return None
    exit_code = getattr(event.details, "exit_code", None)
    at = datetime.fromtimestamp(event.occurred_at_ms / 1000, UTC)
    return CrashReport(event.game_id, event.container_id, reason, exit_code, at)


class AutoRestart(PeriodicLoop):
    name = NAME
    liveness_interval = LIVENESS_SECONDS

    def __init__(self, deps: ReconcilerDeps, feed: HealthEventFeed) -> None:
        super().__init__(deps.loops)
        self._deps = deps
        self._feed = feed
        self.interval = deps.settings.auto_restart_interval
        self._sweep_every = deps.settings.inspect_interval
        self._last_sweep = float("-inf")
        #: Entries read and not yet acknowledged (their game was busy).
        self._waiting: list[FeedEntry] = []
        self._stop: asyncio.Event | None = None

    async def run(self, stop: asyncio.Event) -> None:
        # `stop` is the leader's: also set when the lease is lost.
        self._stop = stop
        try:
            await super().run(stop)
        finally:
            self._stop = None
            # Entries read but not acknowledged stay pending in the group.
            self._waiting = []
            self._deps.metrics.games_in_backoff.discard()
            self._deps.metrics.games_quarantined.discard()

    async def run_once(self) -> None:
        report = await self.iterate()
        busy = report.crashes or report.restarted or report.restart_failed or report.quarantined
        level = logging.INFO if busy else logging.DEBUG
        log.log(level, "auto restart iteration completed", extra=asdict(report))

    async def iterate(self, *, sweep: bool | None = None) -> IterationReport:
        """One iteration; `sweep` forces (True) or skips (False) the exited-engine sweep."""
        report = IterationReport()
        await self.consume(report)
        now = time.monotonic()
        if sweep or (sweep is None and now - self._last_sweep >= self._sweep_every):
            self._last_sweep = now
            await self.sweep(report)
        await self.restart_due(report)
        await self.refresh_gauges(report)
        return report

    async def catch_up(self) -> None:
        """Before the reconciler's boot pass: exits the boot pass would otherwise
        turn into `stopped` records before this loop has seen them."""
        report = IterationReport()
        await self.sweep(report)
        self._last_sweep = time.monotonic()
        log.info("auto restart catch-up completed", extra=asdict(report))

    # 1. events -------------------------------------------------------------

    async def consume(self, report: IterationReport) -> None:
        pending, self._waiting = self._waiting, []
        handled = 0
        while True:
            for entry in pending:
                report.entries += 1
                if await self._handle(entry, report):
                    await self._feed.ack([entry.entry_id])
                else:
                    self._waiting.append(entry)
            handled += len(pending)
            if handled >= MAX_ENTRIES_PER_ITERATION:
                return
            pending = await self._feed.read(READ_BATCH)
            if not pending:
                return

    async def _handle(self, entry: FeedEntry, report: IterationReport) -> bool:
        """False: leave the entry for the next iteration (its game is busy)."""
        if entry.event is None:
            log.warning(
                "unreadable health event skipped",
                extra={"entry_id": entry.entry_id, "error": entry.problem},
            )
            return True
        crash = crash_of(entry)
        if crash is None:
            return True
        return await self._record(crash, report)

    async def _record(self, crash: CrashReport, report: IterationReport) -> bool:
        report.crashes += 1
        try:
            decision = await self._deps.lifecycle.record_crash(crash)
        except OperationInProgress:
            report.waiting_busy += 1
            return False
        if decision is not None and decision.verdict is Verdict.SCHEDULED:
            report.scheduled += 1
        elif decision is not None and decision.verdict is Verdict.QUARANTINED:
            report.quarantined += 1
        return True

    # 2. sweep --------------------------------------------------------------

    async def sweep(self, report: IterationReport) -> None:
        for crash in await self._deps.lifecycle.exited_engines():
            report.swept += 1
            await self._record(crash, report)

    # 3. due restarts -------------------------------------------------------

    async def restart_due(self, report: IterationReport) -> None:
        now = self._deps.lifecycle.deps.clock()
        for history in await self._deps.lifecycle.crash_histories():
            if self.halted() or not history.is_due(now):
                continue
            outcome = await self._deps.lifecycle.auto_restart(history.game_id)
            if outcome.result == "restarted":
                report.restarted += 1
            elif outcome.result == "failed":
                report.restart_failed += 1
            elif outcome.result == "quarantined":
                report.quarantined += 1
            elif outcome.result == "skipped":
                report.skipped += 1

    def halted(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    # 4. gauges -------------------------------------------------------------

    async def refresh_gauges(self, report: IterationReport) -> None:
        histories = await self._deps.lifecycle.crash_histories()
        report.in_backoff = sum(1 for h in histories if h.in_backoff)
        report.quarantined_games = sum(1 for h in histories if h.quarantined)
        self._deps.metrics.games_in_backoff.set(float(report.in_backoff))
        self._deps.metrics.games_quarantined.set(float(report.quarantined_games))
