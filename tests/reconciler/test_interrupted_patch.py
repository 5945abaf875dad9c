"""A health-gated patch whose RTM dies mid-gate (issue 12): the real `rtm-api`
process is SIGKILLed while it probes the bad release, and the reconciler's
next pass rolls the patch back from its durable progress. Real Docker,
PostgreSQL and Redis; this suite's database."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiodocker
import asyncpg
import httpx
import pytest
from harness import wait_for
from processes import RtmProcess, free_port, settings_env
from reconciler.helpers import deps_of
from rig import Rig

from rtm_core.domain.records import PatchPhase
from rtm_core.domain.vocabulary import OpSource
from rtm_core.settings import Settings
from rtm_reconciler.reconciler import Reconciler

V100 = "galaxy/test-engine:1.0.0"
BAD = "galaxy/test-engine:1.0.9"  # corrupts its state on start, /healthz 503 after 1 s


@pytest.fixture
async def gated(
    settings: Settings,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    reconciler_dsn: str,
) -> Rig:
    conn = await asyncpg.connect(reconciler_dsn.split("?", 1)[0])
    await conn.execute("TRUNCATE rtmanager.crash_history, rtmanager.patch_progress")
    await conn.close()
    return make_core(
        make_settings(
            postgres_primary_dsn=reconciler_dsn,
            patch_health_gate="on",
            patch_gate_deadline="60s",
            patch_gate_interval="500ms",
            probe_address_mode="container_ip",
            probe_timeout="1s",
            game_lease_ttl_seconds=3,
            container_stop_timeout_seconds=1,
        )
    )


@pytest.fixture
async def api(gated: Rig) -> AsyncIterator[tuple[RtmProcess, str]]:
    addr = f"127.0.0.1:{free_port()}"
    process = RtmProcess("rtm-api", settings_env(gated.settings, internal_http_addr=addr))
    await process.start()
    base = f"http://{addr}"

    async def ready() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{base}/readyz")).status_code == 200
        return False

    await wait_for(ready, timeout=60)
    yield process, base
    await process.close()


def tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


async def test_rtm_killed_mid_gate_the_reconciler_rolls_the_patch_back(
    gated: Rig,
    api: tuple[RtmProcess, str],
    docker: aiodocker.Docker,
    stop: asyncio.Event,
    game_id: str,
) -> None:
    process, base = api
    started = await gated.lifecycle.start(game_id, V100, OpSource.GM_REST)
    assert started.record is not None
    state = gated.settings.game_state_root / game_id
    await wait_for(lambda: (state / "boot.log").exists())
    (state / "game.dat").write_bytes(b"turn=41\n")
    before = tree(state)

    client = httpx.AsyncClient(timeout=120)
    patching = asyncio.ensure_future(
        client.post(f"{base}/api/v1/internal/runtimes/{game_id}/patch", json={"image_ref": BAD})
    )

    async def gating() -> bool:
        progress = await gated.repos.get_patch_progress(game_id)
        return bool(progress and progress.phase == PatchPhase.GATING and progress.new_container_id)

    await wait_for(gating, timeout=30)
    await wait_for(lambda: (state / "corrupted_by").exists(), timeout=10)
    await process.signal(signal.SIGKILL)  # RTM dies mid-patch: no row, no rollback
    with contextlib.suppress(httpx.HTTPError):
        await patching
    await client.aclose()
    progress = await gated.repos.get_patch_progress(game_id)
    assert progress is not None and not progress.answered
    assert [r.op_kind for r in await gated.repos.operations(game_id)] == ["start"]

    # The next pass, once the dead process's game lease has expired.
    reconciler = Reconciler(deps_of(gated), stop)
    await asyncio.sleep(gated.settings.game_lease_ttl_seconds + 0.5)
    report = await reconciler.reconcile()

    assert report.patches_rolled_back == 1 and report.disposed == 0
    record = await gated.repos.get_record(game_id)
    assert record is not None and record.status == "running"
    assert record.current_image_ref == V100
    info = (await docker.containers.get(record.current_container_id or ""))._container
    assert info["State"]["Running"] and info["Config"]["Labels"]["com.galaxy.image_ref"] == V100
    assert [c.id for c in await gated.docker.list_owned(game_id)] == [record.current_container_id]
    await wait_for(lambda: len((state / "boot.log").read_bytes()) > len(before["boot.log"]))
    after = tree(state)
    assert after.pop("boot.log").startswith(before.pop("boot.log"))
    assert after == before  # the bad release's writes are gone
    rows = [
        (r.op_kind, r.op_source, r.outcome, r.error_code, r.image_ref, r.previous_image_ref)
        for r in reversed(await gated.repos.operations(game_id))
    ]
    assert rows == [
        ("start", "gm_rest", "success", None, V100, None),
        ("patch", "admin_rest", "failure", "patch_rolled_back", BAD, V100),
        ("patch_rollback", "reconciler", "success", None, V100, BAD),
    ]
    (failed,) = [r for r in await gated.repos.operations(game_id) if r.op_kind == "patch"]
    assert (
        failed.error_message is not None and "interrupted in phase gating" in failed.error_message
    )
    assert await gated.repos.patches_in_progress() == []
    # A second pass finds nothing more to do.
    assert (await reconciler.reconcile()).patches_rolled_back == 0
