"""The real `rtm-reconciler` console command, as ops run it: boot order, the
synchronous boot pass before the loops, SIGTERM, and leader failover."""

from __future__ import annotations

import signal
import time

import aiodocker
import httpx
from processes import BOOT_LINES, RtmProcess, free_port, settings_env
from reconciler.helpers import start_engine, vanish
from rig import Rig

from rtm_core.settings import Settings

#: SPEC §2, in this order, for this process.
RECONCILER_BOOT_LINES = [*BOOT_LINES, "reconciler initial pass completed"]
LEASE_TTL = 3
COMMAND = "rtm-reconciler"


def messages_of(proc: RtmProcess) -> list[str]:
    return [line.get("message", "") for line in proc.lines]


def process_env(settings: Settings, port: int) -> dict[str, str]:
    # Long intervals: only a boot pass can have acted on what a test checks.
    return settings_env(
        settings,
        ops_http_addr=f"127.0.0.1:{port}",
        reconcile_interval="1h",
        cleanup_interval="1h",
        leader_lease_ttl_seconds=str(LEASE_TTL),
        shutdown_timeout="10s",
    )


async def test_boot_pass_completes_before_the_loops_start(
    core: Rig, settings: Settings, docker: aiodocker.Docker, game_id: str
) -> None:
    record = await start_engine(core, game_id)
    await vanish(docker, record.current_container_id or "")
    port = free_port()
    proc = RtmProcess(COMMAND, process_env(settings, port))
    try:
        await proc.start()
        await proc.wait_for_message("worker started", count=2)

        messages = messages_of(proc)
        assert [m for m in messages if m in RECONCILER_BOOT_LINES] == RECONCILER_BOOT_LINES
        assert messages.index("reconciler initial pass completed") < messages.index(
            "worker started"
        )
        (initial,) = proc.logged("reconciler initial pass completed")
        assert (initial["disposed"], initial["records"]) == (1, 1)
        after = await core.repos.get_record(game_id)
        assert after is not None and after.status == "removed"

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            assert (await client.get("/readyz")).json() == {"status": "ready"}

        assert await proc.signal(signal.SIGTERM) == 0
        workers = [line["worker"] for line in proc.lines if line["message"] == "worker started"]
        assert sorted(workers) == ["cleanup", "reconciler"]  # exactly one each
        assert "leader lease released" in messages_of(proc)
        assert len(proc.lines) == len(proc.raw), "every stdout line is a JSON log line"
    finally:
        await proc.close()


async def test_the_standby_runs_its_pass_and_takes_over_when_the_leader_dies(
    core: Rig, settings: Settings, docker: aiodocker.Docker, game_id: str
) -> None:
    leader = RtmProcess(COMMAND, process_env(settings, free_port()), name="leader")
    standby = RtmProcess(COMMAND, process_env(settings, free_port()), name="standby")
    try:
        await leader.start()
        await leader.wait_for_message("worker started", count=2)
        await standby.start()
        await standby.wait_for_message("standing by for leader lease")
        # Drift that only the standby's boot pass can find (the leader's next pass is 1 h away).
        record = await start_engine(core, game_id)
        await vanish(docker, record.current_container_id or "")

        killed_at = time.monotonic()
        assert await leader.signal(signal.SIGKILL) == -signal.SIGKILL
        await standby.wait_for_message("reconciler initial pass completed", timeout=LEASE_TTL * 4)
        await standby.wait_for_message("worker started", count=2)

        messages = messages_of(standby)
        assert "worker started" not in messages[: messages.index("leader lease acquired")]
        assert messages.index("reconciler initial pass completed") < messages.index(
            "worker started"
        )
        after = await core.repos.get_record(game_id)
        assert after is not None and after.status == "removed"
        print(
            "takeover after SIGKILL: lease acquired "
            f"{standby.seen_at('leader lease acquired') - killed_at:.2f}s, boot pass completed "
            f"{standby.seen_at('reconciler initial pass completed') - killed_at:.2f}s "
            f"(lease TTL {LEASE_TTL}s)"
        )
        assert await standby.signal(signal.SIGTERM) == 0
    finally:
        await leader.close()
        await standby.close()
