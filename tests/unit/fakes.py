"""In-memory fakes of rtm_core's ports, owned by the unit tier.

Fakes of *ports* (`rtm_core.ports`), not mocks of aiodocker, redis or
asyncpg: each keeps the state its adapter keeps (containers, rows, leases,
stream entries) and honours the same contract (a taken name is
`ContainerNameInUse`, a held lease is `OperationInProgress`, a record is a
copy, a commit is all or nothing). Failures are scripted per call
(`engine.fail("start", ContainerStartFailed(...))`) or per dependency
(`engine.down = True`).

`make_lifecycle` wires the real `rtm_core.lifecycle.Lifecycle` over them.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from rtm_core import ports
from rtm_core.domain.crashloop import CrashHistory, lifted
from rtm_core.domain.engine import ContainerInfo, ContainerNameInUse, EngineEvent, EngineSpec
from rtm_core.domain.errors import (
    ContainerStartFailed,
    DockerUnavailable,
    FencedOut,
    ImagePullFailed,
    LogsNotReadable,
    OperationInProgress,
)
from rtm_core.domain.ordering import GameFence, order_id_at
from rtm_core.domain.records import (
    HealthSnapshot,
    OperationLogEntry,
    PatchProgress,
    RecordKey,
    RuntimeRecord,
)
from rtm_core.domain.usage import CpuTimes, EngineUsage, UsageReading
from rtm_core.domain.vocabulary import (
    LABEL_GAME_ID,
    LABEL_IMAGE_REF,
    LABEL_OWNER,
    LABEL_STACK,
    OWNER,
    RuntimeStatus,
    container_name,
)
from rtm_core.domain.wire import HealthEvent, NotificationIntent
from rtm_core.lifecycle import Lifecycle, LifecycleDeps
from rtm_core.lifecycle.health import HealthReporter
from rtm_core.observability import Metrics
from rtm_core.settings import PullPolicy, Settings, load_settings

#: Where every fake clock starts: a fixed instant, so records compare exactly.
EPOCH = datetime(2030, 1, 1, tzinfo=UTC)

Journal = list[str]


def docker_time(at: datetime) -> str:
    """`at` as the engine backend writes times (RFC 3339, nanoseconds, `Z`)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


