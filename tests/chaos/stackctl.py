"""The compose stack as the drill needs it beyond tests/integration/compose.py:
several replicas of a service, a Redis client that follows the `redis`
container across restarts, leader leases, per-consumer pending counts, logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import aiodocker
import aiohttp
import httpx
from integration.compose import (
    JOBS_GROUP,
    RTM_SERVICES,
    START_JOBS,
    STOP_JOBS,
    ComposeStack,
    open_stack,
    parse_duration,
)
from redis.exceptions import RedisError

T = TypeVar("T")

#: Anything that means "the other side is away right now".
TRANSIENT = (
    RedisError,
    OSError,
    asyncio.TimeoutError,
    aiodocker.DockerError,
    aiohttp.ClientError,
    httpx.HTTPError,
)
#: One Redis command; a blocking read asks for less.
REDIS_CALL_TIMEOUT = 5.0


class Unavailable(Exception):
    """A retried call still failing when its bound passed."""


@dataclass(frozen=True)
class StackSettings:
    stack: str
    claim_idle: float
    lease_ttl: float
    reconcile_interval: float
    job_deadline: float
    max_deliveries: int

    @classmethod
    def of(cls, env: dict[str, str]) -> StackSettings:
        return cls(
            stack=env.get("RTMANAGER_STACK", "default"),
            claim_idle=parse_duration(env.get("RTMANAGER_JOBS_CLAIM_IDLE", "60s")),
            lease_ttl=float(env.get("RTMANAGER_GAME_LEASE_TTL_SECONDS", "60")),
            reconcile_interval=parse_duration(env.get("RTMANAGER_RECONCILE_INTERVAL", "5m")),
            job_deadline=parse_duration(env.get("RTMANAGER_JOBS_DEADLINE", "5m")),
            max_deliveries=int(env.get("RTMANAGER_JOBS_MAX_DELIVERIES", "5")),
        )


class Stack:
    def __init__(self, compose: ComposeStack) -> None:
        self.compose = compose
        self.settings = StackSettings.of(compose.env)
        self._reconnected = 0.0

    @property
    def docker(self) -> aiodocker.Docker:
        return self.compose.docker

    # ------------------------------------------------------------ containers

    async def replicas(self, service: str) -> list[dict[str, Any]]:
        """`docker inspect` of every container of `service`, oldest name first."""
        found = [await c.show() for c in await self.compose.containers(service)]
        return sorted(found, key=lambda info: info["Name"])

    @staticmethod
    def healthy(info: dict[str, Any]) -> bool:
        state = info["State"]
        health = state.get("Health", {}).get("Status")
        return bool(state["Running"] and not state.get("Paused") and health in (None, "healthy"))

    async def unhealthy(self, replicas: int) -> list[str]:
        """What keeps the stack from being whole: services (and replica counts) not
        healthy. Empty when every RTM service, PostgreSQL and Redis is."""
        wrong = []
        for service in ("postgres", "redis", *RTM_SERVICES):
            try:
                infos = await self.replicas(service)
            except TRANSIENT as exc:
                return [f"docker: {exc}"]
            want = replicas if service == "rtm-jobs" else 1
            good = [i for i in infos if self.healthy(i)]
            if len(good) != want or len(infos) != want:
                wrong.append(f"{service} {len(good)}/{want} healthy")
        return wrong

    async def wait_whole(self, replicas: int, timeout: float) -> float | None:
        """Seconds until every service is healthy, or None when `timeout` passed."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if not await self.unhealthy(replicas):
                return time.monotonic() - started
            await asyncio.sleep(0.5)
        return None

    # ------------------------------------------------------------ Redis

    async def redis(self, call: Callable[[Any], Awaitable[T]], timeout: float = 0.0) -> T:
        """One Redis call on the stack's Redis, bounded; on failure the client is
        replaced (the `redis` container may have come back on another address)."""
        try:
            return await asyncio.wait_for(call(self.compose.redis), timeout or REDIS_CALL_TIMEOUT)
        except TRANSIENT:
            await self.reconnect()
            raise

    async def reconnect(self) -> None:
        if time.monotonic() - self._reconnected < 1.0:
            return
        self._reconnected = time.monotonic()
        with contextlib.suppress(*TRANSIENT, AssertionError, KeyError, IndexError):
            fresh = await asyncio.wait_for(open_stack(self.docker), REDIS_CALL_TIMEOUT)
            await fresh.api.aclose()
            old, self.compose.redis = self.compose.redis, fresh.redis
            with contextlib.suppress(*TRANSIENT):
                await old.aclose()

    async def retry(self, call: Callable[[], Awaitable[T]], bound: float, pause: float = 0.5) -> T:
        """`call` again until it succeeds or `bound` seconds passed (then Unavailable)."""
        started = time.monotonic()
        while True:
            try:
                return await asyncio.wait_for(call(), REDIS_CALL_TIMEOUT * 2)
            except TRANSIENT as exc:
                await self.reconnect()
                if time.monotonic() - started > bound:
                    raise Unavailable(f"{type(exc).__name__}: {exc}") from exc
                await asyncio.sleep(pause)

    async def last_id(self, stream: str) -> str:
        found = await self.redis(lambda r: r.xrevrange(stream, count=1))
        return str(found[0][0]) if found else "0-0"

    async def backlog(self) -> tuple[dict[str, int], dict[str, int]]:
        """(pending, lag) of RTM's group per job stream."""
        pending, lag = {}, {}
        for stream in (START_JOBS, STOP_JOBS):
            p, lg = await self.redis(partial(_group_backlog, stream=stream))
            pending[stream], lag[stream] = p, lg
        return pending, lag

    async def consumer_pending(self) -> dict[str, int]:
        """Pending entries per consumer (hostname of an rtm-jobs replica), both streams."""
        out: dict[str, int] = {}
        for stream in (START_JOBS, STOP_JOBS):
            for c in await self.redis(partial(_consumers, stream=stream)):
                out[str(c["name"])] = out.get(str(c["name"]), 0) + int(c["pending"])
        return out

    async def leader_token(self, role: str) -> str | None:
        key = f"rtmanager:leader:{role}:{self.settings.stack}"
        value = await self.redis(lambda r: r.get(key))
        return None if value is None else str(value)

    # ------------------------------------------------------------ logs

    async def log_messages(self, service: str, since: float) -> list[tuple[float, str, str]]:
        """(time, level, message) of every JSON log line of the service's containers
        written since `since` (epoch seconds), in no particular order."""
        lines: list[tuple[float, str, str]] = []
        for container in await self.compose.containers(service):
            raw = await container.log(stdout=True, stderr=True, since=int(since), timestamps=True)
            for line in "".join(raw).splitlines():
                stamp, _, text = line.partition(" ")
                try:
                    entry = json.loads(text)
                except ValueError:
                    continue
                if isinstance(entry, dict) and "message" in entry:
                    # The first line: a message may carry a traceback or a repr.
                    message = str(entry["message"]).splitlines()[0] if entry["message"] else ""
                    lines.append((_docker_time(stamp), str(entry.get("level", "")), message))
        return lines


