"""Inspect worker: Docker's own view of every `running` record's container.

Each interval every container is inspected and its snapshot updated (source
`inspect`, status = its health when it has a healthcheck, else its state;
written for the whole cycle in one transaction, events at once).
`inspect_unhealthy` {restart_count, state, health} is published once per
change, not every interval: when the restart count rose since last seen, or
when the container turns unhealthy or not running (or changes from one such
condition to another). The last-seen observation per container is kept in
memory and mirrored to Redis (`ContainerMemory`), so a new leader reports an
already-unhealthy container only if no leader did before it. The event is
published before the memory is saved: a leader killed between the two lets
its successor report the change once more (at least once), where the other
order could lose it. Exits RTM is
causing itself (marked in `ExpectedExits`) are not reported, nor are engines
the Docker daemon stopped (`DaemonWatch`: their death is the events
listener's one report); a death the listener has not classified yet is
looked at again next cycle. While the daemon does not answer, a cycle fails
as a whole and reports nothing.

A record whose container is gone is the reconciler's drift
(`container_disappeared`); here it only updates the snapshot (`missing`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from typing import Any

from rtm_core.domain.engine import ContainerInfo
from rtm_core.domain.records import RuntimeRecord
from rtm_core.domain.vocabulary import HealthEventType, HealthSource
from rtm_core.lifecycle.health import SnapshotUpdate
from rtm_core.runtime.loops import PeriodicLoop
from rtm_watcher.bootstrap import WatcherDeps
from rtm_watcher.cycle import for_each, running_records
from rtm_watcher.daemon import Verdict

log = logging.getLogger(__name__)

#: Inspects in flight at once.
INSPECT_CONCURRENCY = 16
#: Docker's word for a container without a healthcheck.
NO_HEALTHCHECK = "none"


@dataclass(frozen=True)
class Observation:
    restart_count: int
    state: str
    health: str

    @classmethod
    def of(cls, info: ContainerInfo) -> Observation:
        return cls(info.restart_count, info.state, info.health or NO_HEALTHCHECK)

    @classmethod
    def load(cls, raw: dict[str, Any]) -> Observation | None:
        try:
            return cls(int(raw["restart_count"]), str(raw["state"]), str(raw["health"]))
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def unhealthy(self) -> bool:
        return self.health == "unhealthy" or self.state != "running"

    @property
    def status(self) -> str:
        return self.health if self.health != NO_HEALTHCHECK else self.state

    def worth_reporting(self, previous: Observation | None) -> bool:
        if previous is not None and self.restart_count > previous.restart_count:
            return True
        if not self.unhealthy:
            return False
        return previous is None or (previous.state, previous.health) != (self.state, self.health)


class InspectWorker(PeriodicLoop):
    name = "inspect_worker"

    def __init__(self, deps: WatcherDeps) -> None:
        super().__init__(deps.loops)
        self.interval = deps.settings.inspect_interval
        self._deps = deps
        self._memory = deps.memory.inspect
        self._seen: dict[str, Observation] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        self._seen = None  # a new term starts from what the last leader persisted
        await super().run(stop)

    async def run_once(self) -> None:
        if self._seen is None:
            loaded = await self._memory.load()
            self._seen = {cid: o for cid, raw in loaded.items() if (o := Observation.load(raw))}
        records = await running_records(self._deps.records)
        updates: list[SnapshotUpdate] = []
        try:
            await for_each(records, INSPECT_CONCURRENCY, lambda r: self._observe(r, updates))
        finally:
            await self._deps.health.observe_many(updates)
            await self._memory.keep_only(
                self._seen, {r.current_container_id or "" for r in records}
            )

    async def _observe(self, record: RuntimeRecord, updates: list[SnapshotUpdate]) -> None:
        assert self._seen is not None and record.current_container_id is not None
        game_id, container_id = record.game_id, record.current_container_id
        info = await self._deps.engine.inspect(container_id)
        if info is None:
            updates.append(
                SnapshotUpdate(game_id, container_id, HealthSource.INSPECT, "missing", {})
            )
            return
        now = Observation.of(info)
        previous = self._seen.get(container_id)
        details = asdict(now)
        verdict = await self._verdict(container_id, info, now, previous)
        if verdict is Verdict.REPORT:
            await self._deps.health.report(
                game_id=game_id,
                container_id=container_id,
                event_type=HealthEventType.INSPECT_UNHEALTHY,
                source=HealthSource.INSPECT,
                details=details,
            )
        else:
            updates.append(
                SnapshotUpdate(game_id, container_id, HealthSource.INSPECT, now.status, details)
            )
        if verdict is Verdict.WAIT:
            return  # not seen yet: judged again next cycle
        if now != previous:
            self._seen[container_id] = now
            await self._memory.save(container_id, details)

    async def _verdict(
        self,
        container_id: str,
        info: ContainerInfo,
        now: Observation,
        previous: Observation | None,
    ) -> Verdict:
        """Report it, not (QUIET), or not yet (WAIT: a death still being classified)."""
        if not now.worth_reporting(previous):
            return Verdict.QUIET
        if now.state == "running":
            return Verdict.REPORT
        if await self._deps.exits.is_expected(container_id):
            return Verdict.QUIET  # RTM is stopping it
        return await self._deps.daemon.death_verdict(info)
