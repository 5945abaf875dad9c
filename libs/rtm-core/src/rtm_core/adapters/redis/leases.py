"""Redis leases: the per-game operation lease (fenced) and the leader lease.

Both are `SET NX PX` with a random token, renewed only by the holder
(compare-and-pexpire) and released only by the holder (compare-and-delete),
so a lease that expired and was taken by someone else is never stolen back.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

from redis.asyncio import Redis

from rtm_core.adapters.redis.errors import redis_unavailable
from rtm_core.aio import stop_task
from rtm_core.domain.errors import FencedOut, OperationInProgress
from rtm_core.domain.ordering import order_id_at

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: lease, fence counter. ARGV: token, ttl ms. The fence is taken in the
# same step as the lease, so no two holdings of a game share one.
_ACQUIRE_FENCED = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence = redis.call('INCR', KEYS[2])
  local now = redis.call('TIME')
  return {fence, tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)}
end
return false
"""
# KEYS: fence counter. ARGV: a stored fence the counter must pass.
_ADVANCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current <= tonumber(ARGV[1]) then
  current = tonumber(ARGV[1]) + 1
  redis.call('SET', KEYS[1], current)
end
return current
"""

GAME_LEASE_PREFIX = "rtmanager:game_lease:"
GAME_FENCE_PREFIX = "rtmanager:game_fence:"


class Lease:
    """One token on one key."""

    def __init__(self, redis: Redis, key: str, ttl_seconds: float) -> None:
        self.redis = redis
        self.key = key
        self.ttl_ms = int(ttl_seconds * 1000)
        self.token = secrets.token_hex(16)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @redis_unavailable
    async def try_acquire(self) -> bool:
        return bool(await self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    @redis_unavailable
    async def renew(self) -> bool:
        return bool(await self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    @redis_unavailable
    async def release(self) -> bool:
        return bool(await self._release(keys=[self.key], args=[self.token]))

    async def keep_alive(self, on_lost: Callable[[], None] | None = None) -> None:
        """Renew every third of the TTL until cancelled; report a lost lease once."""
        interval = self.ttl_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                held = await self.renew()
            except Exception:  # a Redis blip: try again before the TTL runs out
                log.warning("lease renewal failed", extra={"lease_key": self.key}, exc_info=True)
                continue
            if not held:
                log.warning("lease lost", extra={"lease_key": self.key})
                if on_lost is not None:
                    on_lost()
                return


class GameLease(Lease):
    """A game's lease with its fencing number (`rtmanager:game_fence:<game_id>`, INCR
    on every acquisition) and its place in the game's job order (Redis time)."""

    def __init__(self, redis: Redis, game_id: str, ttl_seconds: float) -> None:
        super().__init__(redis, GAME_LEASE_PREFIX + game_id, ttl_seconds)
        self.fence_key = GAME_FENCE_PREFIX + game_id
        self.fence = 0
        self.order_id = ""
        self._acquire = redis.register_script(_ACQUIRE_FENCED)
        self._advance = redis.register_script(_ADVANCE)

    @redis_unavailable
    async def try_acquire(self) -> bool:
        granted = await self._acquire(
            keys=[self.key, self.fence_key], args=[self.token, self.ttl_ms]
        )
        if not granted:
            return False
        fence, now_ms = granted
        self.fence = int(fence)
        self.order_id = order_id_at(int(now_ms))
        return True

    @redis_unavailable
    async def ensure_held(self) -> None:
        if await self.redis.get(self.key) != self.token:
            raise FencedOut(f"lease {self.key} was lost; a newer operation may hold the game")

    @redis_unavailable
    async def advance_past(self, fence: int) -> None:
        if self.fence <= fence:
            self.fence = int(await self._advance(keys=[self.fence_key], args=[fence]))


class GameLeases:
    def __init__(
        self,
        redis: Redis,
        ttl_seconds: float,
        on_conflict: Callable[[], None] | None = None,
    ) -> None:
        self._redis = redis
        self.ttl_seconds = ttl_seconds
        self._on_conflict = on_conflict or (lambda: None)

    @asynccontextmanager
    async def hold(self, game_id: str, *, wait: float = 0.0) -> AsyncIterator[GameLease]:
        """Hold `rtmanager:game_lease:<game_id>` for the body, renewing it meanwhile.

        With `wait` > 0 a busy lease is retried with backoff up to `wait`
        seconds (stream jobs); with 0 it fails at once (REST).
        """
        lease = GameLease(self._redis, game_id, self.ttl_seconds)
        await self._acquire(lease, wait)
        keeper = asyncio.create_task(lease.keep_alive(), name=f"lease:{game_id}")
        try:
            yield lease
        finally:
            await stop_task(keeper)
            # Shielded so that a cancelled operation still frees the game at once.
            with suppress(Exception):
                await asyncio.shield(lease.release())

    @redis_unavailable
    async def is_held(self, game_id: str) -> bool:
        return bool(await self._redis.exists(GAME_LEASE_PREFIX + game_id))

    async def _acquire(self, lease: Lease, wait: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        delay = 0.05
        while not await lease.try_acquire():
            if loop.time() + delay > deadline:
                self._on_conflict()
                raise OperationInProgress(f"another operation holds {lease.key}; try again later")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
