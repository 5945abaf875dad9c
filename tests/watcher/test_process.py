"""Two real `rtm-watcher` processes: one leads, one stands by; SIGKILL the leader.

Settings go in as `RTMANAGER_*` variables (leader lease TTL 3 s); the
processes' JSON stdout is read as it comes.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from harness import wait_for
from processes import RtmProcess, free_port, settings_env
from redis.asyncio import Redis
from rig import Rig
from watcher.helpers import control, health_events, start_engine, wait_for_event

from rtm_core.settings import Settings

WORKERS = ("events_listener", "inspect_worker", "probe_worker")


def watcher(settings: Settings, name: str) -> RtmProcess:
    env = settings_env(settings, ops_http_addr=f"127.0.0.1:{free_port()}")
    return RtmProcess("rtm-watcher", env, name=name)


async def once_each(redis: Redis, core: Rig, game_id: str) -> list[str]:
    """Event types of a game, asserting none came twice."""
    types = [e["event_type"] for e in await health_events(redis, core, game_id)]
    assert len(types) == len(set(types)), (game_id, types)
    return types


async def test_a_standby_takes_over_and_nothing_is_reported_twice(
    core: Rig, settings: Settings, redis: Redis, state_dir: Callable[[str], Path], game_id: str
) -> None:
    early, late = f"{game_id}-early", f"{game_id}-late"
    await start_engine(core, early)
    await start_engine(core, late)
    replicas = [watcher(settings, "watcher-a"), watcher(settings, "watcher-b")]
    ttl = settings.leader_lease_ttl_seconds
    try:
        for replica in replicas:
            await replica.start()
        await wait_for(lambda: [r for r in replicas if r.logged("leader lease acquired")], 60)
        leader, standby = sorted(replicas, key=lambda r: not r.logged("leader lease acquired"))
        for name in WORKERS:
            await leader.wait_for_message("worker started", worker=name)
        await standby.wait_for_message("standing by for leader lease")
        assert not standby.logged("leader lease acquired")

        control(state_dir(early), "exit_code", "3")
        await wait_for_event(redis, core, early, "container_exited")

        assert leader.proc is not None
        killed_at = time.monotonic()
        assert await leader.signal(signal.SIGKILL) == -signal.SIGKILL
        await standby.wait_for_message("leader lease acquired", timeout=2 * ttl + 5)
        takeover = standby.seen_at("leader lease acquired") - killed_at
        print(f"\nwatcher takeover after SIGKILL of the leader: {takeover:.2f}s (lease TTL {ttl}s)")
        for name in WORKERS:
            await standby.wait_for_message("worker started", worker=name)
        async with httpx.AsyncClient(trust_env=False) as http:
            ops = f"http://{standby.env['RTMANAGER_OPS_HTTP_ADDR']}"
            ready = await http.get(f"{ops}/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})

        control(state_dir(late), "exit_code", "4")
        event = await wait_for_event(redis, core, late, "container_exited")
        assert event["details"] == {"exit_code": 4, "oom": False}
        # The new leader has since inspected and probed both dead engines.
        await wait_for_event(redis, core, late, "inspect_unhealthy")
        await wait_for_event(redis, core, late, "probe_failed")
        assert await standby.signal(signal.SIGTERM) == 0
    finally:
        for replica in replicas:
            await replica.close()

    for game in (early, late):
        types = await once_each(redis, core, game)
        assert {"container_exited", "inspect_unhealthy", "probe_failed"} <= set(types), types
    for name in WORKERS:
        assert len(standby.logged("worker started", worker=name)) == 1
    assert standby.logged("leader lease released")
    assert standby.logged("shutdown complete")
