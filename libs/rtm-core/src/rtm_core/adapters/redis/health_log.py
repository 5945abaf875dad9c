"""`runtime:health_events` read back for people (REST `…/events`, issue 13).

No consumer group: a reader reads, it never acknowledges, and it takes
nothing from the auto-restart loop's group. The stream holds every game's
events (capped at `RTMANAGER_STREAM_MAXLEN`), so a game's recent events are
found by walking it backwards (XREVRANGE) in pages, at most `SCAN_LIMIT`
entries per request: an old game's history past that is not worth a scan of
the whole stream (its latest state is its health snapshot). A follow is
XREAD BLOCK from an entry id, filtering by game.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from rtm_core.adapters.redis.errors import redis_unavailable
from rtm_core.adapters.redis.health_feed import as_text, feed_entry
from rtm_core.ports import FeedEntry

#: Entries per XREVRANGE page, and at most this many looked at per request.
SCAN_PAGE = 500
SCAN_LIMIT = 10_000
#: Id before every entry.
START = "0-0"


class HealthEventLog:
    def __init__(self, redis: Redis, *, stream: str) -> None:
        self._redis = redis
        self.stream = stream

    @redis_unavailable
    async def recent(self, game_id: str | None, limit: int) -> tuple[list[FeedEntry], str]:
        found: list[FeedEntry] = []
        newest: str | None = None
        upper, scanned = "+", 0
        while len(found) < limit and scanned < SCAN_LIMIT:
            page: Any = await self._redis.xrevrange(
                self.stream, max=upper, min="-", count=min(SCAN_PAGE, SCAN_LIMIT - scanned)
            )
            if not page:
                break
            for raw_id, fields in page:
                entry = feed_entry(as_text(raw_id), fields)
                newest = newest or entry.entry_id
                if entry.event is not None and _matches(entry, game_id):
                    found.append(entry)
                    if len(found) == limit:
                        break
            scanned += len(page)
            upper = "(" + as_text(page[-1][0])
        found.reverse()
        return found, newest or await self._last_id()

    async def _last_id(self) -> str:
        """The newest id when the scan saw none (an empty stream: `0-0`)."""
        last: Any = await self._redis.xrevrange(self.stream, count=1)
        return as_text(last[0][0]) if last else START

    @redis_unavailable
    async def after(
        self, entry_id: str, game_id: str | None, *, count: int, block_ms: int
    ) -> tuple[list[FeedEntry], str]:
        reply: Any = await self._redis.xread(
            {self.stream: entry_id}, count=count, block=block_ms or None
        )
        found: list[FeedEntry] = []
        for _stream, entries in reply or []:
            for raw_id, fields in entries:
                entry = feed_entry(as_text(raw_id), fields)
                entry_id = entry.entry_id
                if entry.event is not None and _matches(entry, game_id):
                    found.append(entry)
        return found, entry_id


def _matches(entry: FeedEntry, game_id: str | None) -> bool:
    return game_id is None or (entry.event is not None and entry.event.game_id == game_id)