async def _consumers(redis: Any, stream: str) -> list[dict[str, Any]]:
    return list(await redis.xinfo_consumers(stream, JOBS_GROUP))


async def pending_rows(redis: Any, stream: str) -> list[dict[str, Any]]:
    return list(await redis.xpending_range(stream, JOBS_GROUP, min="-", max="+", count=10_000))


async def _group_backlog(redis: Any, stream: str) -> tuple[int, int]:
    try:
        groups = await redis.xinfo_groups(stream)
    except RedisError as exc:
        if "no such key" in str(exc).lower():
            return 0, 0
        raise
    for info in groups:
        if info["name"] == JOBS_GROUP:
            return int(info["pending"]), int(info.get("lag") or 0)
    return 0, 0


def _docker_time(stamp: str) -> float:
    """Docker's RFC 3339 log timestamp (nanoseconds) as epoch seconds."""
    from datetime import datetime

    head, _, frac = stamp.rstrip("Z").partition(".")
    try:
        base = datetime.fromisoformat(head + "+00:00").timestamp()
    except ValueError:
        return 0.0
    return base + float("0." + (frac[:6] or "0"))


async def connect() -> Stack:
    docker = aiodocker.Docker()
    try:
        return Stack(await open_stack(docker))
    except BaseException:
        await docker.close()
        raise


async def close(stack: Stack) -> None:
    with contextlib.suppress(*TRANSIENT):
        await stack.compose.api.aclose()
    with contextlib.suppress(*TRANSIENT):
        await stack.compose.redis.aclose()
    await stack.docker.close()
