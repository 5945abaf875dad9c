"""The real `rtm-api` console command, run as a process with the test settings
as `RTMANAGER_*` variables: boot order, probes, token, readiness when the
Docker network goes away, fatal configuration and a clean SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import AsyncIterator, Callable

import aiodocker
import httpx
import pytest
from harness import wait_for
from processes import BOOT_LINES
from redis.asyncio import Redis

from rtm_core.settings import Settings

TOKEN = "process-test-token"


@pytest.fixture
async def throwaway_network(docker: aiodocker.Docker, stack: str) -> AsyncIterator[str]:
    """A network of this test alone, which the test may delete under the running process."""
    name = f"rtm-{stack}-api-{uuid.uuid4().hex[:6]}"
    network = await docker.networks.create({"Name": name, "Driver": "bridge"})
    yield name
    try:
        await network.delete()
    except aiodocker.DockerError as exc:
        assert exc.status == 404


async def test_boots_serves_reports_readiness_and_stops_on_sigterm(
    spawn_api,
    make_settings: Callable[..., Settings],
    docker: aiodocker.Docker,
    throwaway_network: str,
    wait_ready,
) -> None:
    settings = make_settings(
        docker_network=throwaway_network, internal_api_token=TOKEN, shutdown_timeout="10s"
    )
    api = await spawn_api(settings)
    await api.process.wait_for_message("internal http listening")
    boot = [m for m in api.messages() if m in BOOT_LINES]
    assert boot == BOOT_LINES, api.process.output
    (listening,) = api.process.logged("internal http listening")
    assert listening["addr"] == api.base_url.removeprefix("http://")
    assert api.process.logged("docker network found", network=throwaway_network)

    async with httpx.AsyncClient(base_url=api.base_url) as http:
        health = await http.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        ready = await wait_ready(http)
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        refused = await http.get("/api/v1/internal/runtimes")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        listed = await http.get(
            "/api/v1/internal/runtimes", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert listed.status_code == 200 and "items" in listed.json()

        await (await docker.networks.get(throwaway_network)).delete()
        unready = {
            "error": {
                "code": "service_unavailable",
                "message": f"docker network {throwaway_network} not found",
            }
        }

        async def names_the_network() -> bool:
            # Retried only because a loaded box may time a ping out first.
            gone = await http.get("/readyz")
            assert gone.status_code == 503, gone.text
            return bool(gone.json() == unready)

        await wait_for(names_the_network, timeout=20, interval=0.2)
        assert (await http.get("/healthz")).status_code == 200

    assert await api.process.signal(signal.SIGTERM, timeout=15) == 0
    assert "shutdown complete" in api.messages()


async def test_sigterm_drains_a_request_in_flight(
    spawn_api, settings: Settings, redis: Redis, docker: aiodocker.Docker, game_id: str
) -> None:
    """SIGTERM arrives while a start holds the game's lease: the start still
    answers 200 with the running record, then the process exits 0."""
    api = await spawn_api(settings)
    await api.process.wait_for_message("internal http listening")
    try:
        async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:
            request = asyncio.create_task(
                http.post(
                    f"/api/v1/internal/runtimes/{game_id}/start",
                    headers={"Content-Type": "application/json", "X-Galaxy-Caller": "gm"},
                    content=b'{"image_ref": "galaxy/test-engine:1.0.0"}',
                )
            )
            await wait_for(lambda: redis.exists(f"rtmanager:game_lease:{game_id}"))
            assert api.process.proc is not None
            api.process.proc.send_signal(signal.SIGTERM)
            response = await request
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "running"
        assert await api.exited(timeout=15) == 0
        messages = api.messages()
        assert messages.index("shutdown requested") < messages.index("operation completed")
        assert messages[-1] == "shutdown complete"
    finally:
        with contextlib.suppress(aiodocker.DockerError):
            await (await docker.containers.get(f"galaxy-game-{game_id}")).delete(force=True)


async def test_a_bad_value_exits_before_listening_naming_the_variable(
    spawn_api, settings: Settings
) -> None:
    api = await spawn_api(settings, probe_interval="soon")
    assert await api.exited() != 0
    (failure,) = [e for e in api.process.lines if e.get("level") == "ERROR"]
    assert failure["message"] == "invalid configuration"
    assert "RTMANAGER_PROBE_INTERVAL" in failure["error"]
    assert "internal http listening" not in api.messages()
    assert "migrations applied" not in api.messages()


async def test_a_missing_network_exits_non_zero_before_listening(
    spawn_api, make_settings: Callable[..., Settings]
) -> None:
    missing = f"rtm-missing-{uuid.uuid4().hex[:8]}"
    api = await spawn_api(make_settings(docker_network=missing))
    assert await api.exited() != 0
    messages = api.messages()
    assert [m for m in messages if m in BOOT_LINES] == BOOT_LINES[:4]
    assert "docker network found" not in messages
    assert "internal http listening" not in messages
    (failure,) = [e for e in api.process.lines if e.get("level") == "ERROR"]
    assert failure["message"] == "boot failed" and missing in failure["error"]
