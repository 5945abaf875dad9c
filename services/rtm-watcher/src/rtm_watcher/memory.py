"""What the watcher remembers between its iterations, and between leaders.

The inspect and probe workers keep their last-seen state per container in
memory, mirrored into one Redis hash per worker and stack, written only when
it changes. A new leader loads the hash, so it neither re-reports a condition
the previous leader already reported nor restarts a failure count at zero.

Health events the listener may reach twice (replayed Docker events, the
catch-up pass after a reconnect, a new leader) are claimed first with
`SET NX`, so each one is published exactly once whoever reaches it. The
listener's events cursor lives here too, so a new leader resumes the stream
where the last one stopped, and the start of a Docker daemon outage it is
living through, so a new leader carries that outage on (`rtm_watcher.daemon`).

These are the watcher's own coordination keys; the loops reach them only
through `WatcherMemory`, never through the Redis client.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

KEY_PREFIX = "rtmanager:watcher:"
#: How long a claim outlives the container's report (the reconciler settles
#: the record long before).
CLAIM_TTL_SECONDS = 24 * 3600


def watcher_key(stack: str, what: str) -> str:
    return f"{KEY_PREFIX}{what}:{stack}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ContainerMemory:
    """Last-seen state per container id, as JSON objects in one Redis hash."""

    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self.key = key

    async def load(self) -> dict[str, dict[str, Any]]:
        raw = await self._redis.hgetall(self.key)
        loaded: dict[str, dict[str, Any]] = {}
        for field, value in raw.items():
            try:
                loaded[_text(field)] = json.loads(_text(value))
            except ValueError:
                continue  # a corrupt entry only costs its container a fresh start
        return loaded

    async def save(self, container_id: str, state: dict[str, Any]) -> None:
        await self._redis.hset(self.key, container_id, json.dumps(state))

    async def forget(self, container_ids: Iterable[str]) -> None:
        ids = list(container_ids)
        if ids:
            await self._redis.hdel(self.key, *ids)

    async def keep_only(self, states: dict[str, Any], live: Collection[str]) -> None:
        """Drop, here and in `states`, every container not in `live` (replaced,
        stopped or removed engines)."""
        gone = [cid for cid in states if cid not in live]
        for cid in gone:
            del states[cid]
        await self.forget(gone)


class Claims:
    """At most one publisher per (what, container): first `SET NX` wins."""

    def __init__(self, redis: Redis, stack: str) -> None:
        self._redis = redis
        self._prefix = f"{KEY_PREFIX}reported:{stack}:"

    def _key(self, what: str, container_id: str) -> str:
        return f"{self._prefix}{what}:{container_id}"

    async def claim(self, what: str, container_id: str) -> bool:
        key = self._key(what, container_id)
        return bool(await self._redis.set(key, "1", nx=True, ex=CLAIM_TTL_SECONDS))

    async def release(self, what: str, container_id: str) -> None:
        """Give a claim back when its event could not be published, so a retry may."""
        await self._redis.delete(self._key(what, container_id))

    async def claimed(self, what: str, container_id: str) -> bool:
        return bool(await self._redis.exists(self._key(what, container_id)))


class EventsCursor:
    """The Docker event time (ns) the listener handled last, for `since` on resubscribe."""

    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self.key = key

    async def load(self) -> int:
        """0 when none is stored (or it is unreadable): the caller starts at "now"."""
        stored = await self._redis.get(self.key)
        try:
            return int(stored) if stored is not None else 0
        except ValueError:
            return 0

    async def save(self, time_nano: int) -> None:
        await self._redis.set(self.key, str(time_nano))


class OutageMark:
    """When (ms, wall clock) the listener lost the Docker daemon; absent once it caught up."""

    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self.key = key

    async def load(self) -> int | None:
        stored = await self._redis.get(self.key)
        try:
            return int(stored) if stored is not None else None
        except ValueError:
            return None

    async def save(self, began_ms: int) -> None:
        await self._redis.set(self.key, str(began_ms))

    async def clear(self) -> None:
        await self._redis.delete(self.key)


@dataclass(frozen=True)
class WatcherMemory:
    """All the watcher's coordination state of one stack, over one Redis client."""

    cursor: EventsCursor
    claims: Claims
    inspect: ContainerMemory
    probe: ContainerMemory
    outage: OutageMark

    @classmethod
    def over(cls, redis: Redis, stack: str) -> WatcherMemory:
        return cls(
            cursor=EventsCursor(redis, watcher_key(stack, "events_since")),
            claims=Claims(redis, stack),
            inspect=ContainerMemory(redis, watcher_key(stack, "inspect")),
            probe=ContainerMemory(redis, watcher_key(stack, "probe")),
            outage=OutageMark(redis, watcher_key(stack, "docker_outage")),
        )
