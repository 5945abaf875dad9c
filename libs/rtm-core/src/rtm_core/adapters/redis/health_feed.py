"""`runtime:health_events` read back through a consumer group (issue 12).

RTM publishes health events with plain XADD; the auto-restart loop of
rtm-reconciler reads them through a group of its own
(`RTMANAGER_AUTO_RESTART_CONSUMER_GROUP`), so an event delivered to a leader
that died before acknowledging it is delivered again to the next one, and
events published while no leader ran wait in the stream (within
`RTMANAGER_STREAM_MAXLEN`).

Only the leader reads, so every replica uses one consumer name: a new
leader first walks that consumer's pending entries once (from id `0`), then
reads new ones (`>`); an entry the reader keeps for later (its game was busy)
is the reader's to retry, not re-delivered by the feed. The group is created
at the stream's end (`$`) the first time: events from before auto restart
was switched on are not acted on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from rtm_core.domain.wire import HealthEvent
from rtm_core.ports import FeedEntry

#: One consumer name for every replica: only the leader ever reads.
CONSUMER = "leader"


class HealthEventFeed:
    def __init__(self, redis: Redis, *, stream: str, group: str, consumer: str = CONSUMER) -> None:
        self._redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self._group_ready = False
        #: Re-read what a previous leader was given and never acknowledged, first,
        #: once: from this id on (the pending list is walked, not re-read).
        self._backlog: str | None = "0"

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.stream, self.group, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def read(self, count: int, block_ms: int = 0) -> list[FeedEntry]:
        if not self._group_ready:
            await self.ensure_group()
        try:
            return await self._read(count, block_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream or the group went away (Redis flushed): start over at its end.
            self._group_ready, self._backlog = False, "0"
            await self.ensure_group()
            return await self._read(count, block_ms)

    async def _read(self, count: int, block_ms: int) -> list[FeedEntry]:
        if self._backlog is not None:
            entries = await self._xreadgroup(self._backlog, count, None)
            if entries:
                self._backlog = entries[-1].entry_id
                return entries
            self._backlog = None
        return await self._xreadgroup(">", count, block_ms or None)

    async def _xreadgroup(self, last_id: str, count: int, block: int | None) -> list[FeedEntry]:
        reply: Any = await self._redis.xreadgroup(
            self.group, self.consumer, {self.stream: last_id}, count=count, block=block
        )
        found: list[FeedEntry] = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                found.append(feed_entry(as_text(entry_id), fields))
        return found

    async def ack(self, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            await self._redis.xack(self.stream, self.group, *entry_ids)


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def feed_entry(entry_id: str, fields: Any) -> FeedEntry:
    if not fields:  # trimmed while pending: nothing left to read
        return FeedEntry(entry_id, None, "entry has no fields (trimmed)")
    text = {as_text(k): as_text(v) for k, v in fields.items()}
    try:
        return FeedEntry(entry_id, HealthEvent.decode(text))
    except (ValidationError, ValueError) as exc:
        return FeedEntry(entry_id, None, str(exc).splitlines()[0])
