"""Docker events listener: unexpected engine deaths become health events.

Rules (SPEC §8, runbook "Engine Container Died"):

- `die` with a non-zero exit of the container a `running` record points at
  → `container_exited` {exit_code, oom}, unless RTM caused the exit itself
  (the lifecycle marks a container in `ExpectedExits` before it stops it).
- One OOM kill is ONE event. Docker sends `oom` (container still running)
  and, a few ms later, `die` with exit 137 and `State.OOMKilled`. That death
  is reported as `container_oom` {exit_code} when the `die` arrives, so the
  exit code is the real one, and no `container_exited` follows it. An `oom`
  that does not end the engine (a process inside it was killed) is reported
  as `container_oom` with the exit code inspect shows (0, still running)
  once the container is seen alive `OOM_SETTLE_SECONDS` later.
  `container_exited`'s `oom` is `State.OOMKilled`; it is true only for an
  engine whose earlier, survived OOM was already reported as
  `container_oom`, so no OOM is reported twice.
- A death is reported once per container, whoever sees it first: this
  listener, a replay of the same Docker event, the catch-up pass, or a new
  leader (`Claims`).

Reconnects: a broken stream or a daemon restart raises `DockerUnavailable`;
the listener backs off, pings, runs the catch-up pass (a `running` record
whose container has exited non-zero is reported, as a Docker event would
have been) and subscribes again with `since` = the last handled event, so
the daemon replays what it still buffers. The cursor lives in Redis, so a
new leader resumes where the old one stopped (bounded by
`MAX_REPLAY_SECONDS`) instead of starting at "now" and relying on the
catch-up pass alone. Only handled events move the cursor: an outage leaves
it where it was.

The daemon is not the engine (`rtm_watcher.daemon`): losing the daemon opens
an outage in `DaemonWatch`, `kill` and `die` events are noted there, and
the catch-up pass that ends the outage claims every death since it began as
the daemon's, so the inspect and probe workers do not report those engines
again. The one report of such a death is this listener's `container_exited`.

Cancellation: `run` returns when `stop` is set; the pending stream read is
cancelled, which closes the subscription, and deferred checks are cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from typing import Any

from rtm_core.domain.engine import ContainerInfo, EngineEvent, parse_docker_time
from rtm_core.domain.errors import DockerUnavailable
from rtm_core.domain.records import RuntimeRecord
from rtm_core.domain.vocabulary import HealthEventType, HealthSource, RuntimeStatus
from rtm_core.domain.wire import now_ms
from rtm_core.runtime.loops import sleep_until
from rtm_watcher.bootstrap import WatcherDeps
from rtm_watcher.cycle import for_each, running_records

log = logging.getLogger(__name__)

NAME = "events_listener"
#: Heartbeat while no event arrives; `/readyz` calls the loop wedged after three.
IDLE_BEAT_SECONDS = 5.0
BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 10.0
#: How long after an `oom` the engine must still run for the OOM to count as survived.
OOM_SETTLE_SECONDS = 1.0
#: A new leader asks the daemon for at most this much history (it keeps little anyway).
MAX_REPLAY_SECONDS = 600
#: Event keys remembered to drop the ones a `since` replay delivers twice.
RECENT_EVENTS = 4096
#: Inspects the catch-up pass runs at once.
CATCH_UP_CONCURRENCY = 16
LEASE_POLL_SECONDS = 0.1

#: What a SIGKILLed engine (the OOM killer's signal, behind its init) exits with.
SIGKILL_EXIT = 137

DEATH = "death"
SURVIVED_OOM = "oom"


def _is_current(record: RuntimeRecord | None, container_id: str) -> bool:
    return (
        record is not None
        and record.status == RuntimeStatus.RUNNING
        and record.current_container_id == container_id
    )


def _finished_at_ms(info: ContainerInfo) -> int:
    finished = parse_docker_time(info.finished_at)
    return int(finished.timestamp() * 1000) if finished else now_ms()


class EventsListener:
    name = NAME

    def __init__(self, deps: WatcherDeps, *, idle_beat: float = IDLE_BEAT_SECONDS) -> None:
        self._deps = deps
        self._idle_beat = idle_beat
        self._claims = deps.memory.claims
        self._cursor = deps.memory.cursor
        self._recent: OrderedDict[tuple[str, str, int], None] = OrderedDict()
        self._oom_pending: set[str] = set()
        self._since_nano = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending_checks(self) -> int:
        """Deferred checks still waiting (OOM survival, a start's commit)."""
        return len(self._tasks)

    # loop ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        loops = self._deps.loops
        daemon = self._deps.daemon
        loops.register(self.name, self._idle_beat)
        # Before the first await: the workers started beside this loop wait for
        # its first catch-up instead of judging deaths on their own.
        daemon.begin_term()
        log.info("worker started", extra={"worker": self.name})
        # A new term resumes where the last leader (maybe another replica) stopped.
        self._since_nano = 0
        self._oom_pending.clear()
        try:
            backoff = BACKOFF_INITIAL_SECONDS
            while not stop.is_set():
                try:
                    if not self._since_nano:
                        await daemon.resume_outage()
                        self._since_nano = await self._resume_point()
                    await self._deps.engine.ping()
                    await self.catch_up()
                    if (outage_ms := await daemon.caught_up()) is not None:
                        log.info(
                            "docker daemon back; engines classified from their state",
                            extra={"worker": self.name, "outage_ms": outage_ms},
                        )
                    loops.beat(self.name)
                    backoff = BACKOFF_INITIAL_SECONDS
                    await self._consume(stop)
                except DockerUnavailable as exc:
                    await daemon.lost(exc.message)
                    log.warning(
                        "docker events stream lost; reconnecting",
                        extra={"worker": self.name, "error": exc.message, "retry_in_s": backoff},
                    )
                except Exception:
                    # PostgreSQL or Redis failed mid-event: the event is not marked
                    # handled, so the replay from `since` brings it back.
                    log.exception(
                        "events listener failed; reconnecting", extra={"worker": self.name}
                    )
                else:
                    continue
                if await sleep_until(stop, backoff):
                    break
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            daemon.end_term()
            loops.unregister(self.name)
            log.info("worker stopped", extra={"worker": self.name})

    async def _resume_point(self) -> int:
        floor = time.time_ns() - MAX_REPLAY_SECONDS * 1_000_000_000
        cursor = await self._cursor.load()
        return max(cursor, floor) if cursor else time.time_ns()

    async def _consume(self, stop: asyncio.Event) -> None:
        """Handle events until `stop` (returns) or the stream breaks (raises)."""
        events = self._deps.engine.events(since=self._since_nano / 1e9)
        stopping = asyncio.ensure_future(stop.wait())
        pending: asyncio.Future[EngineEvent] | None = None
        try:
            while True:
                pending = asyncio.ensure_future(_next(events))
                while not pending.done():
                    await asyncio.wait(
                        {pending, stopping},
                        timeout=self._idle_beat,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if stop.is_set():
                        return
                    self._deps.loops.beat(self.name)
                await self.handle(pending.result())
                self._deps.loops.beat(self.name)
        finally:
            stopping.cancel()
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending
            if isinstance(events, AsyncGenerator):
                with contextlib.suppress(Exception):
                    await events.aclose()

    # events ----------------------------------------------------------------

    async def handle(self, event: EngineEvent) -> None:
        """Act on one event, then advance the cursor past it."""
        key = (event.container_id, event.action, event.time_nano)
        if key in self._recent:
            return
        if event.action == "die":
            self._deps.daemon.died(event.container_id)
            await self._on_die(event)
        elif event.action == "kill":
            self._deps.daemon.killed(event.container_id, event.time_nano)
        elif event.action == "oom":
            self._on_oom(event)
        self._recent[key] = None
        if len(self._recent) > RECENT_EVENTS:
            self._recent.popitem(last=False)
        if event.time_nano > self._since_nano:
            self._since_nano = event.time_nano
            await self._cursor.save(event.time_nano)

    async def _on_die(self, event: EngineEvent) -> None:
        game_id = event.game_id
        if not game_id or event.exit_code == 0:
            return
        record = await self._deps.records.get_record(game_id)
        if _is_current(record, event.container_id):
            await self._report_death(game_id, event.container_id, event.exit_code, event)
        elif await self._deps.leases.is_held(game_id):
            # An operation is under way: a start whose engine died before the
            # record pointed at it. Decide once the operation has committed.
            self._spawn(self._recheck_after_operation(game_id, event))

    def _on_oom(self, event: EngineEvent) -> None:
        self._oom_pending.add(event.container_id)
        self._spawn(self._settle_oom(event))

    async def _recheck_after_operation(self, game_id: str, event: EngineEvent) -> None:
        deadline = time.monotonic() + self._deps.operation_wait
        while await self._deps.leases.is_held(game_id):
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(LEASE_POLL_SECONDS)
        if _is_current(await self._deps.records.get_record(game_id), event.container_id):
            await self._report_death(game_id, event.container_id, event.exit_code, event)

    async def _settle_oom(self, event: EngineEvent) -> None:
        await asyncio.sleep(OOM_SETTLE_SECONDS)
        container_id, game_id = event.container_id, event.game_id
        if container_id not in self._oom_pending or not game_id:
            return  # its death was reported as container_oom meanwhile
        self._oom_pending.discard(container_id)
        info = await self._deps.engine.inspect(container_id)
        if info is None or not info.running:
            return  # the die (or the catch-up pass) reports it
        if not _is_current(await self._deps.records.get_record(game_id), container_id):
            return
        if await self._deps.exits.is_expected(container_id):
            return
        await self._publish(
            SURVIVED_OOM,
            game_id,
            container_id,
            HealthEventType.CONTAINER_OOM,
            {"exit_code": info.exit_code or 0},
            event.time_nano // 1_000_000,
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._logged(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _logged(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception:
            log.exception("deferred event check failed", extra={"worker": self.name})

    # deaths ----------------------------------------------------------------

    async def catch_up(self) -> int:
        """Report the deaths of `running` records' containers this listener did not
        see as events (a broken stream, a daemon restart, a leader change), and
        claim those since an outage began as the daemon's. Returns how many
        deaths it published."""
        published = daemon_stops = 0

        async def check(record: RuntimeRecord) -> None:
            nonlocal published, daemon_stops
            container_id = record.current_container_id or ""
            info = await self._deps.engine.inspect(container_id)
            if info is None or info.running:
                return
            if await self._deps.daemon.claim_daemon_stop(info):
                daemon_stops += 1
            if not info.exit_code:
                return
            if await self._report_death(record.game_id, container_id, info.exit_code, info):
                published += 1

        await for_each(await running_records(self._deps.records), CATCH_UP_CONCURRENCY, check)
        if published:
            log.info(
                "missed engine deaths reported", extra={"worker": self.name, "count": published}
            )
        if daemon_stops:
            log.info(
                "engines stopped by the docker daemon",
                extra={"worker": self.name, "count": daemon_stops},
            )
        return published

    async def _report_death(
        self,
        game_id: str,
        container_id: str,
        exit_code: int | None,
        seen: EngineEvent | ContainerInfo,
    ) -> bool:
        if await self._deps.exits.is_expected(container_id):
            log.debug("exit caused by RTM", extra={"game_id": game_id, "worker": self.name})
            return False
        oom_pending = container_id in self._oom_pending
        survived_oom = await self._claims.claimed(SURVIVED_OOM, container_id)
        info = seen if isinstance(seen, ContainerInfo) else None
        # An inspect right after a `die` waits ~100 ms for Docker to finish with
        # the container: only when the event leaves the cause open, i.e. an
        # unknown code, or a SIGKILL whose `oom` this listener did not see.
        if info is None and (
            exit_code is None or survived_oom or (exit_code == SIGKILL_EXIT and not oom_pending)
        ):
            info = await self._deps.engine.inspect(container_id)
        if exit_code is None:
            exit_code = info.exit_code if info else None
        if not exit_code:
            return False
        oom_killed = info is not None and info.oom_killed
        oom_death = oom_pending or (oom_killed and not survived_oom)
        self._oom_pending.discard(container_id)
        if isinstance(seen, EngineEvent):
            at_ms = seen.time_nano // 1_000_000
        else:
            at_ms = _finished_at_ms(seen)
        if oom_death:
            event_type = HealthEventType.CONTAINER_OOM
            details: dict[str, Any] = {"exit_code": exit_code}
        else:
            event_type = HealthEventType.CONTAINER_EXITED
            details = {"exit_code": exit_code, "oom": oom_killed}
        return await self._publish(DEATH, game_id, container_id, event_type, details, at_ms)

    async def _publish(
        self,
        what: str,
        game_id: str,
        container_id: str,
        event_type: HealthEventType,
        details: dict[str, Any],
        at_ms: int,
    ) -> bool:
        if not await self._claims.claim(what, container_id):
            return False
        try:
            await self._deps.health.report(
                game_id=game_id,
                container_id=container_id,
                event_type=event_type,
                source=HealthSource.DOCKER_EVENT,
                details=details,
                occurred_at_ms=at_ms,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self._claims.release(what, container_id)
            raise
        return True


async def _next(events: AsyncIterator[EngineEvent]) -> EngineEvent:
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        raise DockerUnavailable("docker events stream ended") from None