class FakeClock:
    """A `ports.Clock` that moves only when told to."""

    def __init__(self, start: datetime = EPOCH) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class FakeEngineRuntime:
    """Containers and images in dicts; sees only its own owner and stack.

    Names are unique across every container (as on one Docker daemon),
    whoever owns them. Each call is journalled (`"stop <id>"`) so a test can
    check the order of effects across fakes.
    """

    def __init__(self, *, stack: str, clock: ports.Clock, journal: Journal | None = None) -> None:
        self.stack = stack
        self.clock = clock
        self.journal: Journal = journal if journal is not None else []
        self.containers: dict[str, ContainerInfo] = {}
        #: The spec each container RTM created was made from.
        self.specs: dict[str, EngineSpec] = {}
        #: Images present locally (ref → labels), and those a pull can fetch.
        self.images: dict[str, dict[str, str]] = {}
        self.registry: dict[str, dict[str, str]] = {}
        self.pulls: list[str] = []
        self.stop_timeouts: list[int] = []
        #: Every call raises DockerUnavailable while the daemon is down.
        self.down = False
        self._failures: dict[str, list[BaseException]] = {}
        self._hooks: dict[str, list[Callable[[], object]]] = {}
        self._ids = itertools.count(1)
        self._events: asyncio.Queue[EngineEvent | None] = asyncio.Queue()
        #: What each container printed (`say`), and those whose log driver is `none`.
        self.output: dict[str, list[str]] = {}
        self.unreadable_logs: set[str] = set()
        self._said = asyncio.Condition()
        #: What each running container uses: CPU nanoseconds so far, memory bytes.
        self.cpu_ns: dict[str, int] = {}
        self.memory: dict[str, int] = {}
        #: The host's CPU clock (nanoseconds), moved by `burn`.
        self.system_ns = 1_000_000_000_000
        self.online_cpus = 2
        #: `usage` calls, as (ref, instant).
        self.usage_reads: list[tuple[str, bool]] = []

    # scripting -------------------------------------------------------------

    def fail(self, op: str, error: BaseException, times: int = 1) -> None:
        """Make the next `times` calls of `op` raise `error`.

        Ops: ping, network, inspect (also the image lookup), pull, create,
        start, stop, remove, list, events, stats.
        """
        self._failures.setdefault(op, []).extend([error] * times)

    def before(self, op: str, action: Callable[[], object]) -> None:
        """Run `action` once, just before the next call of `op` (a race, staged)."""
        self._hooks.setdefault(op, []).append(action)

    def add_image(self, image_ref: str, labels: dict[str, str] | None = None) -> None:
        self.images[image_ref] = dict(labels or {})

    def add_container(
        self,
        game_id: str,
        image_ref: str,
        *,
        state: str = "running",
        stack: str | None = None,
        name: str | None = None,
        labels: dict[str, str] | None = None,
        exit_code: int | None = None,
    ) -> ContainerInfo:
        """A container RTM did not create in this test: a leftover, a foreign one."""
        now = docker_time(self.clock())
        info = ContainerInfo(
            id=self._new_id(),
            name=name or container_name(game_id),
            labels=labels
            if labels is not None
            else {
                LABEL_OWNER: OWNER,
                LABEL_GAME_ID: game_id,
                LABEL_STACK: stack or self.stack,
                LABEL_IMAGE_REF: image_ref,
            },
            state=state,
            exit_code=exit_code,
            started_at=now,
            finished_at=None if state == "running" else now,
        )
        self.containers[info.id] = info
        return info

    def exit(self, container_id: str, exit_code: int = 1, *, oom: bool = False) -> ContainerInfo:
        """The engine process ends on its own (crash, OOM kill)."""
        info = replace(
            self.containers[container_id],
            state="exited",
            exit_code=exit_code,
            oom_killed=oom,
            finished_at=docker_time(self.clock()),
        )
        self.containers[container_id] = info
        return info

    async def say(self, container_id: str, line: str) -> None:
        """The engine prints a line (followers see it)."""
        async with self._said:
            self.output.setdefault(container_id, []).append(line + "\n")
            self._said.notify_all()

    async def halt(self, container_id: str, exit_code: int = 0) -> None:
        """`exit`, and wake the followers, whose reads end."""
        async with self._said:
            self.exit(container_id, exit_code)
            self._said.notify_all()

    def vanish(self, container_id: str) -> None:
        """Someone removed the container behind RTM's back."""
        del self.containers[container_id]

    def burn(self, container_id: str, cpu_ns: int, *, host_ns: int, memory: int) -> None:
        """The engine uses `cpu_ns` of CPU while the host's clock moves `host_ns`
        (summed over its CPUs), and now holds `memory` bytes."""
        self.cpu_ns[container_id] = self.cpu_ns.get(container_id, 0) + cpu_ns
        self.system_ns += host_ns
        self.memory[container_id] = memory

    def emit(self, event: EngineEvent) -> None:
        self._events.put_nowait(event)

    def close_events(self) -> None:
        """The daemon ends the event stream (a restart)."""
        self._events.put_nowait(None)

    def owned(self, game_id: str | None = None) -> list[ContainerInfo]:
        return [
            c
            for c in self.containers.values()
            if c.labels.get(LABEL_OWNER) == OWNER
            and c.labels.get(LABEL_STACK) == self.stack
            and (game_id is None or c.game_id == game_id)
        ]

    # the port --------------------------------------------------------------

    async def ping(self) -> None:
        self._check("ping")

    async def network_exists(self, name: str | None = None) -> bool:
        self._check("network")
        return True

    async def ensure_image(self, image_ref: str, policy: PullPolicy) -> dict[str, str]:
        labels = None if policy is PullPolicy.ALWAYS else self._local_image(image_ref)
        if labels is not None:
            return labels
        if policy is PullPolicy.NEVER:
            raise ImagePullFailed(f"image {image_ref} is not present and pull policy is never")
        self.journal.append(f"pull {image_ref}")
        self.pulls.append(image_ref)
        try:
            self._check("pull")
        except DockerUnavailable as exc:
            raise ImagePullFailed(f"pull failed: {exc.message}") from exc
        if image_ref not in self.registry:
            raise ImagePullFailed(f"pull failed: pull access denied for {image_ref}")
        self.images[image_ref] = dict(self.registry[image_ref])
        return dict(self.images[image_ref])

    def _local_image(self, image_ref: str) -> dict[str, str] | None:
        self._check("inspect")
        labels = self.images.get(image_ref)
        return None if labels is None else dict(labels)

    async def create_and_start(self, spec: EngineSpec) -> ContainerInfo:
        self.journal.append(f"create {spec.name}")
        self._check("create")
        if any(c.name == spec.name for c in self.containers.values()):
            raise ContainerNameInUse(
                f'create failed: Conflict. The container name "/{spec.name}" is already in use'
            )
        if spec.image_ref not in self.images:
            raise ContainerStartFailed(f"create failed: No such image: {spec.image_ref}")
        container_id = self._new_id()
        self.journal.append(f"start {container_id}")
        # A container that never ran is removed at once, as the adapter does.
        self._check("start")
        info = ContainerInfo(
            id=container_id,
            name=spec.name,
            labels=spec.labels(),
            state="running",
            started_at=docker_time(self.clock()),
        )
        self.containers[container_id] = info
        self.specs[container_id] = spec
        return ContainerInfo(id=info.id, name=info.name, labels=info.labels, state="running")

    async def inspect(self, ref: str) -> ContainerInfo | None:
        self._check("inspect")
        return self._find(ref)

    async def stop(self, ref: str, timeout: int) -> None:
        self.journal.append(f"stop {ref}")
        self._check("stop")
        self.stop_timeouts.append(timeout)
        info = self._find(ref)
        if info is not None and info.running:
            self.containers[info.id] = replace(
                info, state="exited", exit_code=0, finished_at=docker_time(self.clock())
            )

    async def remove(self, ref: str) -> None:
        self.journal.append(f"remove {ref}")
        self._check("remove")
        info = self._find(ref)
        if info is not None:
            del self.containers[info.id]

    async def list_owned(self, game_id: str | None = None) -> list[ContainerInfo]:
        self._check("list")
        return self.owned(game_id)

    async def events(self, since: float | None = None) -> AsyncIterator[EngineEvent]:
        self._check("events")
        while True:
            event = await self._events.get()
            if event is None:
                raise DockerUnavailable("docker events stream closed by the daemon")
            yield event

    async def open_logs(
        self,
        ref: str,
        *,
        tail: int | None = None,
        since: datetime | None = None,
        follow: bool = False,
    ) -> FakeEngineLogs | None:
        self._check("logs")
        info = self._find(ref)
        if info is None:
            return None
        if info.id in self.unreadable_logs:
            raise LogsNotReadable(f"the log driver of container {ref} cannot be read back")
        return FakeEngineLogs(self, info.id, tail, follow)

    async def usage(self, ref: str, *, instant: bool = True) -> UsageReading | None:
        """The engine's counters now; a slow read (`instant=False`) also gives an
        earlier sample, at zero: its CPU rate is then its whole life's."""
        self.usage_reads.append((ref, instant))
        self._check("stats")
        info = self._find(ref)
        if info is None or info.state != "running":
            return None
        cpu = CpuTimes(self.cpu_ns.get(info.id, 0), self.system_ns, self.online_cpus)
        return UsageReading(
            cpu=cpu,
            memory_bytes=self.memory.get(info.id, 0),
            memory_limit_bytes=(s.memory if (s := self.specs.get(info.id)) else 0),
            restart_count=info.restart_count,
            pre_cpu=None if instant else CpuTimes(0, 0, self.online_cpus),
        )

    # internals -------------------------------------------------------------

    def _check(self, op: str) -> None:
        hooks = self._hooks.pop(op, [])
        for action in hooks:
            action()
        if self.down:
            raise DockerUnavailable(f"docker {op}: Cannot connect to the Docker daemon")
        pending = self._failures.get(op)
        if pending:
            raise pending.pop(0)

    def _find(self, ref: str) -> ContainerInfo | None:
        if ref in self.containers:
            return self.containers[ref]
        return next((c for c in self.containers.values() if c.name == ref), None)

    def _new_id(self) -> str:
        return f"{next(self._ids):064x}"


