"""The ports: what the lifecycle and the services need from the outside world.

Each is a `typing.Protocol` with a real adapter in `rtm_core.adapters` and an
in-memory fake in `tests/unit/fakes.py`:

    port               adapter                                     talks to
    ----------------   -----------------------------------------   ----------
    EngineRuntime      adapters.docker_engine.DockerEngine         Docker daemon
    Repositories       adapters.postgres.repositories.Repositories PostgreSQL
    GameLeases         adapters.redis.leases.GameLeases            Redis
    ExpectedExits      adapters.redis.exits.ExpectedExits          Redis
    EventPublisher     adapters.redis.publishers.Publishers        Redis streams
    LobbyDiagnostics   adapters.lobby.LobbyDiagnostics             Lobby (HTTP)
    EngineProbe        adapters.engine_probe.EngineProbe           engines' /healthz
    HealthEventFeed    adapters.redis.health_feed.HealthEventFeed  Redis stream (group)
    HealthEventLog     adapters.redis.health_log.HealthEventLog    Redis stream (reads)
    EngineUsages       (part of Repositories)                      PostgreSQL
    Clock              a function returning an aware UTC datetime

Errors cross a port as `rtm_core.domain.errors.RtmError` subclasses only: an
adapter turns its client's exceptions into the SPEC's codes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from rtm_core.domain.crashloop import CrashHistory
from rtm_core.domain.engine import ContainerInfo, EngineEvent, EngineSpec
from rtm_core.domain.ordering import GameFence
from rtm_core.domain.records import (
    HealthSnapshot,
    OperationLogEntry,
    PatchProgress,
    RecordKey,
    RuntimeRecord,
)
from rtm_core.domain.usage import EngineUsage, UsageReading
from rtm_core.domain.wire import HealthEvent, NotificationIntent
from rtm_core.settings import PullPolicy

Clock = Callable[[], datetime]


class EngineRuntime(Protocol):
    """Runs engine containers, and only ever sees those of its own owner and stack."""

    async def ping(self) -> None:
        """Raises DockerUnavailable when the runtime does not answer."""

    async def network_exists(self, name: str | None = None) -> bool: ...

    async def ensure_image(self, image_ref: str, policy: PullPolicy) -> dict[str, str]:
        """Make the image present per policy; returns its labels (ImagePullFailed)."""

    async def create_and_start(self, spec: EngineSpec) -> ContainerInfo:
        """ContainerNameInUse when the name is taken, ContainerStartFailed otherwise."""

    async def inspect(self, ref: str) -> ContainerInfo | None:
        """None when the container does not exist."""

    async def stop(self, ref: str, timeout: int) -> None:
        """Already stopped or gone is not an error."""

    async def remove(self, ref: str) -> None:
        """Already gone is not an error."""

    async def list_owned(self, game_id: str | None = None) -> list[ContainerInfo]: ...

    def events(self, since: float | None = None) -> AsyncIterator[EngineEvent]:
        """Events of this stack's engines until the stream breaks (DockerUnavailable)."""

    async def open_logs(
        self,
        ref: str,
        *,
        tail: int | None = None,
        since: datetime | None = None,
        follow: bool = False,
    ) -> EngineLogs | None:
        """The engine's stdout and stderr, interleaved as written: the last `tail`
        lines (None: all) from `since` on, then, with `follow`, what it prints until
        it stops. None when there is no such engine; LogsNotReadable when its log
        driver keeps nothing to read back. Errors surface here, before any output."""

    async def usage(self, ref: str, *, instant: bool = True) -> UsageReading | None:
        """CPU times, memory and restart count of a running engine (issue 13); None
        when it is gone, not running, or out of this runtime's sight (a Swarm task
        on another node). `instant=False` lets the daemon take its own second CPU
        sample (a second or two), so that one reading already tells CPU."""


class EngineLogs(Protocol):
    """An open read of an engine's output (`EngineRuntime.open_logs`)."""

    def chunks(self) -> AsyncIterator[str]:
        """Text as the engine wrote it (usually whole lines), until the read ends."""

    async def aclose(self) -> None:
        """Release the read; safe to call twice, or without reading."""


