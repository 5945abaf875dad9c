"""The Docker events listener against real Docker, PostgreSQL and Redis.

What a consumer of `runtime:health_events` would check: the entry, its
details, that it comes once, and the snapshot row.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import aiodocker
import pytest
from harness import wait_for
from redis.asyncio import Redis
from rig import Rig
from watcher.conftest import Worker
from watcher.helpers import (
    ENGINE,
    LIMITED_ENGINE,
    DockerSocketProxy,
    container_state,
    control,
    health_events,
    start_engine,
    wait_for_event,
    wait_until_exited,
    watcher_deps,
)

from rtm_core.domain.records import RuntimeRecord
from rtm_core.domain.vocabulary import LABEL_GAME_ID, LABEL_OWNER, LABEL_STACK, OWNER, OpSource
from rtm_core.settings import Settings
from rtm_watcher.events_listener import EventsListener

Background = Callable[[Worker], asyncio.Event]
StateDir = Callable[[str], Path]


async def exit_and_wait(
    redis: Redis, core: Rig, state_dir: StateDir, game_id: str, code: int = 3
) -> dict:
    """Make an engine exit with `code`; returns its `container_exited` event. Events
    are handled in order, so everything the listener saw before is settled too."""
    control(state_dir(game_id), "exit_code", str(code))
    return await wait_for_event(redis, core, game_id, "container_exited")


async def test_a_nonzero_exit_is_container_exited_once(
    core: Rig, redis: Redis, background: Background, state_dir: StateDir, game_id: str
) -> None:
    container_id = await start_engine(core, game_id)
    listener = EventsListener(watcher_deps(core))
    stop = background(listener.run)
    before_ms = time.time_ns() // 1_000_000

    event = await exit_and_wait(redis, core, state_dir, game_id, 3)
    assert event["container_id"] == container_id
    assert event["details"] == {"exit_code": 3, "oom": False}
    assert before_ms <= int(event["occurred_at_ms"]) <= time.time_ns() // 1_000_000
    # Issue 13: the listener's publish span, as W3C trace context.
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", event["traceparent"])
    snapshot = await core.repos.get_snapshot(game_id)
    assert snapshot is not None
    assert (snapshot.status, snapshot.source) == ("container_exited", "docker_event")
    assert (snapshot.container_id, snapshot.details) == (container_id, event["details"])

    # A new leader: replays Docker's buffer from the stored cursor and runs the
    # catch-up pass over the still-`running` record. Neither repeats the event.
    stop.set()
    background(EventsListener(watcher_deps(core)).run)
    sentinel = f"{game_id}-sentinel"
    await start_engine(core, sentinel)
    await exit_and_wait(redis, core, state_dir, sentinel)
    assert len(await health_events(redis, core, game_id, "container_exited")) == 1


async def test_an_oom_kill_is_one_container_oom(
    core: Rig, redis: Redis, background: Background, state_dir: StateDir, game_id: str
) -> None:
    container_id = await start_engine(core, game_id, LIMITED_ENGINE)
    listener = EventsListener(watcher_deps(core))
    stop = background(listener.run)
    control(state_dir(game_id), "eat_memory")

    event = await wait_for_event(redis, core, game_id, "container_oom")
    assert (event["container_id"], event["details"]) == (container_id, {"exit_code": 137})
    # The `die` that follows Docker's `oom` is folded into that one event, and
    # the OOM-survival check scheduled by the `oom` finds the engine dead.
    await wait_for(lambda: listener.pending_checks == 0)
    stop.set()
    events = await health_events(redis, core, game_id)
    assert [e["event_type"] for e in events] == ["container_started", "container_oom"]
    snapshot = await core.repos.get_snapshot(game_id)
    assert snapshot is not None and snapshot.status == "container_oom"


async def test_an_oom_kill_the_engine_survives_is_one_container_oom(
    core: Rig, redis: Redis, docker: aiodocker.Docker, background: Background, game_id: str
) -> None:
    """A process inside the engine is OOM-killed, the engine lives on: Docker sends
    `oom` and no `die`; the event carries the exit code inspect shows (0)."""
    container_id = await start_engine(core, game_id, LIMITED_ENGINE)
    listener = EventsListener(watcher_deps(core))
    background(listener.run)
    container = await docker.containers.get(container_id)
    hog = await container.exec(cmd=["sh", "-c", "x=xxxxxxxxxxxxxxxx; while :; do x=$x$x; done"])
    await hog.start(detach=True)

    event = await wait_for_event(redis, core, game_id, "container_oom")
    assert (event["container_id"], event["details"]) == (container_id, {"exit_code": 0})
    assert (await container_state(docker, container_id))["Running"]
    assert [e["event_type"] for e in await health_events(redis, core, game_id)] == [
        "container_started",
        "container_oom",
    ]


async def test_exits_rtm_causes_are_silent(
    core: Rig, redis: Redis, background: Background, state_dir: StateDir, game_id: str
) -> None:
    """Stop timeout 0: Docker SIGKILLs, so each of these exits is a non-zero `die`
    that only the lifecycle's expected-exit mark keeps quiet."""
    games = {op: f"{game_id}-{op}" for op in ("stop", "restart", "patch", "cleanup")}
    for game in games.values():
        await start_engine(core, game)
    background(EventsListener(watcher_deps(core)).run)

    await core.lifecycle.stop(games["stop"], "admin_request", OpSource.GM_REST)
    await core.lifecycle.restart(games["restart"], OpSource.ADMIN_REST)
    await core.lifecycle.patch(games["patch"], "galaxy/test-engine:1.0.1", OpSource.ADMIN_REST)
    await core.lifecycle.stop(games["cleanup"], "finished", OpSource.GM_REST)
    await core.lifecycle.cleanup(games["cleanup"], OpSource.ADMIN_REST)

    sentinel = f"{game_id}-sentinel"
    await start_engine(core, sentinel)
    await exit_and_wait(redis, core, state_dir, sentinel)
    for game in games.values():
        types = [e["event_type"] for e in await health_events(redis, core, game)]
        assert "container_exited" not in types and "container_oom" not in types, (game, types)


