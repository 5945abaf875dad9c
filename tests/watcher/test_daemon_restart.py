"""The Docker daemon is not the engine (issue 10 §4), against a real daemon restart.

The watcher's three loops and the reconciler run over a private dockerd
(`tests/dockerd.py`), which the tests stop with `kill -TERM` and start again
with the same flags, as an operator restarts the shared one. PostgreSQL and
Redis are the shared ones.

- Without live-restore the daemon stops every engine on its way down: each
  death is reported once, `container_exited` with its real exit code (none
  for an engine that exits 0 on SIGTERM), never `inspect_unhealthy` or
  `probe_failed`; the reconciler then marks each record `stopped` once.
- With live-restore the engines survive: nothing at all is reported.
- While the daemon is down readiness names docker, and the events cursor
  stays where the last real event left it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from dockerd import PrivateDockerd, private_dockerd
from harness import wait_for
from redis.asyncio import Redis
from rig import Rig
from watcher.conftest import Worker
from watcher.helpers import ENGINE, health_events, start_engine, watcher_deps

from rtm_core.runtime.readiness import first_failure
from rtm_core.settings import Settings
from rtm_reconciler.bootstrap import bootstrap as reconciler_bootstrap
from rtm_reconciler.reconciler import PassReport, Reconciler
from rtm_watcher.bootstrap import WatcherDeps
from rtm_watcher.events_listener import EventsListener
from rtm_watcher.inspect_worker import InspectWorker
from rtm_watcher.probe_worker import ProbeWorker

pytestmark = pytest.mark.daemon

Background = Callable[[Worker], asyncio.Event]

#: The test engine with no SIGTERM handler: it dies of the signal (exit 143),
#: as an engine without graceful shutdown does. The plain test engine traps
#: SIGTERM and exits 0.
ABRUPT_ENGINE = "galaxy/test-engine-abrupt:1.0.0"
ABRUPT_DOCKERFILE = f"""FROM {ENGINE}
ENTRYPOINT ["/bin/nc", "-ll", "-p", "8080", "-e", "/engine/http"]
"""
SIGTERM_EXIT = 143
NETWORK = "rtm-td-engines"
#: Enough watcher cycles (0.3 s each, probe threshold 3) for a wrong report to show.
QUIET_SPELL_SECONDS = 2.0
BACK = "docker daemon back; engines classified from their state"
LOST = "docker events stream lost; reconnecting"


@pytest.fixture(scope="module")
async def dockerd(engine_images: str) -> AsyncIterator[PrivateDockerd]:
    async with private_dockerd() as daemon:
        await daemon.load_image(ENGINE)
        await daemon.build(ABRUPT_ENGINE, ABRUPT_DOCKERFILE)
        await daemon.create_network(NETWORK)
        yield daemon


@pytest.fixture(autouse=True)
async def _clean_daemon(dockerd: PrivateDockerd) -> AsyncIterator[None]:
    yield
    if dockerd.pid is None:  # a test that failed with the daemon down
        await dockerd.start()
    await dockerd.remove_containers()


@dataclass
class Watched:
    """A rig on the private daemon and the watcher's loops running over it."""

    rig: Rig
    deps: WatcherDeps
    listener: EventsListener


async def watched(
    dockerd: PrivateDockerd,
    make_core: Callable[[Settings], Rig],
    settings: Settings,
    background: Background,
    *,
    live_restore: bool,
    workers: bool = True,
) -> Watched:
    if dockerd.live_restore != live_restore:
        await dockerd.restart(live_restore=live_restore)
    rig = make_core(
        settings.model_copy(update={"docker_host": dockerd.host, "docker_network": NETWORK})
    )
    deps = watcher_deps(rig)
    listener = EventsListener(deps)
    background(listener.run)
    if workers:
        background(InspectWorker(deps).run)
        background(ProbeWorker(deps).run)
    await wait_for(lambda: deps.daemon.settled)
    return Watched(rig, deps, listener)


async def probed_healthy(rig: Rig, game_id: str) -> bool:
    snapshot = await rig.repos.get_snapshot(game_id)
    return snapshot is not None and (snapshot.source, snapshot.status) == ("probe", "healthy")


async def event_types(redis: Redis, rig: Rig, game_id: str) -> list[str]:
    return [e["event_type"] for e in await health_events(redis, rig, game_id)]


async def reconcile(rig: Rig) -> PassReport:
    return await Reconciler(
        reconciler_bootstrap(rig.infra, rig.adapters), asyncio.Event()
    ).reconcile()


def logged(caplog: pytest.LogCaptureFixture, message: str) -> int:
    return sum(r.getMessage() == message for r in caplog.records)