class RuntimeRecords(Protocol):
    async def get_record(self, game_id: str) -> RuntimeRecord | None: ...

    async def list_records(
        self, status: str | None = None, *, quarantined: bool | None = None
    ) -> list[RuntimeRecord]: ...

    async def page_records(
        self,
        status: str | None = None,
        *,
        quarantined: bool | None = None,
        after: RecordKey | None = None,
        limit: int = 100,
    ) -> list[RuntimeRecord]:
        """Up to `limit` records in `(created_at, game_id)` order, strictly after
        `after` (issue 13's keyset paging: a record is never seen twice nor skipped
        while others are inserted)."""

    async def live_records(self) -> list[RuntimeRecord]:
        """Every record that still claims a container (`running` or `stopped`)."""

    async def stopped_before(self, cutoff: datetime) -> list[RuntimeRecord]: ...

    async def count_by_status(self) -> dict[str, int]: ...

    async def save_record(self, record: RuntimeRecord) -> None: ...

    async def get_fence(self, game_id: str) -> GameFence | None:
        """The fence and last applied job the record was last written under."""

    async def get_records(self, game_ids: Sequence[str]) -> dict[str, RuntimeRecord]:
        """Many games' records in one read (those that have one)."""

    async def get_fences(self, game_ids: Sequence[str]) -> dict[str, GameFence]:
        """Many games' fences in one read (those that have one)."""


@dataclass
class FencedCommit:
    """One game's share of `OperationLog.commit_operations`: its row, and its
    record written under `fence` (None with `record` None: a failure row alone)."""

    entry: OperationLogEntry
    record: RuntimeRecord | None = None
    fence: int | None = None


class OperationLog(Protocol):
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
        """Append `entry` and upsert `record` in one transaction.

        With `fence`, the write is refused (FencedOut, nothing written) when
        the game's stored fence is newer; otherwise the fence, and `job_id`
        when given, become the game's. `finish_patch` deletes the game's
        `PatchProgress` and `reset_crash_history` starts its crash-loop policy
        over (`crashloop.lifted`), both in the same transaction.
        """

    async def commit_operations(self, commits: Sequence[FencedCommit]) -> set[str]:
        """Many games' `commit_operation` (record + fence + row) in one transaction.

        Each game is fenced on its own: a game whose stored fence is newer
        than its commit's is refused (nothing of it written) and its game_id
        returned; the others are written. Game ids must be distinct.
        """

    async def append_operation(self, entry: OperationLogEntry) -> None: ...

    async def operations(self, game_id: str, limit: int = 50) -> list[OperationLogEntry]:
        """Newest first."""


class HealthSnapshots(Protocol):
    async def upsert_snapshots(self, snapshots: Sequence[HealthSnapshot]) -> None: ...

    async def get_snapshot(self, game_id: str) -> HealthSnapshot | None: ...


class CrashHistories(Protocol):
    """The crash-loop policy's durable state (`crash_history`, issue 12)."""

    async def get_crash_history(self, game_id: str) -> CrashHistory | None: ...

    async def save_crash_history(self, history: CrashHistory) -> None: ...

    async def crash_histories(self) -> list[CrashHistory]:
        """Games with a restart scheduled or a quarantine."""


class PatchProgresses(Protocol):
    """Health-gated patches under way (`patch_progress`, issue 12)."""

    async def get_patch_progress(self, game_id: str) -> PatchProgress | None: ...

    async def save_patch_progress(self, progress: PatchProgress) -> None: ...

    async def patches_in_progress(self) -> list[PatchProgress]: ...

    async def delete_patch_progress(self, game_id: str) -> None: ...


class EngineUsages(Protocol):
    """The latest usage sample per game (`engine_usage`, issue 13)."""

    async def save_usages(self, usages: Sequence[EngineUsage], *, keep: Sequence[str]) -> None:
        """Upsert `usages` and drop the samples of games not in `keep`, in one
        transaction (one watcher pass)."""

    async def usages(self, game_ids: Sequence[str]) -> dict[str, EngineUsage]:
        """The stored samples of these games (absent: never sampled)."""


