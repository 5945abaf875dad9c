"""Leader lease for the single-active processes (watcher, reconciler).

Standbys poll the key, waking when the holder's lease would expire, so a
leader that dies without releasing is replaced within one TTL; the leader
renews it every third of its TTL. When the lease is lost the leader's
workers are stopped before anything else happens, so two replicas never act
at once for longer than one renewal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from contextlib import suppress

from redis.asyncio import Redis

from rtm_core.adapters.redis.leases import Lease
from rtm_core.aio import stop_tasks
from rtm_core.observability import Metrics
from rtm_core.runtime.loops import sleep_until

log = logging.getLogger(__name__)

Lead = Callable[[asyncio.Event], Awaitable[None]]

#: A standby campaigns this long after the holder's lease expires (or vanishes).
STANDBY_RETRY_SECONDS = 0.02


def instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaderElector:
    def __init__(
        self, redis: Redis, *, role: str, stack: str, ttl_seconds: float, metrics: Metrics
    ) -> None:
        self.role = role
        self.key = f"rtmanager:leader:{role}:{stack}"
        self._redis = redis
        self._ttl = ttl_seconds
        self._metrics = metrics
        self.instance = instance_id()
        self.is_leader = False
        self._set_gauge(False)

    def _set_gauge(self, leading: bool) -> None:
        self.is_leader = leading
        self._metrics.leader.set(1.0 if leading else 0.0, role=self.role, replica=self.instance)

    async def run(self, stop: asyncio.Event, lead: Lead) -> None:
        """Campaign until `stop`; while leading, run `lead(stop_leading)`."""
        announced_standby = False
        while not stop.is_set():
            lease = Lease(self._redis, self.key, self._ttl)
            try:
                acquired = await lease.try_acquire()
            except Exception:
                log.warning("leader lease check failed", extra={"role": self.role}, exc_info=True)
                acquired = False
            if not acquired:
                if not announced_standby:
                    log.info("standing by for leader lease", extra={"role": self.role})
                    announced_standby = True
                await sleep_until(stop, await self._standby_wait())
                continue
            announced_standby = False
            await self._lead(stop, lease, lead)

    async def _standby_wait(self) -> float:
        """Sleep until the holder's lease could have expired, at most a third of the TTL,
        so a leader that died without releasing is replaced within one TTL."""
        try:
            remaining_ms = int(await self._redis.pttl(self.key))
        except Exception:
            return self._ttl / 3
        if remaining_ms == -2:  # no holder any more: campaign again at once
            return STANDBY_RETRY_SECONDS
        if remaining_ms < 0:  # a key without expiry: not ours to judge, poll slowly
            return self._ttl / 3
        return min(self._ttl / 3, remaining_ms / 1000 + STANDBY_RETRY_SECONDS)

    async def _lead(self, stop: asyncio.Event, lease: Lease, lead: Lead) -> None:
        self._set_gauge(True)
        log.info("leader lease acquired", extra={"role": self.role, "replica": self.instance})
        stop_leading = asyncio.Event()
        keeper = asyncio.create_task(lease.keep_alive(on_lost=stop_leading.set))
        relay = asyncio.create_task(_relay(stop, stop_leading))
        try:
            await lead(stop_leading)
        finally:
            stop_leading.set()
            await stop_tasks((keeper, relay))
            with suppress(Exception):
                await asyncio.shield(lease.release())
            self._set_gauge(False)
            log.info("leader lease released", extra={"role": self.role})


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()