async def test_a_restart_without_live_restore_reports_each_engine_death_once(
    dockerd: PrivateDockerd,
    make_core: Callable[[Settings], Rig],
    settings: Settings,
    redis: Redis,
    background: Background,
    game_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rtm_watcher")
    w = await watched(dockerd, make_core, settings, background, live_restore=False)
    abrupt = [f"{game_id}-abrupt-{i}" for i in range(2)]
    graceful = f"{game_id}-graceful"
    games = [*abrupt, graceful]
    containers = {g: await start_engine(w.rig, g, ABRUPT_ENGINE) for g in abrupt}
    containers[graceful] = await start_engine(w.rig, graceful)
    for game in games:
        await wait_for(lambda game=game: probed_healthy(w.rig, game))

    await dockerd.restart()
    await wait_for(lambda: logged(caplog, BACK), timeout=30)
    await asyncio.sleep(QUIET_SPELL_SECONDS)

    for game in abrupt:
        assert await event_types(redis, w.rig, game) == ["container_started", "container_exited"]
        (exited,) = await health_events(redis, w.rig, game, "container_exited")
        assert exited["container_id"] == containers[game]
        assert exited["details"] == {"exit_code": SIGTERM_EXIT, "oom": False}
    # Exit 0 is no `container_exited` (SPEC §8): the reconciler's row is its report.
    assert await event_types(redis, w.rig, graceful) == ["container_started"]
    for game, container_id in containers.items():
        info = await w.rig.docker.inspect(container_id)
        assert info is not None and not info.running
        assert info.exit_code == (0 if game == graceful else SIGTERM_EXIT)
    # A second catch-up finds every death claimed already.
    assert await w.listener.catch_up() == 0

    report = await reconcile(w.rig)
    assert (report.observed_exited, report.disposed, report.adopted) == (3, 0, 0)
    for game in games:
        record = await w.rig.repos.get_record(game)
        assert record is not None and record.status == "stopped"
        kinds = [op.op_kind for op in await w.rig.repos.operations(game)]
        assert kinds == ["reconcile_observed_exited", "start"]

    report = await reconcile(w.rig)
    assert (report.observed_exited, report.disposed, report.adopted) == (0, 0, 0)
    assert await w.listener.catch_up() == 0
    await asyncio.sleep(QUIET_SPELL_SECONDS / 2)
    for game in abrupt:
        assert await event_types(redis, w.rig, game) == ["container_started", "container_exited"]
    assert await event_types(redis, w.rig, graceful) == ["container_started"]
    for game in games:
        assert len(await w.rig.repos.operations(game)) == 2


async def test_engines_that_survive_a_live_restore_restart_yield_nothing(
    dockerd: PrivateDockerd,
    make_core: Callable[[Settings], Rig],
    settings: Settings,
    redis: Redis,
    background: Background,
    game_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rtm_watcher")
    w = await watched(dockerd, make_core, settings, background, live_restore=True)
    games = {f"{game_id}-abrupt": ABRUPT_ENGINE, f"{game_id}-graceful": ENGINE}
    containers = {g: await start_engine(w.rig, g, image) for g, image in games.items()}
    started = {}
    for game, container_id in containers.items():
        await wait_for(lambda game=game: probed_healthy(w.rig, game))
        info = await w.rig.docker.inspect(container_id)
        assert info is not None
        started[game] = info.started_at

    await dockerd.restart()
    await wait_for(lambda: logged(caplog, BACK), timeout=30)
    await asyncio.sleep(QUIET_SPELL_SECONDS)

    for game, container_id in containers.items():
        assert await event_types(redis, w.rig, game) == ["container_started"]
        info = await w.rig.docker.inspect(container_id)
        assert info is not None and info.running and info.started_at == started[game]
        record = await w.rig.repos.get_record(game)
        assert record is not None and record.status == "running"
        await wait_for(lambda game=game: probed_healthy(w.rig, game))
    report = await reconcile(w.rig)
    assert (report.observed_exited, report.disposed, report.adopted) == (0, 0, 0)


async def test_readiness_names_docker_and_the_cursor_stays_while_it_is_down(
    dockerd: PrivateDockerd,
    make_core: Callable[[Settings], Rig],
    settings: Settings,
    background: Background,
    game_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rtm_watcher")
    w = await watched(dockerd, make_core, settings, background, live_restore=True, workers=False)
    memory = w.deps.memory
    await start_engine(w.rig, game_id)
    cursor = await wait_for(memory.cursor.load)  # the engine's create/start events
    await asyncio.sleep(0.5)
    cursor = await memory.cursor.load()

    await dockerd.stop()
    failure = await first_failure(w.rig.infra)
    assert failure is not None and failure.startswith("docker unavailable"), failure
    await wait_for(lambda: logged(caplog, LOST) >= 3, timeout=15)  # reconnects keep failing
    assert not w.deps.daemon.settled
    assert await memory.outage.load() is not None  # a new leader would carry the outage on
    assert await memory.cursor.load() == cursor

    await dockerd.start()
    await wait_for(lambda: logged(caplog, BACK), timeout=30)
    assert await first_failure(w.rig.infra) is None
    assert await memory.outage.load() is None
    assert await memory.cursor.load() == cursor
    # A real event moves it on.
    await start_engine(w.rig, f"{game_id}-after")
    await wait_for(lambda: _moved_past(memory.cursor.load, cursor))


async def _moved_past(load: Callable[[], Awaitable[int]], cursor: int) -> bool:
    return await load() > cursor
