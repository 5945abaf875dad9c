"""Exits RTM causes itself, announced before the fact.

The watcher runs in another process and sees `die` before the lifecycle has
written the new record, so a stop, restart, patch or cleanup first marks
the container here; the watcher stays silent for a marked container.
"""

from __future__ import annotations

from redis.asyncio import Redis

from rtm_core.adapters.redis.errors import redis_unavailable

EXPECTED_EXIT_PREFIX = "rtmanager:expected_exit:"


class ExpectedExits:
    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    @redis_unavailable
    async def mark(self, container_id: str) -> None:
        await self._redis.set(EXPECTED_EXIT_PREFIX + container_id, "1", ex=self._ttl)

    @redis_unavailable
    async def is_expected(self, container_id: str) -> bool:
        return bool(await self._redis.exists(EXPECTED_EXIT_PREFIX + container_id))
