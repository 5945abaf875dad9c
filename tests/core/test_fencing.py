"""Fencing: a holder that lost its game lease writes nothing and touches Docker no more.

Holder A reaches Redis through a proxy that the test partitions, so A's lease
renewals stop and its lease expires while A is paused in the middle of an
operation; holder B then takes the game on a direct connection. When A
resumes, its next Docker change or its record write is refused, and A's
operation ends as `operation_in_progress` with one failure row.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from harness import TcpProxy
from rig import Rig

from rtm_core.domain.errors import FencedOut, OperationInProgress
from rtm_core.domain.vocabulary import OpSource
from rtm_core.lifecycle import Lifecycle
from rtm_core.settings import Settings

V100 = "galaxy/test-engine:1.0.0"
ADMIN = OpSource.ADMIN_REST
LEASE_TTL = 1


class Gate:
    """Pauses the first call of one repository method until opened."""

    def __init__(self, inner: Any, method: str) -> None:
        self._inner = inner
        self._method = method
        self.reached = asyncio.Event()
        self.opened = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if name != self._method or self.reached.is_set():
            return target

        async def gated(*args: Any, **kwargs: Any) -> Any:
            self.reached.set()
            await self.opened.wait()
            return await target(*args, **kwargs)

        return gated


class CountingEngine:
    """Counts the daemon changes made through it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.changes: list[str] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if name not in {"create_and_start", "stop", "remove"}:
            return target

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.changes.append(name)
            return await target(*args, **kwargs)

        return counted


@pytest.fixture
async def proxy(settings: Settings) -> Any:
    assert settings.redis_master_addr is not None
    host, _, port = settings.redis_master_addr.rpartition(":")
    p = TcpProxy(host, int(port))
    await p.start()
    yield p
    p.resume()
    await p.aclose()


def holder_a(
    make_core: Callable[[Settings], Rig], settings: Settings, proxy: TcpProxy, gated: str
) -> tuple[Lifecycle, Gate, CountingEngine]:
    """A lifecycle whose Redis goes through `proxy` and whose `gated` repository
    call waits for the test."""
    rig = make_core(
        settings.model_copy(
            update={"redis_master_addr": proxy.addr, "game_lease_ttl_seconds": LEASE_TTL}
        )
    )
    gate = Gate(rig.repos, gated)
    engine = CountingEngine(rig.docker)
    deps = dataclasses.replace(rig.lifecycle.deps, repos=gate, docker=engine)
    return Lifecycle(deps), gate, engine


async def partition_until_expired(proxy: TcpProxy, core: Rig, game_id: str) -> None:
    proxy.pause()
    while await core.leases.is_held(game_id):
        await asyncio.sleep(0.1)


async def rows(core: Rig, game_id: str) -> list[tuple[str, str, str | None]]:
    return sorted(
        (e.op_kind, e.outcome, e.error_code) for e in await core.repos.operations(game_id)
    )


async def test_a_paused_holder_touches_docker_no_more(
    core: Rig,
    make_core: Callable[[Settings], Rig],
    settings: Settings,
    proxy: TcpProxy,
    game_id: str,
) -> None:
    started = await core.lifecycle.start(game_id, V100, ADMIN)
    assert started.record is not None
    a, gate, engine = holder_a(make_core, settings, proxy, "get_record")

    restart = asyncio.create_task(a.restart(game_id, ADMIN))
    await asyncio.wait_for(gate.reached.wait(), 10)  # A holds the lease, paused
    await partition_until_expired(proxy, core, game_id)
    stopped = await core.lifecycle.stop(game_id, "admin_request", ADMIN)  # B takes the game
    proxy.resume()
    gate.opened.set()

    with pytest.raises(OperationInProgress) as raised:
        await restart
    assert isinstance(raised.value, FencedOut)
    assert raised.value.code == "operation_in_progress"
    assert engine.changes == []  # no stop, remove or create after the lease was lost
    record = await core.repos.get_record(game_id)
    assert record is not None and record.status == "stopped"
    assert record.current_container_id == started.record.current_container_id
    assert stopped.record is not None
    info = await core.docker.inspect(started.record.current_container_id or "")
    assert info is not None and not info.running  # B's stop stands; A never removed it
    assert await rows(core, game_id) == [
        ("restart", "failure", "operation_in_progress"),
        ("start", "success", None),
        ("stop", "success", None),
    ]


async def test_a_stale_record_write_is_refused(
    core: Rig,
    make_core: Callable[[Settings], Rig],
    settings: Settings,
    proxy: TcpProxy,
    game_id: str,
) -> None:
    """A finishes its Docker work, then is paused before committing: B's newer
    write stands and A's commit is refused in the fenced statement."""
    await core.lifecycle.start(game_id, V100, ADMIN)
    a, gate, _engine = holder_a(make_core, settings, proxy, "commit_operation")

    stop = asyncio.create_task(a.stop(game_id, "admin_request", ADMIN))
    await asyncio.wait_for(gate.reached.wait(), 30)  # A stopped the engine, not yet committed
    await partition_until_expired(proxy, core, game_id)
    restarted = await core.lifecycle.start(game_id, V100, ADMIN)  # B: running again
    proxy.resume()
    gate.opened.set()

    with pytest.raises(FencedOut):
        await stop
    assert restarted.record is not None
    record = await core.repos.get_record(game_id)
    assert record is not None and record.status == "running"
    assert record.current_container_id == restarted.record.current_container_id
    info = await core.docker.inspect(record.current_container_id or "")
    assert info is not None and info.running
    assert await rows(core, game_id) == [
        ("start", "success", None),
        ("start", "success", None),
        ("stop", "failure", "operation_in_progress"),
    ]


async def test_the_fence_counter_survives_a_lost_redis_key(core: Rig, game_id: str) -> None:
    """A Redis that lost the fence counter (restart without persistence) would hand
    out fences below the stored one; the lifecycle moves it past the stored fence."""
    await core.lifecycle.start(game_id, V100, ADMIN)
    stored = await core.repos.get_fence(game_id)
    assert stored is not None and stored.fence >= 1
    await core.redis.delete(f"rtmanager:game_fence:{game_id}")

    stopped = await core.lifecycle.stop(game_id, "admin_request", ADMIN)

    assert stopped.record is not None and stopped.record.status == "stopped"
    after = await core.repos.get_fence(game_id)
    assert after is not None and after.fence > stored.fence
