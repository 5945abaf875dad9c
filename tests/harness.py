"""Helpers tests import: read streams, wait for conditions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis


async def stream_entries(redis: Redis, stream: str) -> list[dict[str, str]]:
    """All entries of a stream, oldest first, as plain field dicts."""
    return [fields for _id, fields in await redis.xrange(stream)]


async def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Poll an (async) predicate until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
