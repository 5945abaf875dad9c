"""The start-jobs and stop-jobs consumers: one loop per stream, all replicas in
one Redis consumer group (`RTMANAGER_JOBS_CONSUMER_GROUP`).

What FastStream does here, and what it does not
------------------------------------------------
FastStream 0.7.8 (`faststream/redis/subscriber/usecases/stream_subscriber.py`)
was read before deciding:

- A `StreamSub` subscriber awaits its handler for each entry before taking
  the next (`StreamSubscriber._get_msgs` → `consume_one`): one job at a time.
- `max_workers=N` (`StreamConcurrentSubscriber`) runs N handlers off an
  in-memory queue that knows no key, so two jobs for one game could run in
  either order.
- `StreamSub(min_idle_time=…)` turns the subscriber into an XAUTOCLAIM-only
  poller (COUNT 1) that never reads new entries (ag2ai/faststream#3003), so
  claiming takes a second subscriber per stream; `claim_min_idle_time`
  (XREADGROUP CLAIM) needs Redis ≥ 8.4.
- The group is created from `$` (new entries only) unless `last_id` is set,
  and with an explicit `last_id` an existing group is read from that
  consumer's own history for good instead of `>`: neither is "from 0 or the
  persisted offset".
- A lost group (NOGROUP) stops the subscriber for good.
- `publish` wraps payloads in FastStream's envelope; results must be plain XADD.

Per-entry acknowledgement would be possible (`AckPolicy.MANUAL`), but
ordered concurrency, claiming and group creation would each be a workaround
around it. So the loop below reads with XREADGROUP and XAUTOCLAIM through
redis-py, as FastStream's subscriber does, and adds per-game order, claiming
in the same loop, and the offset key. FastStream stays the declaration of
the broker and of every stream RTM consumes and publishes, from which the
AsyncAPI document is generated (`rtm_jobs.asyncapi`).

One iteration of a consumer loop
--------------------------------
1. every claim interval: XAUTOCLAIM entries idle longer than
   `RTMANAGER_JOBS_CLAIM_IDLE` (a replica died mid-job), up to the free slots;
2. every few seconds: XINFO GROUPS → `rtmanager.stream_pending` / `stream_lag`;
3. wait (≤ `READ_BLOCK_SECONDS`) for a free slot, then XREADGROUP up to
   `free` entries — this consumer's own pending entries first after boot,
   then `>` blocking ≤ `READ_BLOCK_SECONDS`;
4. hand each entry to the `JobScheduler` keyed by its game_id; beat.

Beside the loop, a keeper task resets the idle time of this consumer's
in-flight entries every third of the claim idle, so a job that runs longer
than that (a stop waiting out its timeout, a lease wait) is not claimed away
from a live replica.

Each job: decode (`rtm_core.domain.wire`) → `lifecycle.start/stop` with
the entry id as the job's place in its game's order → XADD the result →
XACK and move the offset (one script, `rtm_jobs.offsets`). Nothing is
acknowledged before its result is out; a process killed in between leaves
the entry pending, a peer (or this consumer after a restart) runs it again,
and the lifecycle answers it from the game's state: `replay_no_op` when the
job is in effect, `conflict` naming the newer job when a newer job of the
game was applied meanwhile (the start of a game Lobby stopped since).

Dependencies away
-----------------
A job whose operation meets an unavailable PostgreSQL, Redis or Docker
(`service_unavailable`, `docker_unavailable`) is run again, with backoff
(`RETRY_FIRST_SECONDS` doubling up to `RETRY_MAX_SECONDS`), until
`RTMANAGER_JOBS_DEADLINE` after this replica picked its entry up; then it is
answered with that code. The entry stays claimed meanwhile (the keeper) and
each attempt is an operation of its own, with its own operation-log row
when PostgreSQL takes it. The result step is retried the same way on a
Redis outage. At stop, a job waiting to retry is left pending.

Poison
------
An entry whose processing never completes (it crashes the process, or its
replica dies or fails in it every time) comes back again and again: every
read of it from the pending list and every claim raises its delivery count.
Entries picked up from the pending list are checked with one XPENDING per
batch; one delivered more than `RTMANAGER_JOBS_MAX_DELIVERIES` times is not
run again but answered `failure` + `internal_error` and copied, with why,
to `RTMANAGER_REDIS_DEAD_LETTER_STREAM`, in the result step
(`rtmanager.jobs_dead_lettered`). Entries that cannot be decoded are
answered (or dropped) at once, as before: they never run anything.

Stop: the loop stops reading (within `READ_BLOCK_SECONDS`), waits for
in-flight jobs up to `drain_seconds`, cancels the rest (their entries stay
pending for a peer or the next boot) and moves the offset one last time.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry.trace import Span, SpanKind
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rtm_core.aio import stop_task
from rtm_core.domain.errors import (
    DockerUnavailable,
    InternalError,
    RtmError,
    ServiceUnavailable,
)
from rtm_core.domain.vocabulary import Outcome
from rtm_core.domain.wire import (
    DeadLetter,
    Job,
    JobResult,
    MalformedJob,
    PoisonEntry,
    RawFields,
    now_ms,
)
from rtm_core.lifecycle import OperationResult
from rtm_core.observability import operation_context, tracer
from rtm_core.runtime.loops import sleep_until
from rtm_core.settings import Settings
from rtm_jobs.bootstrap import JobsDeps
from rtm_jobs.jobs import START_JOBS, STOP_JOBS, JobStream, job_result
from rtm_jobs.offsets import DeadLetterCopy, GroupState
from rtm_jobs.scheduler import JobScheduler

log = logging.getLogger(__name__)

#: Longest a read blocks; also bounds how long a stop waits for the loop.
READ_BLOCK_SECONDS = 0.5
#: Liveness interval registered for /readyz; the loop beats every iteration.
BEAT_INTERVAL = 2.0
#: How often XINFO GROUPS refreshes the pending and lag gauges.
METRICS_INTERVAL = 5.0
#: Pause after a failed iteration (Redis away), so it is not hammered.
ERROR_BACKOFF_SECONDS = 1.0
#: Share of RTMANAGER_SHUTDOWN_TIMEOUT in-flight jobs get to finish at stop;
#: the rest is for the listener and the connections.
DRAIN_SHARE = 0.8
#: Backoff between attempts of a job whose dependency is unavailable.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 10.0
#: What an attempt may meet that the next one may not: an outage.
RETRIED = (ServiceUnavailable, DockerUnavailable)
#: The result step's own outage (it talks to Redis directly).
REDIS_OUTAGES = (RedisConnectionError, RedisTimeoutError)

#: An entry as read: id, fields, delivery count (1 for a first delivery).
Entry = tuple[str, RawFields, int]
#: An entry as decoded: a job, a job refused for one field, or nobody's entry.
Decoded = Job | MalformedJob | PoisonEntry


class LeftPending(Exception):
    """The process is stopping while the job waits to retry: no answer; the
    entry stays pending for a peer or the next boot."""


def consumer_name(settings: Settings) -> str:
    """`RTMANAGER_JOBS_CONSUMER_NAME`, else the hostname.

    A container or pod keeps its hostname across restarts, so a restarted
    replica reads its own pending entries at once instead of leaving them for
    a peer's claim after `RTMANAGER_JOBS_CLAIM_IDLE`, and dead names do not
    pile up in the group. Replicas sharing one host must be given distinct
    names.
    """
    return settings.jobs_consumer_name or socket.gethostname()


def consumers(deps: JobsDeps) -> list[JobConsumer]:
    """Both loops of a process, sharing its concurrency bound and per-game order."""
    scheduler = JobScheduler(deps.settings.jobs_concurrency)
    name = consumer_name(deps.settings)
    streams: tuple[JobStream[Any], ...] = (START_JOBS, STOP_JOBS)
    return [JobConsumer(deps, jobs, scheduler, consumer=name) for jobs in streams]


class JobConsumer:
    def __init__(
        self,
        deps: JobsDeps,
        jobs: JobStream[Any],
        scheduler: JobScheduler,
        *,
        consumer: str,
        offset_key: str | None = None,
        drain_seconds: float | None = None,
    ) -> None:
        settings = deps.settings
        self.deps = deps
        self.jobs = jobs
        self.scheduler = scheduler
        self.name = jobs.worker
        self.stream = jobs.stream(settings)
        self.group = settings.jobs_consumer_group
        self.consumer = consumer
        self.state = GroupState(
            deps.redis,
            stream=self.stream,
            group=self.group,
            consumer=consumer,
            offset_key=offset_key or jobs.offset_key,
        )
        self.claim_idle_ms = int(settings.jobs_claim_idle * 1000)
        self.claim_every = min(max(settings.jobs_claim_idle / 2, 0.25), 5.0)
        self.touch_every = max(settings.jobs_claim_idle / 3, 0.1)
        self.drain_seconds = (
            settings.shutdown_timeout * DRAIN_SHARE if drain_seconds is None else drain_seconds
        )
        self.max_deliveries = settings.jobs_max_deliveries
        self.deadline_seconds = settings.jobs_deadline
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._own_cursor: str | None = "0"  # this consumer's pending entries, read once
        self._claim_cursor = "0-0"
        self._due = {"claim": 0.0, "metrics": 0.0}

    @property
    def _log_fields(self) -> dict[str, str]:
        return {"stream": self.stream, "group": self.group, "consumer": self.consumer}

    # ------------------------------------------------------------------ loop

    async def run(self, stop: asyncio.Event) -> None:
        registry = self.deps.loops
        registry.register(self.name, BEAT_INTERVAL)
        log.info("worker started", extra={"worker": self.name, **self._log_fields})
        reader = self.deps.open_reader()
        keeper = asyncio.create_task(self._keep_claimed(), name=f"{self.name}:keeper")
        try:
            await self._consume(stop, reader)
        finally:
            try:
                await self._drain()
            finally:
                await stop_task(keeper)
                await reader.aclose()
                registry.unregister(self.name)
                log.info("worker stopped", extra={"worker": self.name, **self._log_fields})

    async def _consume(self, stop: asyncio.Event, reader: Redis) -> None:
        group_ready = False
        while not stop.is_set():
            try:
                if not group_ready:
                    await self.state.ensure_group()
                    group_ready = True
                await self._housekeeping(reader)
                free = await self.scheduler.wait_free(READ_BLOCK_SECONDS)
                if free and not stop.is_set():
                    for entry in await self._read(reader, free):
                        self._dispatch(*entry)
                self.deps.loops.beat(self.name)
            except Exception as exc:
                if str(exc).startswith("NOGROUP"):
                    # The stream or group was deleted under us: rebuild it from the offset.
                    log.warning("consumer group missing; recreating it", extra=self._log_fields)
                    group_ready = False
                    self._own_cursor = None
                    continue
                log.exception("stream consumer iteration failed", extra=self._log_fields)
                if await sleep_until(stop, ERROR_BACKOFF_SECONDS):
                    break

    def _due_now(self, what: str, every: float) -> bool:
        now = time.monotonic()
        if now < self._due[what]:
            return False
        self._due[what] = now + every
        return True

    async def _housekeeping(self, reader: Redis) -> None:
        if self._due_now("claim", self.claim_every) and self.scheduler.free > 0:
            for entry in await self._claim(reader, self.scheduler.free):
                self._dispatch(*entry)
        if self._due_now("metrics", METRICS_INTERVAL):
            pending, lag = await self.state.backlog()
            metrics = self.deps.metrics
            metrics.stream_pending.set(float(pending), stream=self.stream, group=self.group)
            if lag is not None:
                metrics.stream_lag.set(float(lag), stream=self.stream, group=self.group)

    async def _keep_claimed(self) -> None:
        """Reset the idle time of this consumer's in-flight entries every third of the
        claim idle, on its own beat (reads block), and through the drain at stop."""
        while True:
            await asyncio.sleep(self.touch_every)
            if not self._inflight:
                continue
            try:
                await self.state.touch(list(self._inflight))
            except Exception:
                log.warning("could not keep in-flight entries claimed", extra=self._log_fields)

    async def _read(self, reader: Redis, count: int) -> list[Entry]:
        if self._own_cursor is not None:
            # After a restart under the same consumer name: our own pending entries first.
            response = await reader.xreadgroup(
                self.group, self.consumer, {self.stream: self._own_cursor}, count=count
            )
            entries = _entries(response)
            if entries:
                self._own_cursor = entries[-1][0]
                return await self._counted([e for e in entries if e[0] not in self._inflight])
            self._own_cursor = None
        response = await reader.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=count,
            block=int(READ_BLOCK_SECONDS * 1000),
        )
        return [(entry_id, raw, 1) for entry_id, raw in _entries(response)]

    async def _claim(self, reader: Redis, count: int) -> list[Entry]:
        """Entries a dead (or wedged) consumer left pending longer than the claim idle."""
        next_id, claimed, *_deleted = await reader.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id=self._claim_cursor,
            count=count,
        )
        self._claim_cursor = next_id.decode()
        entries = [(i.decode(), raw) for i, raw in claimed if i.decode() not in self._inflight]
        if entries:
            log.info(
                "claimed idle entries",
                extra={"entry_ids": [i for i, _ in entries], **self._log_fields},
            )
        return await self._counted(entries)

    async def _counted(self, entries: list[tuple[str, RawFields]]) -> list[Entry]:
        """Entries picked up from the pending list, with their delivery counts (one
        XPENDING for the batch; an entry it does not list counts as delivered once)."""
        counts = await self.state.deliveries(
            [entry_id for entry_id, _ in entries], also_owned=len(self._inflight)
        )
        return [(entry_id, raw, counts.get(entry_id, 1)) for entry_id, raw in entries]

    # ------------------------------------------------------------------ jobs

    def _dispatch(self, entry_id: str, raw: RawFields, deliveries: int = 1) -> None:
        picked_at = time.monotonic()
        decoded: Decoded
        try:
            incoming: Job = self.jobs.shape.decode(raw)
            decoded, key = incoming, incoming.game_id
        except MalformedJob as exc:
            # Answered in its game's turn, like any job of the game.
            decoded, key = exc, exc.game_id
        except PoisonEntry as exc:
            decoded, key = exc, f"entry:{entry_id}"

        async def job() -> None:
            if isinstance(decoded, Job) and deliveries > self.max_deliveries:
                await self._give_up(entry_id, decoded, raw, deliveries)
                return
            await self._job(entry_id, decoded, deadline=picked_at + self.deadline_seconds)

        task = self.scheduler.submit(key, job, name=f"{self.name}:{entry_id}")
        self._inflight[entry_id] = task
        task.add_done_callback(lambda _: self._inflight.pop(entry_id, None))

    def _span(self, entry_id: str) -> AbstractContextManager[Span]:
        return tracer.start_as_current_span(
            f"rtm.job.{self.jobs.label}",
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "redis",
                "messaging.destination.name": self.stream,
                "messaging.message.id": entry_id,
            },
        )

    async def _job(self, entry_id: str, decoded: Decoded, *, deadline: float) -> None:
        began = time.perf_counter()
        with self._span(entry_id):
            if isinstance(decoded, PoisonEntry):
                await self._drop(entry_id, decoded, began)
                return
            game_id = decoded.game_id
            with operation_context(game_id, self.jobs.op_kind.value):
                try:
                    outcome = await self._run(entry_id, decoded, deadline)
                    await self._answer(
                        entry_id, job_result(game_id, outcome), began, deadline=deadline
                    )
                except LeftPending:
                    log.warning(
                        "job left pending at shutdown while waiting to retry",
                        extra={"entry_id": entry_id, **self._log_fields},
                    )

    async def _run(
        self, entry_id: str, job: Job | MalformedJob, deadline: float
    ) -> OperationResult | Exception:
        """The job's outcome: attempts until one does not meet an outage, or the
        deadline passes (then the outage is the outcome)."""
        if isinstance(job, MalformedJob):
            return self.jobs.refusal(job)
        delay = RETRY_FIRST_SECONDS
        attempt = 1
        while True:
            try:
                return await self.jobs.call(self.deps, job, entry_id)
            except RETRIED as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning(
                        "job deadline passed while a dependency is unavailable",
                        extra={
                            "entry_id": entry_id,
                            "attempts": attempt,
                            "error_code": exc.code,
                            **self._log_fields,
                        },
                    )
                    return exc
                wait = min(delay, remaining)
                log.warning(
                    "dependency unavailable; job will be retried",
                    extra={
                        "entry_id": entry_id,
                        "attempt": attempt,
                        "retry_in_s": round(wait, 3),
                        "error_code": exc.code,
                        "error_message": exc.message,
                        **self._log_fields,
                    },
                )
                await self._backoff(wait)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                attempt += 1
            except RtmError as exc:
                return exc
            except Exception as exc:
                log.exception("job failed unexpectedly", extra=self._log_fields)
                return exc

    async def _backoff(self, seconds: float) -> None:
        if await sleep_until(self._stopping, seconds):
            raise LeftPending

    async def _answer(
        self,
        entry_id: str,
        result: JobResult,
        began: float,
        *,
        deadline: float,
        dead_letter: DeadLetterCopy | None = None,
    ) -> bool:
        """The result step, retried through a Redis outage until `deadline`. True
        when this step published the answer; False when it could not (the entry
        stays pending) or the entry had been answered already."""
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                done = await self.state.complete(
                    entry_id,
                    results_stream=self.deps.job_results_stream,
                    result=result,
                    maxlen=self.deps.stream_maxlen,
                    dead_letter=dead_letter,
                )
                break
            except Exception as exc:
                remaining = deadline - time.monotonic()
                if isinstance(exc, REDIS_OUTAGES) and remaining > 0:
                    log.warning(
                        "redis unavailable; job result will be retried",
                        extra={"entry_id": entry_id, "error": str(exc), **self._log_fields},
                    )
                    await self._backoff(min(delay, remaining))
                    delay = min(delay * 2, RETRY_MAX_SECONDS)
                    continue
                log.exception(
                    "job result not published; entry left pending for a retry",
                    extra={"entry_id": entry_id, **self._log_fields},
                )
                return False
        if not done.published:
            log.info(
                "job already answered; nothing published",
                extra={"entry_id": entry_id, "offset": done.offset, **self._log_fields},
            )
            return False
        self._count(result.outcome, began)
        log.log(
            logging.INFO if result.outcome == Outcome.SUCCESS else logging.WARNING,
            "job completed",
            extra={
                "entry_id": entry_id,
                "outcome": result.outcome.value,
                "error_code": result.error_code,
                "error_message": result.error_message,
                "container_id": result.container_id,
                "offset": done.offset,
                "duration_ms": round((time.perf_counter() - began) * 1000, 1),
                **self._log_fields,
            },
        )
        return True

    async def _give_up(self, entry_id: str, job: Job, raw: RawFields, deliveries: int) -> None:
        """A job delivered too often without completing: answered `internal_error`
        and copied to the dead-letter stream, in one result step; never run again."""
        assert raw is not None
        began = time.perf_counter()
        reason = (
            f"delivered {deliveries} times without completing "
            f"(RTMANAGER_JOBS_MAX_DELIVERIES={self.max_deliveries})"
        )
        stream = self.deps.dead_letter_stream
        letter = DeadLetter(
            source_stream=self.stream,
            source_id=entry_id,
            deliveries=deliveries,
            dead_letter_reason=reason,
            dead_lettered_at_ms=now_ms(),
        )
        error = InternalError(f"job given up: {reason}; copied to {stream}")
        with self._span(entry_id), operation_context(job.game_id, self.jobs.op_kind.value):
            try:
                published = await self._answer(
                    entry_id,
                    job_result(job.game_id, error),
                    began,
                    deadline=time.monotonic() + self.deadline_seconds,
                    dead_letter=DeadLetterCopy(stream, letter.entry(raw)),
                )
            except LeftPending:
                return
            if not published:
                return
            self.deps.metrics.jobs_dead_lettered.add(1, {"stream": self.jobs.label})
            log.error(
                "job dead-lettered",
                extra={
                    "entry_id": entry_id,
                    "deliveries": deliveries,
                    "dead_letter_stream": stream,
                    "reason": reason,
                    **self._log_fields,
                },
            )

    async def _drop(self, entry_id: str, poison: PoisonEntry, began: float) -> None:
        """An entry that names no game: acknowledged, logged, no result."""
        try:
            await self.state.ack(entry_id)
        except Exception:
            log.exception(
                "malformed job entry not acknowledged; left pending for a retry",
                extra={"entry_id": entry_id, **self._log_fields},
            )
            return
        self._count(Outcome.FAILURE, began)
        log.warning(
            "malformed job entry acknowledged without a result",
            extra={"entry_id": entry_id, "error": str(poison), **self._log_fields},
        )

    def _count(self, outcome: Outcome, began: float) -> None:
        metrics = self.deps.metrics
        metrics.jobs_processed.add(1, {"stream": self.jobs.label, "outcome": outcome.value})
        metrics.job_duration.record(
            time.perf_counter() - began,
            {"kind": self.jobs.op_kind.value, "outcome": outcome.value},
        )

    # ------------------------------------------------------------------ stop

    async def _drain(self) -> None:
        self._stopping.set()  # jobs waiting to retry give up their turn at once
        tasks = set(self._inflight.values())
        if tasks:
            log.info(
                "finishing in-flight jobs",
                extra={"jobs": len(tasks), "budget_s": self.drain_seconds, **self._log_fields},
            )
            _done, late = await asyncio.wait(tasks, timeout=self.drain_seconds)
            if late:
                log.warning(
                    "in-flight jobs cancelled at shutdown; their entries stay pending",
                    extra={"jobs": len(late), **self._log_fields},
                )
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        try:
            offset = await self.state.ack()
        except Exception:
            log.warning("could not persist the stream offset", extra=self._log_fields)
            return
        log.info(
            "stream offset persisted",
            extra={"offset_key": self.state.offset_key, "offset": offset, **self._log_fields},
        )


def _entries(response: Any) -> list[tuple[str, RawFields]]:
    """XREADGROUP's reply as (id, fields) pairs; fields None for a deleted entry."""
    return [
        (entry_id.decode(), fields)
        for _stream, entries in response or ()
        for entry_id, fields in entries
    ]
