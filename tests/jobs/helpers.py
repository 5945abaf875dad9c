"""Helpers of the rtm-jobs suite: writing jobs as Lobby does, reading results."""

from __future__ import annotations

import re

from harness import stream_entries, wait_for
from redis.asyncio import Redis

from rtm_core.adapters.redis.leases import GAME_LEASE_PREFIX
from rtm_core.settings import Settings

V100 = "galaxy/test-engine:1.0.0"
V101 = "galaxy/test-engine:1.0.1"
REQUESTED_AT_MS = "1714081234567"
RESULT_FIELDS = [
    "game_id",
    "outcome",
    "container_id",
    "engine_endpoint",
    "error_code",
    "error_message",
    # Issue 13, additive: the trace context of the job's span.
    "traceparent",
]
#: W3C trace context: version 00, trace id, parent (span) id, flags.
TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")


def untraced(entry: dict[str, str]) -> dict[str, str]:
    """The entry without its `traceparent`, which must be a valid W3C one (RTM
    writes one on every result and health event while it records traces)."""
    rest = dict(entry)
    traceparent = rest.pop("traceparent", "")
    assert TRACEPARENT.match(traceparent), f"not a W3C traceparent: {traceparent!r}"
    return rest


async def start_job(redis: Redis, settings: Settings, game_id: str, image_ref: str = V100) -> str:
    """redis-cli XADD runtime:start_jobs '*' game_id … image_ref … requested_at_ms …"""
    fields = {"game_id": game_id, "image_ref": image_ref, "requested_at_ms": REQUESTED_AT_MS}
    return str(await redis.xadd(settings.redis_start_jobs_stream, fields))  # type: ignore[arg-type]


async def stop_job(
    redis: Redis, settings: Settings, game_id: str, reason: str = "cancelled"
) -> str:
    """redis-cli XADD runtime:stop_jobs '*' game_id … reason … requested_at_ms …"""
    fields = {"game_id": game_id, "reason": reason, "requested_at_ms": REQUESTED_AT_MS}
    return str(await redis.xadd(settings.redis_stop_jobs_stream, fields))  # type: ignore[arg-type]


async def wait_results(
    redis: Redis, settings: Settings, count: int, timeout: float = 20
) -> list[dict[str, str]]:
    """The first `count` job results, once there are that many."""

    async def enough() -> list[dict[str, str]] | None:
        entries = await stream_entries(redis, settings.redis_job_results_stream)
        return entries if len(entries) >= count else None

    return (await wait_for(enough, timeout=timeout))[:count]  # type: ignore[no-any-return]


async def pending_count(redis: Redis, stream: str, group: str) -> int:
    return int((await redis.xpending(stream, group))["pending"])


async def nothing_pending(redis: Redis, settings: Settings) -> bool:
    """XPENDING of both job streams is empty: every entry read was acknowledged."""
    group = settings.jobs_consumer_group
    streams = (settings.redis_start_jobs_stream, settings.redis_stop_jobs_stream)
    return all([await pending_count(redis, stream, group) == 0 for stream in streams])


async def hold_lease(redis: Redis, game_id: str) -> str:
    """What another replica's (or rtm-api's) running operation on the game looks like."""
    key = GAME_LEASE_PREFIX + game_id
    await redis.set(key, "held-by-test", px=30_000)
    return key
