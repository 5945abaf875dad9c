"""Redis leases: the per-game operation lease (fenced) and the leader lease.

Both are `SET NX PX` with a random token, renewed only by the holder
(compare-and-pexpire) and released only by the holder (compare-and-delete),
so a lease that expired and was taken by someone else is never stolen back.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

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


@dataclass(frozen=True)
class _Scripts:
    renew: AsyncScript
    release: AsyncScript
    acquire_fenced: AsyncScript
    advance: AsyncScript


_REGISTERED: weakref.WeakKeyDictionary[Redis, _Scripts] = weakref.WeakKeyDictionary()


def _scripts(redis: Redis) -> _Scripts:
    """The lease scripts, registered once per client (a pipeline of a thousand
    leases then loads each script once, not once per lease)."""
    scripts = _REGISTERED.get(redis)
    if scripts is None:
        scripts = _REGISTERED[redis] = _Scripts(
            *(redis.register_script(s) for s in (_RENEW, _RELEASE, _ACQUIRE_FENCED, _ADVANCE))
        )
    return scripts


GAME_LEASE_PREFIX = "rtmanager:game_lease:"
GAME_FENCE_PREFIX = "rtmanager:game_fence:"


class Lease:
    """One token on one key."""

    def __init__(self, redis: Redis, key: str, ttl_seconds: float) -> None:
        self.redis = redis
        self.key = key
        self.ttl_ms = int(ttl_seconds * 1000)
        self.token = secrets.token_hex(16)
        scripts = _scripts(redis)
        self._renew = scripts.renew
        self._release = scripts.release

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
        self.game_id = game_id
        self.fence_key = GAME_FENCE_PREFIX + game_id
        self.fence = 0
        self.order_id = ""
        scripts = _scripts(redis)
        self._acquire = scripts.acquire_fenced
        self._advance = scripts.advance

    @redis_unavailable
    async def try_acquire(self) -> bool:
        granted = await self._acquire(
            keys=[self.key, self.fence_key], args=[self.token, self.ttl_ms]
        )
        return self.granted(granted)

    def granted(self, answer: Any) -> bool:
        """Take the acquire script's answer: the fence and Redis time, or nil."""
        if not answer:
            return False
        fence, now_ms = answer
        self.fence = int(fence)
        self.order_id = order_id_at(int(now_ms))
        return True

    async def queue_acquire(self, pipe: Pipeline) -> None:
        await self._acquire(
            keys=[self.key, self.fence_key], args=[self.token, self.ttl_ms], client=pipe
        )

    async def queue_renew(self, pipe: Pipeline) -> None:
        await self._renew(keys=[self.key], args=[self.token, self.ttl_ms], client=pipe)

    async def queue_release(self, pipe: Pipeline) -> None:
        await self._release(keys=[self.key], args=[self.token], client=pipe)

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

    @asynccontextmanager
    async def hold_many(self, game_ids: Sequence[str]) -> AsyncIterator[dict[str, GameLease]]:
        """Try every game's lease once, all in one pipeline; yield those won.

        Each game is still its own `SET NX PX` with its own fence (the same
        script as `hold`), so a batch holds exactly what per-game holds would:
        a game another holder has is left out (counted as a conflict), never
        waited for. Renewals and releases are pipelined the same way.
        """
        leases = [GameLease(self._redis, g, self.ttl_seconds) for g in dict.fromkeys(game_ids)]
        won = await self._acquire_many(leases)
        for _ in range(len(leases) - len(won)):
            self._on_conflict()
        keeper = asyncio.create_task(self._keep_alive_many(won), name="lease:batch")
        try:
            yield {lease.game_id: lease for lease in won}
        finally:
            await stop_task(keeper)
            with suppress(Exception):
                await asyncio.shield(self._release_many(won))

    @redis_unavailable
    async def _acquire_many(self, leases: list[GameLease]) -> list[GameLease]:
        if not leases:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for lease in leases:
            await lease.queue_acquire(pipe)
        granted = await pipe.execute()
        return [lease for lease, g in zip(leases, granted, strict=True) if lease.granted(g)]

    @redis_unavailable
    async def _release_many(self, leases: list[GameLease]) -> None:
        if leases:
            pipe = self._redis.pipeline(transaction=False)
            for lease in leases:
                await lease.queue_release(pipe)
            await pipe.execute()

    async def _keep_alive_many(self, leases: list[GameLease]) -> None:
        """Renew every held lease each third of the TTL, in one pipeline; a lost one
        is logged (its fence keeps a newer holder's write from being undone)."""
        held = list(leases)
        while held:
            await asyncio.sleep(self.ttl_seconds / 3)
            pipe = self._redis.pipeline(transaction=False)
            for lease in held:
                await lease.queue_renew(pipe)
            try:
                renewed = await pipe.execute()
            except Exception:
                log.warning("lease renewal failed", extra={"leases": len(held)}, exc_info=True)
                continue
            for lease, ok in zip(list(held), renewed, strict=True):
                if not ok:
                    log.warning("lease lost", extra={"lease_key": lease.key})
                    held.remove(lease)

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