class Repositories(
    RuntimeRecords,
    OperationLog,
    HealthSnapshots,
    CrashHistories,
    PatchProgresses,
    EngineUsages,
    Protocol,
):
    """The tables behind one transaction boundary."""


class LeaseGrant(Protocol):
    """One holding of a game's lease."""

    #: Monotonic per game across every holder: newer holders have larger fences.
    fence: int
    #: Where this holding stands in the game's job order (`<ms>-0`, Redis time).
    order_id: str

    async def ensure_held(self) -> None:
        """OperationInProgress when the lease was lost: touch nothing more."""

    async def advance_past(self, fence: int) -> None:
        """Make `fence` larger than a stored one (the counter was lost with Redis)."""


class GameLeases(Protocol):
    """The per-game operation lease (`rtmanager:game_lease:<game_id>`)."""

    def hold(self, game_id: str, *, wait: float = 0.0) -> AbstractAsyncContextManager[LeaseGrant]:
        """Hold the game for the body; OperationInProgress when another holder
        keeps it past `wait` seconds."""

    def hold_many(
        self, game_ids: Sequence[str]
    ) -> AbstractAsyncContextManager[Mapping[str, LeaseGrant]]:
        """Try each game's lease once (no wait), together; yield the grants won,
        by game_id. A game left out is held by someone else (a conflict)."""

    async def is_held(self, game_id: str) -> bool:
        """Whether some operation holds the game right now."""


class ExpectedExits(Protocol):
    """Exits RTM causes itself, announced before the fact to the watcher."""

    async def mark(self, container_id: str) -> None: ...

    async def is_expected(self, container_id: str) -> bool: ...


class EventPublisher(Protocol):
    """Health events and notification intents, as `rtm_core.domain.wire` encodes them
    (job results go out with their acknowledgement: `rtm_jobs.offsets`)."""

    async def health_event(self, event: HealthEvent) -> str: ...

    async def health_event_batch(self, events: Sequence[HealthEvent]) -> list[str]:
        """Many events at once, in order (one round trip for a batch)."""

    async def notification_intent(self, intent: NotificationIntent) -> str: ...


class LobbyDiagnostics(Protocol):
    def look_up(self, game_id: str) -> None:
        """Fire-and-forget: never delays the caller."""

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class ProbeOutcome:
    """One `GET /healthz` of an engine: a 2xx is `ok`; otherwise what went wrong."""

    ok: bool
    status: int = 0
    error: str = ""


class EngineProbe(Protocol):
    """Asks one engine whether it is healthy, at the address the probe worker uses
    (`RTMANAGER_PROBE_ADDRESS_MODE`: the record's `engine_endpoint`, or the
    container's IP on the engine network)."""

    async def healthz(self, endpoint: str, container_id: str) -> ProbeOutcome:
        """Never raises for an engine that does not answer: that is `ok=False`."""


@dataclass(frozen=True)
class FeedEntry:
    """A health event read from `runtime:health_events` through a consumer group;
    `event` is None for an entry that is not a health event RTM can read."""

    entry_id: str
    event: HealthEvent | None
    problem: str = ""


class HealthEventLog(Protocol):
    """`runtime:health_events` read without a group, for people (REST, issue 13):
    a game's recent events, and the ones after a given entry id."""

    async def recent(self, game_id: str | None, limit: int) -> tuple[list[FeedEntry], str]:
        """The newest `limit` events (of `game_id`, or of every game), oldest first,
        within a bounded scan of the stream; and the stream's newest entry id then
        (`0-0` when empty), where a follow begins."""

    async def after(
        self, entry_id: str, game_id: str | None, *, count: int, block_ms: int
    ) -> tuple[list[FeedEntry], str]:
        """Events after `entry_id`, waiting up to `block_ms` for one; and the id to
        read on from (past entries of other games too)."""


class HealthEventFeed(Protocol):
    """`runtime:health_events` read through a consumer group of its own, so that an
    entry delivered to a reader that died is delivered again (issue 12)."""

    async def read(self, count: int, block_ms: int = 0) -> list[FeedEntry]:
        """Entries delivered but never acknowledged first, then new ones."""

    async def ack(self, entry_ids: Sequence[str]) -> None: ...