class FakeEngineLogs:
    """A read of `FakeEngineRuntime.output`; a follow waits for more until the
    container no longer runs, as the daemon's does."""

    def __init__(
        self, engine: FakeEngineRuntime, container_id: str, tail: int | None, follow: bool
    ) -> None:
        self.engine, self.container_id, self.follow = engine, container_id, follow
        lines = engine.output.get(container_id, [])
        self._at = 0 if tail is None else max(0, len(lines) - tail)
        self.closed = False

    async def chunks(self) -> AsyncIterator[str]:
        said = self.engine._said
        while not self.closed:
            async with said:
                lines = self.engine.output.get(self.container_id, [])
                fresh, self._at = lines[self._at :], len(lines)
                info = self.engine.containers.get(self.container_id)
                done = not self.follow or info is None or not info.running
                if not fresh and not done:
                    await said.wait()
                    continue
            for line in fresh:
                yield line
            if done:
                return

    async def aclose(self) -> None:
        self.closed = True


class FakeRepositories:
    """The three tables as dicts and a list.

    Reads return copies and writes store copies, so a lifecycle that edits a
    record it read changes nothing until it commits; `commit_operation`
    writes the row and the record together or (when scripted to fail) not
    at all.
    """

    def __init__(self, clock: ports.Clock) -> None:
        self.clock = clock
        self.records: dict[str, RuntimeRecord] = {}
        self.op_log: list[OperationLogEntry] = []
        self.snapshots: dict[str, HealthSnapshot] = {}
        self.fences: dict[str, GameFence] = {}
        self.crash: dict[str, CrashHistory] = {}
        self.patches: dict[str, PatchProgress] = {}
        self.usage: dict[str, EngineUsage] = {}
        #: Raised, one per call, by the next commits (the database went away).
        self.commit_failures: list[BaseException] = []
        self._ids = itertools.count(1)

    def rows(self, game_id: str) -> list[OperationLogEntry]:
        """The game's operation-log rows, oldest first."""
        return [copy.deepcopy(e) for e in self.op_log if e.game_id == game_id]

    # runtime_records -------------------------------------------------------

    def _read(self, record: RuntimeRecord) -> RuntimeRecord:
        return copy.deepcopy(record)

    async def get_record(self, game_id: str) -> RuntimeRecord | None:
        record = self.records.get(game_id)
        return None if record is None else self._read(record)

    async def list_records(
        self, status: str | None = None, *, quarantined: bool | None = None
    ) -> list[RuntimeRecord]:
        found = [
            self._read(r)
            for _, r in sorted(self.records.items())
            if status is None or r.status == status
        ]
        return [r for r in found if quarantined is None or r.quarantined is quarantined]

    async def page_records(
        self,
        status: str | None = None,
        *,
        quarantined: bool | None = None,
        after: RecordKey | None = None,
        limit: int = 100,
    ) -> list[RuntimeRecord]:
        def key(r: RuntimeRecord) -> tuple[datetime, str]:
            assert r.created_at is not None
            return (r.created_at, r.game_id)

        found = sorted(await self.list_records(status, quarantined=quarantined), key=key)
        if after is not None:
            found = [r for r in found if key(r) > (after.created_at, after.game_id)]
        return found[:limit]

    async def live_records(self) -> list[RuntimeRecord]:
        return [
            self._read(r)
            for _, r in sorted(self.records.items())
            if r.status != RuntimeStatus.REMOVED
        ]

    async def stopped_before(self, cutoff: datetime) -> list[RuntimeRecord]:
        stopped = [
            r
            for r in self.records.values()
            if r.status == RuntimeStatus.STOPPED and r.stopped_at is not None
            if r.stopped_at < cutoff
        ]
        return [self._read(r) for r in sorted(stopped, key=lambda r: r.stopped_at or cutoff)]

    async def count_by_status(self) -> dict[str, int]:
        return dict(Counter(r.status for r in self.records.values()))

    async def save_record(self, record: RuntimeRecord) -> None:
        self._upsert(record)

    def _upsert(self, record: RuntimeRecord) -> None:
        previous = self.records.get(record.game_id)
        record.created_at = previous.created_at if previous else self.clock()
        self.records[record.game_id] = copy.deepcopy(record)

    # operation_log ---------------------------------------------------------

    async def get_fence(self, game_id: str) -> GameFence | None:
        return self.fences.get(game_id)

    async def get_records(self, game_ids: Sequence[str]) -> dict[str, RuntimeRecord]:
        return {g: self._read(self.records[g]) for g in game_ids if g in self.records}

    async def get_fences(self, game_ids: Sequence[str]) -> dict[str, GameFence]:
        return {g: self.fences[g] for g in game_ids if g in self.fences}

    async def commit_operations(self, commits: Sequence[ports.FencedCommit]) -> set[str]:
        """All or nothing like the transaction: a scripted failure writes nothing."""
        if self.commit_failures:
            raise self.commit_failures.pop(0)
        refused = set()
        for c in commits:
            stored = self.fences.get(c.entry.game_id)
            if c.fence is not None and stored is not None and stored.fence > c.fence:
                refused.add(c.entry.game_id)
                continue
            if c.fence is not None:
                last_job_id = stored.last_job_id if stored else None
                self.fences[c.entry.game_id] = GameFence(c.fence, last_job_id)
            if c.record is not None:
                self._upsert(c.record)
            c.entry.id = next(self._ids)
            self.op_log.append(copy.deepcopy(c.entry))
        return refused

    async def commit_operation(
        self,
        entry: OperationLogEntry,
        record: RuntimeRecord | None = None,
        *,
        fence: int | None = None,
        job_id: str | None = None,
        finish_patch: bool = False,
        reset_crash_history: bool = False,
    ) -> None:
        if self.commit_failures:
            raise self.commit_failures.pop(0)
        if fence is not None:
            stored = self.fences.get(entry.game_id)
            if stored is not None and stored.fence > fence:
                raise FencedOut(
                    f"game {entry.game_id} was written under a newer lease than fence {fence}"
                )
            last_job_id = job_id if job_id is not None else stored.last_job_id if stored else None
            self.fences[entry.game_id] = GameFence(fence, last_job_id)
        if record is not None:
            self._upsert(record)
        if finish_patch:
            self.patches.pop(entry.game_id, None)
        if reset_crash_history and entry.game_id in self.crash:
            self.crash[entry.game_id] = lifted(self.crash[entry.game_id])
            self._mark_quarantine(entry.game_id, False)
        entry.id = next(self._ids)
        self.op_log.append(copy.deepcopy(entry))

    async def append_operation(self, entry: OperationLogEntry) -> None:
        await self.commit_operation(entry)

    async def operations(self, game_id: str, limit: int = 50) -> list[OperationLogEntry]:
        newest_first = sorted(
            (e for e in self.op_log if e.game_id == game_id),
            key=lambda e: (e.started_at, e.id or 0),
            reverse=True,
        )
        return [copy.deepcopy(e) for e in newest_first[:limit]]

    # health_snapshots ------------------------------------------------------

    async def upsert_snapshots(self, snapshots: Sequence[HealthSnapshot]) -> None:
        for snapshot in snapshots:
            self.snapshots[snapshot.game_id] = copy.deepcopy(snapshot)

    async def get_snapshot(self, game_id: str) -> HealthSnapshot | None:
        return copy.deepcopy(self.snapshots.get(game_id))

    # crash_history ---------------------------------------------------------

    async def get_crash_history(self, game_id: str) -> CrashHistory | None:
        return copy.deepcopy(self.crash.get(game_id))

    async def save_crash_history(self, history: CrashHistory) -> None:
        """The history, and its quarantine on the game's record, together."""
        self.crash[history.game_id] = copy.deepcopy(history)
        self._mark_quarantine(history.game_id, history.quarantined)

    def _mark_quarantine(self, game_id: str, quarantined: bool) -> None:
        if game_id in self.records:
            self.records[game_id].quarantined = quarantined

    async def crash_histories(self) -> list[CrashHistory]:
        return [
            copy.deepcopy(h)
            for _, h in sorted(self.crash.items())
            if h.pending_container_id is not None or h.quarantined
        ]

    # patch_progress --------------------------------------------------------

    async def get_patch_progress(self, game_id: str) -> PatchProgress | None:
        return copy.deepcopy(self.patches.get(game_id))

    async def save_patch_progress(self, progress: PatchProgress) -> None:
        stored = copy.deepcopy(progress)
        stored.updated_at = self.clock()
        self.patches[progress.game_id] = stored

    async def patches_in_progress(self) -> list[PatchProgress]:
        return [copy.deepcopy(p) for _, p in sorted(self.patches.items())]

    async def delete_patch_progress(self, game_id: str) -> None:
        self.patches.pop(game_id, None)

    # engine_usage (issue 13) -------------------------------------------------

    async def save_usages(self, usages: Sequence[EngineUsage], *, keep: Sequence[str]) -> None:
        self.usage = {g: u for g, u in self.usage.items() if g in set(keep)}
        self.usage.update({u.game_id: u for u in usages})

    async def usages(self, game_ids: Sequence[str]) -> dict[str, EngineUsage]:
        return {g: self.usage[g] for g in game_ids if g in self.usage}


