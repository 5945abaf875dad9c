"""Usage sampler (issue 13, RTMANAGER_ENGINE_USAGE=on): CPU, memory and
restart count of every `running` record's engine, each inspect interval.

One read per engine (`EngineRuntime.usage`: Docker's one-shot stats plus an
inspect), at most `RTMANAGER_ENGINE_USAGE_CONCURRENCY` at once. CPU is a
rate, so it comes from two reads: this pass's and the engine's previous one,
kept in memory; an engine seen for the first time (or by a new leader) is read
with the daemon's own second sample instead, slower but right at once. Each
pass ends with one write: the samples upserted and the rows of games no longer
running dropped (`EngineUsages.save_usages`), and the gauges
`rtmanager.engine_cpu_percent` / `rtmanager.engine_memory_bytes` set to exactly
this pass's engines (per `game_id`, or fleet totals with
RTMANAGER_ENGINE_USAGE_PER_GAME_LABEL=off). An engine that cannot be read
(gone meanwhile, a Swarm task on another node) keeps its last stored sample
while its record says `running`; a daemon that answers none of the reads fails
the pass, which the loop retries. Leaving the lead clears the gauges: only the
leader exports them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from rtm_core.domain.errors import DockerUnavailable
from rtm_core.domain.records import RuntimeRecord
from rtm_core.domain.usage import EngineUsage, UsageReading, sample
from rtm_core.lifecycle.deps import utcnow
from rtm_core.runtime.loops import PeriodicLoop
from rtm_watcher.bootstrap import WatcherDeps
from rtm_watcher.cycle import running_records

log = logging.getLogger(__name__)

#: Docker's stats collector answers reads one after the other (~0.1 s each on a
#: loaded host), so a pass over a large fleet outlasts the inspect interval:
#: the loop is wedged only once it missed three of these.
LIVENESS_FLOOR_SECONDS = 120.0


class UsageSampler(PeriodicLoop):
    name = "usage_sampler"

    def __init__(self, deps: WatcherDeps) -> None:
        super().__init__(deps.loops)
        self.interval = deps.settings.inspect_interval
        self.liveness_interval = max(self.interval, LIVENESS_FLOOR_SECONDS)
        self._deps = deps
        self._per_game = bool(deps.settings.engine_usage_per_game_label)
        self._concurrency = deps.settings.engine_usage_concurrency
        #: The last reading per container id, for the next pass's CPU rate.
        self._readings: dict[str, UsageReading] = {}

    async def run(self, stop: asyncio.Event) -> None:
        self._readings = {}
        try:
            await super().run(stop)
        finally:
            self._deps.metrics.engine_cpu_percent.clear()
            self._deps.metrics.engine_memory_bytes.clear()

    async def run_once(self) -> None:
        records = await running_records(self._deps.records)
        bound = asyncio.Semaphore(self._concurrency)

        async def read(record: RuntimeRecord) -> UsageReading | None:
            assert record.current_container_id is not None
            previous = self._readings.get(record.current_container_id)
            async with bound:
                return await self._deps.engine.usage(
                    record.current_container_id, instant=previous is not None
                )

        results = await asyncio.gather(*(read(r) for r in records), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if records and len(failures) == len(records):
            raise failures[0]
        now = utcnow()
        readings: dict[str, UsageReading] = {}
        samples: list[EngineUsage] = []
        for record, result in zip(records, results, strict=True):
            container_id = record.current_container_id or ""
            if isinstance(result, BaseException):
                self._log_failure(record, result)
                continue
            if result is None:
                continue
            readings[container_id] = result
            previous = self._readings.get(container_id)
            got = sample(record.game_id, container_id, result, previous, now)
            if got is not None:
                samples.append(got)
        self._readings = readings
        await self._deps.usages.save_usages(samples, keep=[r.game_id for r in records])
        self._export(samples)

    def _export(self, samples: Sequence[EngineUsage]) -> None:
        metrics = self._deps.metrics
        if self._per_game:
            metrics.engine_cpu_percent.replace(
                (s.cpu_percent, {"game_id": s.game_id}) for s in samples
            )
            metrics.engine_memory_bytes.replace(
                (float(s.memory_bytes), {"game_id": s.game_id}) for s in samples
            )
            return
        metrics.engine_cpu_percent.replace([(sum(s.cpu_percent for s in samples), {})])
        metrics.engine_memory_bytes.replace([(float(sum(s.memory_bytes for s in samples)), {})])

    @staticmethod
    def _log_failure(record: RuntimeRecord, error: BaseException) -> None:
        extra = {"game_id": record.game_id, "worker": UsageSampler.name}
        if isinstance(error, DockerUnavailable):
            log.warning("engine usage not read", extra={**extra, "error": error.message})
        else:
            log.error("engine usage not read", extra=extra, exc_info=error)
