"""Leases and migrations against real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from alembic.script import ScriptDirectory
from harness import wait_for
from redis.asyncio import Redis

from rtm_core.adapters.postgres import database as db
from rtm_core.adapters.redis.leases import GameLeases, Lease
from rtm_core.observability import Metrics
from rtm_core.runtime.leader import LeaderElector


async def test_game_lease_is_renewed_while_held_and_released_after(redis: Redis) -> None:
    game = f"lease-{uuid.uuid4().hex[:8]}"
    key = f"rtmanager:game_lease:{game}"
    leases = GameLeases(redis, ttl_seconds=0.6)
    async with leases.hold(game) as lease:
        await asyncio.sleep(1.5)  # well past the TTL: only renewal keeps it
        assert await redis.get(key) == lease.token
    assert await redis.get(key) is None


async def test_release_never_deletes_someone_elses_lease(redis: Redis) -> None:
    key = f"rtmanager:game_lease:{uuid.uuid4().hex[:8]}"
    mine = Lease(redis, key, 5)
    assert await mine.try_acquire()
    await redis.set(key, "theirs")  # ours expired and someone else took it
    assert not await mine.release()
    assert not await mine.renew()
    assert await redis.get(key) == "theirs"
    await redis.delete(key)


async def test_conflicts_are_counted_and_refused(redis: Redis) -> None:
    game = f"lease-{uuid.uuid4().hex[:8]}"
    conflicts: list[int] = []
    leases = GameLeases(redis, ttl_seconds=5, on_conflict=lambda: conflicts.append(1))
    async with leases.hold(game):
        try:
            async with leases.hold(game, wait=0.2):
                raise AssertionError("second holder must not get in")
        except Exception as exc:
            assert getattr(exc, "code", None) == "operation_in_progress"
    assert conflicts == [1]


async def test_leader_lease_fails_over_to_the_standby(redis: Redis) -> None:
    role = f"test-{uuid.uuid4().hex[:8]}"
    metrics = Metrics()
    leading: list[str] = []

    def elector() -> LeaderElector:
        return LeaderElector(redis, role=role, stack="s", ttl_seconds=0.9, metrics=metrics)

    first, second = elector(), elector()
    second.instance = "standby"
    stop_first, stop_second = asyncio.Event(), asyncio.Event()

    async def lead_as(name: str, stop: asyncio.Event) -> None:
        leading.append(name)
        await stop.wait()

    t1 = asyncio.create_task(first.run(stop_first, lambda s: lead_as("first", s)))
    await wait_for(lambda: leading == ["first"])
    t2 = asyncio.create_task(second.run(stop_second, lambda s: lead_as("second", s)))
    await asyncio.sleep(0.5)
    assert leading == ["first"]  # the standby waits
    stop_first.set()  # the leader stops and releases: the standby takes over
    await t1
    await wait_for(lambda: leading == ["first", "second"], timeout=5)
    assert second.is_leader and not first.is_leader
    stop_second.set()
    await t2
    assert await redis.get(f"rtmanager:leader:{role}:s") is None


async def test_concurrent_migrations_both_succeed(postgres_server_dsn: str) -> None:
    name = f"rtm_mig_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(postgres_server_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    dsn = postgres_server_dsn.rsplit("/", 1)[0] + f"/{name}?search_path=rtmanager&sslmode=disable"
    engines = [db.create_engine(dsn, pool_size=1) for _ in range(4)]
    try:
        await asyncio.gather(*(db.migrate(e) for e in engines))
        conn = await asyncpg.connect(postgres_server_dsn.rsplit("/", 1)[0] + f"/{name}")
        version = await conn.fetchval("SELECT version_num FROM rtmanager.alembic_version")
        tables = {
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema='rtmanager'"
            )
        }
        await conn.close()
        head = ScriptDirectory(str(db.migrations_dir())).get_current_head()
        assert version == head
        assert tables >= {"runtime_records", "operation_log", "health_snapshots", "game_fences"}
    finally:
        for e in engines:
            await e.dispose()
        conn = await asyncpg.connect(postgres_server_dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def test_dsn_translation() -> None:
    url, args = db.asyncpg_url("postgres://u:p@h:5432/galaxy?search_path=rtmanager&sslmode=disable")
    assert url == "postgresql+asyncpg://u:p@h:5432/galaxy"
    assert args["server_settings"]["search_path"] == "rtmanager"
    assert args["ssl"] is False