async def test_an_engine_dying_before_its_start_committed_is_reported(
    core: Rig,
    redis: Redis,
    docker: aiodocker.Docker,
    background: Background,
    stack: str,
    game_id: str,
) -> None:
    """The `die` can arrive while the start that created the container still holds
    the game's lease and has not yet pointed the record at it. The listener
    decides once the lease is released. The start is played by hand here, so
    the order is certain: lease, container dies, record, release."""
    listener = EventsListener(watcher_deps(core))
    background(listener.run)
    async with core.leases.hold(game_id):  # the start in flight
        labels = {LABEL_OWNER: OWNER, LABEL_STACK: stack, LABEL_GAME_ID: game_id}
        container = await docker.containers.run(
            {"Image": ENGINE, "Labels": labels, "Env": ["ENGINE_EXIT_CODE=2"]},
            name=f"galaxy-game-{game_id}",
        )
        await wait_until_exited(docker, container.id)
        await wait_for(lambda: listener.pending_checks == 1)
        assert await health_events(redis, core, game_id) == []

        now = datetime.now(UTC)
        await core.repos.save_record(
            RuntimeRecord(
                game_id=game_id,
                status="running",
                current_container_id=container.id,
                current_image_ref=ENGINE,
                started_at=now,
                last_op_at=now,
            )
        )
    event = await wait_for_event(redis, core, game_id, "container_exited")
    assert (event["container_id"], event["details"]) == (
        container.id,
        {"exit_code": 2, "oom": False},
    )


async def test_catch_up_reports_a_death_no_event_announced(
    core: Rig, redis: Redis, docker: aiodocker.Docker, state_dir: StateDir, game_id: str
) -> None:
    """No listener was running when the engine died (a daemon restart, no leader):
    the catch-up pass reports it from inspect, once."""
    container_id = await start_engine(core, game_id)
    control(state_dir(game_id), "exit_code", "5")
    state = await wait_until_exited(docker, container_id)

    listener = EventsListener(watcher_deps(core))
    assert await listener.catch_up() == 1
    assert await listener.catch_up() == 0
    assert await EventsListener(watcher_deps(core)).catch_up() == 0
    (event,) = await health_events(redis, core, game_id, "container_exited")
    assert event["details"] == {"exit_code": 5, "oom": False}
    finished = datetime.fromisoformat(state["FinishedAt"][:26] + "+00:00")
    assert abs(int(event["occurred_at_ms"]) - finished.timestamp() * 1000) < 2


async def test_the_listener_survives_a_broken_stream_and_catches_up(
    core: Rig,
    make_core: Callable[[Settings], Rig],
    settings: Settings,
    redis: Redis,
    docker: aiodocker.Docker,
    background: Background,
    state_dir: StateDir,
    game_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = DockerSocketProxy()
    await proxy.restore()
    watcher_core = make_core(settings.model_copy(update={"docker_host": proxy.url}))
    container_id = await start_engine(core, game_id)
    try:
        with caplog.at_level(logging.INFO, logger="rtm_watcher"):
            background(EventsListener(watcher_deps(watcher_core)).run)
            await wait_for(lambda: _logged(caplog, "worker started"))
            await proxy.cut()  # the stream breaks, reconnects are refused meanwhile
            await wait_for(lambda: _logged(caplog, "docker events stream lost; reconnecting"))
            control(state_dir(game_id), "exit_code", "3")
            await wait_until_exited(docker, container_id)
            await proxy.restore()

            event = await wait_for_event(redis, core, game_id, "container_exited")
            assert event["details"] == {"exit_code": 3, "oom": False}
            # The stream works again: a later death arrives as an event.
            sentinel = f"{game_id}-sentinel"
            await start_engine(core, sentinel)
            await exit_and_wait(redis, core, state_dir, sentinel)
        assert len(await health_events(redis, core, game_id, "container_exited")) == 1
    finally:
        await proxy.cut()


def _logged(caplog: pytest.LogCaptureFixture, message: str) -> bool:
    return any(r.getMessage() == message for r in caplog.records)
