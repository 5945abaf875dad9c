"""Automatic restarts on the real stack (issue 12): a crash-looping engine, the
real watcher reporting its deaths on `runtime:health_events`, and the
reconciler's `auto_restart` loop driven one iteration at a time with short
settings. Real Docker, PostgreSQL and Redis; this suite's own database."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from harness import stream_entries, wait_for
from reconciler.helpers import deps_of
from redis.asyncio import Redis
from rig import Rig

from rtm_core.adapters.redis.client import redis_client
from rtm_core.domain.vocabulary import OpSource
from rtm_core.settings import Settings
from rtm_reconciler.auto_restart import AutoRestart
from rtm_watcher.bootstrap import bootstrap as watcher_bootstrap
from rtm_watcher.events_listener import EventsListener
from rtm_watcher.memory import KEY_PREFIX

CRASH_LOOP = "galaxy/test-engine:1.0.7"  # exits 1 a second after every start
CLEAN_EXIT = "galaxy/test-engine:1.0.8"  # exits 0 a second after every start

AUTO_RESTART: dict[str, Any] = {
    "auto_restart": "on",
    "auto_restart_backoff_initial": "1s",
    "auto_restart_backoff_factor": 2,
    "auto_restart_backoff_max": "8s",
    "auto_restart_backoff_jitter": 0,
    "auto_restart_budget": 3,
    "auto_restart_window": "10m",
    "auto_restart_reset_after": "10m",
    "container_stop_timeout_seconds": 1,
}
#: How often the test runs one iteration of the loop.
TICK = 0.2


@pytest.fixture
async def selfheal_settings(
    settings: Settings,
    make_settings: Callable[..., Settings],
    reconciler_dsn: str,
    stack: str,
) -> Settings:
    """The suite's settings (tables emptied) with auto restart on; the
    self-healing tables and the watcher's Redis state of the stack emptied too."""
    conn = await asyncpg.connect(reconciler_dsn.split("?", 1)[0])
    await conn.execute("TRUNCATE rtmanager.crash_history, rtmanager.patch_progress")
    await conn.close()
    healing = make_settings(
        postgres_primary_dsn=reconciler_dsn,
        redis_health_events_stream=settings.redis_health_events_stream,
        notification_intents_stream=settings.notification_intents_stream,
        **AUTO_RESTART,
    )
    client = redis_client(healing)
    keys = [k async for k in client.scan_iter(f"{KEY_PREFIX}*:{stack}")]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    return healing


@pytest.fixture
async def rtm(make_core: Callable[[Settings], Rig], selfheal_settings: Settings) -> Rig:
    return make_core(selfheal_settings)


@pytest.fixture
async def watcher(rtm: Rig) -> AsyncIterator[None]:
    """The real events listener, publishing engine deaths while the test runs."""
    stop = asyncio.Event()
    task = asyncio.ensure_future(
        EventsListener(watcher_bootstrap(rtm.infra, rtm.adapters)).run(stop)
    )
    yield
    stop.set()
    await asyncio.wait_for(task, 15)


def loop_over(rig: Rig) -> AutoRestart:
    """A fresh `auto_restart` loop, as rtm-reconciler's `main` builds it."""
    deps = deps_of(rig)
    assert deps.feed is not None  # auto restart is on
    return AutoRestart(deps, deps.feed)


async def events(redis: Redis, rig: Rig, game_id: str, kind: str) -> list[dict[str, Any]]:
    entries = await stream_entries(redis, rig.settings.redis_health_events_stream)
    return [
        {**e, "details": json.loads(e["details"])}
        for e in entries
        if e["game_id"] == game_id and e["event_type"] == kind
    ]


async def auto_rows(rig: Rig, game_id: str) -> list[Any]:
    rows = reversed(await rig.repos.operations(game_id, 100))
    return [r for r in rows if r.op_source == OpSource.AUTO_RESTART]


def at_ms(ms: str) -> float:
    return int(ms) / 1000


def seconds(moment: datetime) -> float:
    return moment.timestamp()


