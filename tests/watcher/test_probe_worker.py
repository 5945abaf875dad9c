"""The probe worker against real engines (container IP mode, as RTM outside the
engine network) and against a plain HTTP server (endpoint mode)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis
from rig import Rig
from watcher.helpers import control, health_events, start_engine, watcher_deps

from rtm_core.domain.records import RuntimeRecord
from rtm_core.settings import ProbeAddressMode, Settings
from rtm_watcher.probe_worker import ProbeWorker

StateDir = Callable[[str], Path]


@pytest.fixture
async def workers() -> AsyncIterator[Callable[[Rig], ProbeWorker]]:
    """Probe workers driven by `run_once`; their HTTP clients closed afterwards."""
    made: list[ProbeWorker] = []

    def make(core: Rig) -> ProbeWorker:
        made.append(ProbeWorker(watcher_deps(core)))
        return made[-1]

    yield make
    for worker in made:
        await worker.aclose()


async def probe_events(redis: Redis, core: Rig, game_id: str) -> list[tuple[str, dict]]:
    return [
        (e["event_type"], e["details"])
        for e in await health_events(redis, core, game_id)
        if e["event_type"].startswith("probe_")
    ]


async def snapshot_of(core: Rig, game_id: str) -> tuple[str, str, dict]:
    snapshot = await core.repos.get_snapshot(game_id)
    assert snapshot is not None
    return snapshot.source, snapshot.status, snapshot.details


async def test_a_hanging_engine_fails_at_the_threshold_then_recovers(
    core: Rig,
    redis: Redis,
    state_dir: StateDir,
    game_id: str,
    workers: Callable[[Rig], ProbeWorker],
) -> None:
    await start_engine(core, game_id)
    worker = workers(core)
    await worker.run_once()
    source, status, details = await snapshot_of(core, game_id)
    assert (source, status, details["http_status"]) == ("probe", "healthy", 200)

    control(state_dir(game_id), "hang_health")
    for failures in (1, 2):
        await worker.run_once()
        source, status, details = await snapshot_of(core, game_id)
        assert (status, details["consecutive_failures"]) == ("failing", failures)
    assert await probe_events(redis, core, game_id) == []

    await worker.run_once()
    failed = (
        "probe_failed",
        {"consecutive_failures": 3, "last_status": 0, "last_error": "context deadline exceeded"},
    )
    assert await probe_events(redis, core, game_id) == [failed]
    assert (await snapshot_of(core, game_id))[:2] == ("probe", "probe_failed")

    # A new leader continues the count from Redis: no second probe_failed.
    successor = workers(core)
    await successor.run_once()
    assert await probe_events(redis, core, game_id) == [failed]

    (state_dir(game_id) / "hang_health").unlink()
    await successor.run_once()
    recovered = ("probe_recovered", {"prior_failure_count": 4})
    assert await probe_events(redis, core, game_id) == [failed, recovered]
    await successor.run_once()
    assert await probe_events(redis, core, game_id) == [failed, recovered]
    assert (await snapshot_of(core, game_id))[:2] == ("probe", "healthy")


async def test_endpoint_mode_probes_the_recorded_endpoint(
    settings: Settings,
    make_core: Callable[[Settings], Rig],
    redis: Redis,
    game_id: str,
    workers: Callable[[Rig], ProbeWorker],
) -> None:
    """An engine that answers, but not 2xx: its status is what probe_failed carries."""
    requests: list[bytes] = []

    async def answer_503(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readline())
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_503, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    core = make_core(settings.model_copy(update={"probe_address_mode": ProbeAddressMode.ENDPOINT}))
    now = datetime.now(UTC)
    await core.repos.save_record(
        RuntimeRecord(
            game_id=game_id,
            status="running",
            current_container_id=f"fake-{game_id}",
            engine_endpoint=f"http://127.0.0.1:{port}",
            started_at=now,
            last_op_at=now,
        )
    )
    try:
        worker = workers(core)
        for _ in range(3):
            await worker.run_once()
    finally:
        server.close()
        await server.wait_closed()
    assert requests == [b"GET /healthz HTTP/1.1\r\n"] * 3
    assert await probe_events(redis, core, game_id) == [
        (
            "probe_failed",
            {"consecutive_failures": 3, "last_status": 503, "last_error": "unexpected status 503"},
        )
    ]
