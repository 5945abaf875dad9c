"""The real `rtm-reconciler` with RTMANAGER_AUTO_RESTART=on: a third loop, its
catch-up before the boot pass, and a crash loop handled end to end by the
process alone (its sweep sees the deaths; no watcher runs here)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import asyncpg
from harness import wait_for
from processes import RtmProcess, free_port, settings_env
from rig import Rig

from rtm_core.domain.vocabulary import OpSource
from rtm_core.settings import Settings

CRASH_LOOP = "galaxy/test-engine:1.0.7"  # exits 1 a second after every start


async def test_auto_restart_runs_as_a_third_loop_and_quarantines_a_crash_loop(
    core: Rig,
    settings: Settings,
    make_core: Callable[[Settings], Rig],
    reconciler_dsn: str,
    game_id: str,
) -> None:
    conn = await asyncpg.connect(reconciler_dsn.split("?", 1)[0])
    await conn.execute("TRUNCATE rtmanager.crash_history, rtmanager.patch_progress")
    await conn.close()
    env = settings_env(
        settings,
        ops_http_addr=f"127.0.0.1:{free_port()}",
        reconcile_interval="1h",
        cleanup_interval="1h",
        leader_lease_ttl_seconds="3",
        shutdown_timeout="10s",
        inspect_interval="500ms",
        auto_restart="on",
        auto_restart_interval="200ms",
        auto_restart_backoff_initial="1s",
        auto_restart_backoff_jitter="0",
        auto_restart_budget="1",
        container_stop_timeout_seconds="1",
    )
    proc = RtmProcess("rtm-reconciler", env)
    try:
        began = time.monotonic()
        await proc.start()
        await proc.wait_for_message("worker started", count=3)
        print(f"three loops started {time.monotonic() - began:.1f}s after launch")
        messages = [line.get("message", "") for line in proc.lines]
        workers = [line["worker"] for line in proc.lines if line["message"] == "worker started"]
        assert sorted(workers) == ["auto_restart", "cleanup", "reconciler"]
        assert messages.index("auto restart catch-up completed") < messages.index(
            "reconciler initial pass completed"
        )

        await core.lifecycle.start(game_id, CRASH_LOOP, OpSource.GM_REST)

        async def quarantined() -> bool:
            record = await core.repos.get_record(game_id)
            return record is not None and record.quarantined

        began = time.monotonic()
        await wait_for(quarantined, timeout=40)
        print(f"crash loop quarantined {time.monotonic() - began:.1f}s after its start")
        rows = [r for r in await core.repos.operations(game_id) if r.op_source == "auto_restart"]
        assert [(r.op_kind, r.outcome) for r in rows] == [("restart", "success")]
        assert proc.logged("engine quarantined: restart budget spent")
        assert await proc.signal(signal.SIGTERM) == 0
    finally:
        await proc.close()
