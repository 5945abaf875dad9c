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

Each job: decode (`rtm_core.domain.wire`) → `lifecycle.start/stop` → XADD
the result → XACK and move the offset (one script, `rtm_jobs.offsets`). Nothing is acknowledged
before its result is out; a process killed in between leaves the entry
pending, a peer (or this consumer after a restart) runs it again, and the
lifecycle's replay answers `replay_no_op`.

Stop: the loop stops reading (within `READ_BLOCK_SECONDS`), waits for
in-flight jobs up to `drain_seconds`, cancels the rest (their entries stay
pending for a peer or the next boot) and moves the offset one last time.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from contextlib import suppress
from typing import Any

from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from rtm_core.domain.errors import RtmError
from rtm_core.domain.vocabulary import Outcome
from rtm_core.domain.wire import Job, MalformedJob, PoisonEntry, RawFields
from rtm_core.lifecycle import OperationResult
from rtm_core.observability import operation_context, tracer
from rtm_core.runtime.loops import sleep_until
from rtm_core.settings import Settings
from rtm_jobs.bootstrap import JobsDeps
from rtm_jobs.jobs import START_JOBS, STOP_JOBS, JobStream, job_result
from rtm_jobs.offsets import GroupState
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

Entry = tuple[str, RawFields]
#: An entry as decoded: a job, a job refused for one field, or nobody's entry.
Decoded = Job | MalformedJob | PoisonEntry


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
        self._inflight: dict[str, asyncio.Task[None]] = {}
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
                keeper.cancel()
                with suppress(asyncio.CancelledError):
                    await keeper
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
                    for entry_id, raw in await self._read(reader, free):
                        self._dispatch(entry_id, raw)
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
            for entry_id, raw in await self._claim(reader, self.scheduler.free):
                self._dispatch(entry_id, raw)
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
                return [e for e in entries if e[0] not in self._inflight]
            self._own_cursor = None
        response = await reader.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=count,
            block=int(READ_BLOCK_SECONDS * 1000),
        )
        return _entries(response)

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
        return entries

    # ------------------------------------------------------------------ jobs

    def _dispatch(self, entry_id: str, raw: RawFields) -> None:
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
            await self._job(entry_id, decoded)

        task = self.scheduler.submit(key, job, name=f"{self.name}:{entry_id}")
        self._inflight[entry_id] = task
        task.add_done_callback(lambda _: self._inflight.pop(entry_id, None))

    async def _job(self, entry_id: str, decoded: Decoded) -> None:
        began = time.perf_counter()
        with tracer.start_as_current_span(
            f"rtm.job.{self.jobs.label}",
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "redis",
                "messaging.destination.name": self.stream,
                "messaging.message.id": entry_id,
            },
        ):
            if isinstance(decoded, PoisonEntry):
                await self._drop(entry_id, decoded, began)
                return
            game_id = decoded.game_id
            with operation_context(game_id, self.jobs.op_kind.value):
                outcome = await self._run(decoded)
                result = job_result(game_id, outcome)
                try:
                    offset = await self.state.complete(
                        entry_id,
                        results_stream=self.deps.job_results_stream,
                        result=result,
                        maxlen=self.deps.stream_maxlen,
                    )
                except Exception:
                    log.exception(
                        "job result not published; entry left pending for a retry",
                        extra={"entry_id": entry_id, **self._log_fields},
                    )
                    return
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
                        "offset": offset,
                        "duration_ms": round((time.perf_counter() - began) * 1000, 1),
                        **self._log_fields,
                    },
                )

    async def _run(self, job: Job | MalformedJob) -> OperationResult | Exception:
        if isinstance(job, MalformedJob):
            return self.jobs.refusal(job)
        try:
            return await self.jobs.call(self.deps, job)
        except RtmError as exc:
            return exc
        except Exception as exc:
            log.exception("job failed unexpectedly", extra=self._log_fields)
            return exc

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


def _entries(response: Any) -> list[Entry]:
    """XREADGROUP's reply as (id, fields) pairs; fields None for a deleted entry."""
    return [
        (entry_id.decode(), fields)
        for _stream, entries in response or ()
        for entry_id, fields in entries
    ]
