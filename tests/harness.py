"""Helpers tests import: read streams, wait for conditions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from redis.asyncio import Redis

from rtm_core.adapters.postgres import database as db


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


@asynccontextmanager
async def fresh_database(server_dsn: str, prefix: str) -> AsyncIterator[str]:
    """A new, migrated database on the server of `server_dsn`, dropped afterwards.

    Yields its DSN as RTM takes it (`?search_path=rtmanager&sslmode=disable`).
    """
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(server_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    dsn = f"{server_dsn.rsplit('/', 1)[0]}/{name}?search_path=rtmanager&sslmode=disable"
    engine = db.create_engine(dsn, pool_size=1)
    await db.migrate(engine)
    await engine.dispose()
    try:
        yield dsn
    finally:
        conn = await asyncpg.connect(server_dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