class FakeLeaseGrant:
    """One holding of a game's lease: its fence, its order id, and whether it still holds."""

    def __init__(self, leases: FakeGameLeases, game_id: str, fence: int, order_id: str) -> None:
        self._leases = leases
        self.game_id = game_id
        self.fence = fence
        self.order_id = order_id

    async def ensure_held(self) -> None:
        if self._leases.holders.get(self.game_id) is not self:
            raise FencedOut(
                f"lease rtmanager:game_lease:{self.game_id} was lost; "
                "a newer operation may hold the game"
            )

    async def advance_past(self, fence: int) -> None:
        if self.fence <= fence:
            self.fence = self._leases.advance_counter(self.game_id, fence)


class FakeGameLeases:
    """Per-game leases and fence counters in dicts.

    `occupy` plays another holder; `steal` plays a newer holder taking the
    game from one whose lease expired. Order ids come from `now_ms` (Redis
    time in the adapter).
    """

    def __init__(
        self,
        on_conflict: Callable[[], None] | None = None,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        self.holders: dict[str, object] = {}
        self.fence_counters: dict[str, int] = {}
        #: Every grant made, in order.
        self.grants: list[FakeLeaseGrant] = []
        self.conflicts = 0
        self._on_conflict = on_conflict
        self._now_ms = now_ms or (lambda: 0)

    @property
    def granted(self) -> list[str]:
        """Every game a hold was granted for, in order."""
        return [g.game_id for g in self.grants]

    def occupy(self, game_id: str, holder: object = "someone-else") -> None:
        self.holders[game_id] = holder

    def release(self, game_id: str) -> None:
        self.holders.pop(game_id, None)

    def steal(self, game_id: str) -> int:
        """The lease expired and a newer holder took the game: its fence is returned."""
        self.holders[game_id] = "newer-holder"
        return self.advance_counter(game_id, self.fence_counters.get(game_id, 0))

    def advance_counter(self, game_id: str, past: int) -> int:
        current = max(self.fence_counters.get(game_id, 0), past + 1)
        self.fence_counters[game_id] = current
        return current

    @asynccontextmanager
    async def hold(self, game_id: str, *, wait: float = 0.0) -> AsyncIterator[FakeLeaseGrant]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        delay = 0.01
        while game_id in self.holders:
            if loop.time() + delay > deadline:
                self.conflicts += 1
                if self._on_conflict is not None:
                    self._on_conflict()
                raise OperationInProgress(
                    f"another operation holds rtmanager:game_lease:{game_id}; try again later"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        fence = self.fence_counters.get(game_id, 0) + 1
        self.fence_counters[game_id] = fence
        grant = FakeLeaseGrant(self, game_id, fence, order_id_at(self._now_ms()))
        self.holders[game_id] = grant
        self.grants.append(grant)
        try:
            yield grant
        finally:
            if self.holders.get(game_id) is grant:
                del self.holders[game_id]

    @asynccontextmanager
    async def hold_many(self, game_ids: Sequence[str]) -> AsyncIterator[dict[str, FakeLeaseGrant]]:
        """Each game tried once, no wait: those another holder has are left out."""
        grants: dict[str, FakeLeaseGrant] = {}
        for game_id in dict.fromkeys(game_ids):
            if game_id in self.holders:
                self.conflicts += 1
                if self._on_conflict is not None:
                    self._on_conflict()
                continue
            fence = self.fence_counters.get(game_id, 0) + 1
            self.fence_counters[game_id] = fence
            grant = FakeLeaseGrant(self, game_id, fence, order_id_at(self._now_ms()))
            self.holders[game_id] = grant
            self.grants.append(grant)
            grants[game_id] = grant
        try:
            yield grants
        finally:
            for game_id, grant in grants.items():
                if self.holders.get(game_id) is grant:
                    del self.holders[game_id]

    async def is_held(self, game_id: str) -> bool:
        return game_id in self.holders


class FakeExpectedExits:
    def __init__(self, journal: Journal | None = None) -> None:
        self.marked: set[str] = set()
        self.journal: Journal = journal if journal is not None else []

    async def mark(self, container_id: str) -> None:
        self.journal.append(f"mark {container_id}")
        self.marked.add(container_id)

    async def is_expected(self, container_id: str) -> bool:
        return container_id in self.marked


class FakeEventPublisher:
    """The health-event and notification-intent streams as lists, in publication order."""

    def __init__(self) -> None:
        self.health_events: list[HealthEvent] = []
        self.notification_intents: list[NotificationIntent] = []
        #: Raised by every publish of that kind while set (Redis went away).
        self.health_failure: BaseException | None = None
        self.notification_failure: BaseException | None = None
        self._ids = itertools.count(1)

    async def health_event(self, event: HealthEvent) -> str:
        if self.health_failure is not None:
            raise self.health_failure
        self.health_events.append(event)
        return self._entry_id()

    async def health_event_batch(self, events: Sequence[HealthEvent]) -> list[str]:
        return [await self.health_event(e) for e in events]

    async def notification_intent(self, intent: NotificationIntent) -> str:
        if self.notification_failure is not None:
            raise self.notification_failure
        self.notification_intents.append(intent)
        return self._entry_id()

    def _entry_id(self) -> str:
        return f"{next(self._ids)}-0"


class FakeEngineProbe:
    """Scripted `/healthz` answers per container (`answers[container_id]`, one per
    probe, the last repeated), or `default` for a container with none."""

    def __init__(self) -> None:
        self.answers: dict[str, list[ports.ProbeOutcome]] = {}
        self.default = ports.ProbeOutcome(ok=True, status=200)
        self.probed: list[tuple[str, str]] = []

    def script(self, container_id: str, *answers: ports.ProbeOutcome) -> None:
        self.answers[container_id] = list(answers)

    async def healthz(self, endpoint: str, container_id: str) -> ports.ProbeOutcome:
        self.probed.append((endpoint, container_id))
        queue = self.answers.get(container_id)
        if not queue:
            return self.default
        return queue.pop(0) if len(queue) > 1 else queue[0]


class FakeHealthEventFeed:
    """The health events stream through a consumer group, in memory: `publish`
    adds an entry, `read` delivers the unacknowledged ones first (as a new
    leader would be given them), then new ones."""

    def __init__(self) -> None:
        self.entries: list[ports.FeedEntry] = []
        self.delivered: set[str] = set()
        self.acked: set[str] = set()
        self._ids = itertools.count(1)

    def publish(self, event: HealthEvent | None, problem: str = "") -> str:
        entry_id = f"{next(self._ids)}-0"
        self.entries.append(ports.FeedEntry(entry_id, event, problem))
        return entry_id

    def reconnect(self) -> None:
        """A new reader (a new leader): what was delivered and never acked comes again."""
        self.delivered &= self.acked

    async def read(self, count: int, block_ms: int = 0) -> list[ports.FeedEntry]:
        fresh = [e for e in self.entries if e.entry_id not in self.delivered][:count]
        self.delivered |= {e.entry_id for e in fresh}
        return fresh

    async def ack(self, entry_ids: Sequence[str]) -> None:
        self.acked |= set(entry_ids)

    @property
    def pending(self) -> list[str]:
        return [e.entry_id for e in self.entries if e.entry_id not in self.acked]


class FakeHealthEventLog:
    """`runtime:health_events` read back without a group, in memory."""

    def __init__(self) -> None:
        self.entries: list[ports.FeedEntry] = []
        self._ids = itertools.count(1)

    def publish(self, event: HealthEvent) -> str:
        entry_id = f"{next(self._ids)}-0"
        self.entries.append(ports.FeedEntry(entry_id, event))
        return entry_id

    async def recent(self, game_id: str | None, limit: int) -> tuple[list[ports.FeedEntry], str]:
        mine = [e for e in self.entries if _of_game(e, game_id)]
        newest = self.entries[-1].entry_id if self.entries else "0-0"
        return mine[-limit:], newest

    async def after(
        self, entry_id: str, game_id: str | None, *, count: int, block_ms: int
    ) -> tuple[list[ports.FeedEntry], str]:
        at = int(entry_id.split("-")[0])
        later = [e for e in self.entries if int(e.entry_id.split("-")[0]) > at][:count]
        if not later:
            await asyncio.sleep(min(block_ms, 50) / 1000)
            return [], entry_id
        return [e for e in later if _of_game(e, game_id)], later[-1].entry_id


def _of_game(entry: ports.FeedEntry, game_id: str | None) -> bool:
    return game_id is None or (entry.event is not None and entry.event.game_id == game_id)


class FakeLobby:
    def __init__(self) -> None:
        self.looked_up: list[str] = []
        self.closed = False

    def look_up(self, game_id: str) -> None:
        self.looked_up.append(game_id)

    async def aclose(self) -> None:
        self.closed = True


if TYPE_CHECKING:  # mypy --strict checks that every fake satisfies its port.
    _engine: ports.EngineRuntime = FakeEngineRuntime(stack="s", clock=FakeClock())
    _repos: ports.Repositories = FakeRepositories(FakeClock())
    _leases: ports.GameLeases = FakeGameLeases()
    _grant: ports.LeaseGrant = FakeLeaseGrant(FakeGameLeases(), "g", 1, "1-0")
    _exits: ports.ExpectedExits = FakeExpectedExits()
    _publisher: ports.EventPublisher = FakeEventPublisher()
    _lobby: ports.LobbyDiagnostics = FakeLobby()
    _probe: ports.EngineProbe = FakeEngineProbe()
    _feed: ports.HealthEventFeed = FakeHealthEventFeed()
    _event_log: ports.HealthEventLog = FakeHealthEventLog()
    _logs: ports.EngineLogs = FakeEngineLogs(
        FakeEngineRuntime(stack="s", clock=FakeClock()), "c", None, False
    )
    _clock: ports.Clock = FakeClock()

#: Images every unit rig has locally, as `galaxy/test-engine` tags.
IMAGES = ("1.0.0", "1.0.1", "1.1.0", "2.0.0", "latest")
ENGINE_IMAGE = "galaxy/test-engine"


def unit_settings(state_root: Path, **overrides: Any) -> Settings:
    """Settings that name no reachable store; everything the lifecycle reads is
    spelled out, so an `RTMANAGER_*` variable in the environment changes nothing."""
    values: dict[str, Any] = {
        "postgres_primary_dsn": "postgresql://unused/x",
        "redis_master_addr": "127.0.0.1:1",
        "redis_url": None,
        "docker_host": "unix:///nonexistent/docker.sock",
        "docker_network": "unit-net",
        "docker_log_driver": None,
        "docker_log_opts": (),
        "stack": "unit",
        "image_pull_policy": "if_not_present",
        "image_allowed_prefixes": (),
        "game_state_root": state_root,
        "game_state_dir_mode": 0o750,
        "game_state_owner_uid": os.getuid(),
        "game_state_owner_gid": os.getgid(),
        "engine_state_mount_path": "/var/lib/galaxy-game",
        "engine_state_env_name": "GAME_STATE_PATH",
        "default_cpu_quota": 1.0,
        "default_memory": "512m",
        "default_pids_limit": 512,
        "container_stop_timeout_seconds": 7,
        "container_retention_days": 30,
        "game_lease_ttl_seconds": 60,
        # Issue 12: every self-healing feature off unless a test turns it on.
        "auto_restart": "off",
        "patch_health_gate": "off",
        "start_wait_ready": "off",
    }
    values.update(overrides)
    return load_settings(**values)


@dataclass
class Fakes:
    """Everything a unit test arranges and asserts on."""

    settings: Settings
    clock: FakeClock
    engine: FakeEngineRuntime
    repos: FakeRepositories
    leases: FakeGameLeases
    exits: FakeExpectedExits
    publisher: FakeEventPublisher
    lobby: FakeLobby
    metrics: Metrics
    metric_reader: InMemoryMetricReader
    #: The lifecycle's own reporter, for what the watcher reports through it.
    health: HealthReporter
    probe: FakeEngineProbe
    #: Engine calls and expected-exit marks, in the order they happened.
    journal: Journal

    def rows(self, game_id: str) -> list[OperationLogEntry]:
        return self.repos.rows(game_id)

    def record(self, game_id: str) -> RuntimeRecord | None:
        return copy.deepcopy(self.repos.records.get(game_id))

    def counter(self, name: str, **attributes: str) -> int:
        """The current value of counter `rtmanager.<name>` for these attributes."""
        total = 0
        data = self.metric_reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != f"rtmanager.{name}":
                        continue
                    for point in metric.data.data_points:
                        if attributes.items() <= dict(point.attributes or {}).items():
                            total += int(getattr(point, "value", 0))
        return total


#: What the `make_unit` fixture returns: `make_unit(**settings_overrides)`.
MakeUnit = Callable[..., tuple[Lifecycle, Fakes]]


def make_lifecycle(state_root: Path, **settings_overrides: Any) -> tuple[Lifecycle, Fakes]:
    """The real `Lifecycle` over fresh fakes; `state_root` is a writable tmp dir."""
    settings = unit_settings(state_root, **settings_overrides)
    clock = FakeClock()
    journal: Journal = []
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    metrics = Metrics(provider.get_meter("rtmanager"))
    engine = FakeEngineRuntime(stack=settings.stack, clock=clock, journal=journal)
    for tag in IMAGES:
        engine.add_image(f"{ENGINE_IMAGE}:{tag}")
    repos = FakeRepositories(clock)
    leases = FakeGameLeases(
        on_conflict=metrics.count_lease_conflict,
        now_ms=lambda: int(clock().timestamp() * 1000),
    )
    exits = FakeExpectedExits(journal)
    publisher = FakeEventPublisher()
    lobby = FakeLobby()
    health = HealthReporter(publisher, repos, metrics)
    probe = FakeEngineProbe()
    fakes = Fakes(
        settings=settings,
        clock=clock,
        engine=engine,
        repos=repos,
        leases=leases,
        exits=exits,
        publisher=publisher,
        lobby=lobby,
        metrics=metrics,
        metric_reader=reader,
        health=health,
        probe=probe,
        journal=journal,
    )
    deps = LifecycleDeps(
        settings=settings,
        repos=repos,
        docker=engine,
        leases=leases,
        publishers=publisher,
        health=health,
        lobby=lobby,
        exits=exits,
        metrics=metrics,
        probe=probe,
        clock=clock,
        draw=lambda: 0.5,
    )
    return Lifecycle(deps), fakes