async def run_until(loop: AutoRestart, done: Callable[[], Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await done():
        assert time.monotonic() < deadline, "timed out"
        await loop.iterate()
        await asyncio.sleep(TICK)


async def test_a_crash_loop_backs_off_then_is_quarantined_across_an_rtm_restart(
    rtm: Rig,
    watcher: None,
    make_core: Callable[[Settings], Rig],
    redis: Redis,
    game_id: str,
) -> None:
    first_loop = loop_over(rtm)
    await first_loop.iterate()  # the loop's consumer group exists before any crash
    await rtm.lifecycle.start(game_id, CRASH_LOOP, OpSource.GM_REST)

    async def restarts(n: int) -> bool:
        return len(await auto_rows(rtm, game_id)) >= n

    await run_until(first_loop, lambda: restarts(2), timeout=40)

    # RTM goes down right after its leader was handed the third crash and
    # before it acknowledged it: a new process, a new loop, over fresh clients.
    async def crashes(n: int) -> bool:
        return len(await events(redis, rtm, game_id, "container_exited")) >= n

    await wait_for(lambda: crashes(3), timeout=15)
    handed = await deps_of(rtm).feed.read(100)  # type: ignore[union-attr]
    assert "container_exited" in [e.event.event_type for e in handed if e.event]
    second_rtm = make_core(rtm.settings)
    second_loop = loop_over(second_rtm)

    async def quarantined() -> bool:
        record = await second_rtm.repos.get_record(game_id)
        return record is not None and record.quarantined

    await run_until(second_loop, quarantined, timeout=60)

    rows = await auto_rows(second_rtm, game_id)
    assert [(r.op_kind, r.outcome, r.image_ref) for r in rows] == [
        ("restart", "success", CRASH_LOOP)
    ] * 3  # exactly the budget, none twice
    exits = await events(redis, rtm, game_id, "container_exited")
    assert len(exits) == 4 and all(e["details"]["exit_code"] == 1 for e in exits)
    # Each restart waited its delay after its crash, and the delays grew: 1 s, 2 s, 4 s.
    delays = [
        seconds(row.started_at) - at_ms(crash["occurred_at_ms"])
        for row, crash in zip(rows, exits, strict=False)
    ]
    for delay, base in zip(delays, (1, 2, 4), strict=True):
        assert base <= delay < base + 1.5, delays
    # Each restart replaced the crashed container with a new one, same image and state.
    assert [r.container_id for r in rows] == [e["container_id"] for e in exits[1:]]

    (quarantine,) = await events(redis, rtm, game_id, "container_quarantined")
    assert quarantine["details"] == {"restarts": 3, "window_seconds": 600, "last_exit_code": 1}
    assert quarantine["container_id"] == exits[-1]["container_id"]
    intents = await stream_entries(redis, rtm.settings.notification_intents_stream)
    (envelope,) = [json.loads(i["envelope"]) for i in intents]
    assert envelope["type"] == "runtime.container_quarantined"
    assert envelope["payload"]["game_id"] == game_id

    # Quarantined: more iterations restart nothing.
    for _ in range(5):
        await second_loop.iterate(sweep=True)
        await asyncio.sleep(TICK)
    assert len(await auto_rows(second_rtm, game_id)) == 3
    report = await second_loop.iterate()
    assert (report.quarantined_games, report.in_backoff) == (1, 0)
    assert rtm.metrics.games_quarantined.get() == 1.0

    # An admin lifts it and restarts the engine: the policy starts over.
    lifted = await second_rtm.lifecycle.lift_quarantine(game_id, OpSource.ADMIN_REST)
    assert lifted.record is not None and not lifted.record.quarantined
    history = await second_rtm.repos.get_crash_history(game_id)
    assert history is not None and history.restart_times == [] and not history.quarantined


async def test_a_clean_exit_is_left_alone_unless_it_counts(
    rtm: Rig,
    watcher: None,
    make_core: Callable[[Settings], Rig],
    docker: Any,
    redis: Redis,
    game_id: str,
) -> None:
    loop = loop_over(rtm)
    await loop.iterate()
    started = await rtm.lifecycle.start(game_id, CLEAN_EXIT, OpSource.GM_REST)
    assert started.record is not None and started.record.current_container_id
    container = await docker.containers.get(started.record.current_container_id)
    await container.wait(timeout=15)
    assert (await container.show())["State"]["ExitCode"] == 0

    for _ in range(5):
        await loop.iterate(sweep=True)
        await asyncio.sleep(TICK)

    assert await auto_rows(rtm, game_id) == []
    assert await rtm.repos.get_crash_history(game_id) is None
    assert await events(redis, rtm, game_id, "container_exited") == []  # the SPEC's rule
    record = await rtm.repos.get_record(game_id)
    assert record is not None and record.current_container_id == container.id

    # The same exit counted (RTMANAGER_AUTO_RESTART_COUNT_CLEAN_EXIT=true): restarted.
    counting = make_core(rtm.settings.model_copy(update={"auto_restart_count_clean_exit": True}))
    counting_loop = loop_over(counting)

    async def restarted() -> bool:
        return len(await auto_rows(counting, game_id)) >= 1

    await run_until(counting_loop, restarted, timeout=20)
    (row,) = (await auto_rows(counting, game_id))[:1]
    assert (row.op_kind, row.outcome, row.previous_image_ref) == ("restart", "success", CLEAN_EXIT)
