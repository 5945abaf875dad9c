"""`EngineRuntime.open_logs` on the swarm backend (issue 13): service logs, and a
follow that ends once the service's engine no longer runs (Swarm's own stream
would wait for a next task forever)."""

from __future__ import annotations

from pathlib import Path

from harness import wait_for
from rig import Rig as Core

from rtm_core.domain.vocabulary import OpSource

V100 = "galaxy/test-engine:1.0.0"


async def _read(core: Core, ref: str, **query: object) -> str:
    logs = await core.docker.open_logs(ref, **query)  # type: ignore[arg-type]
    assert logs is not None
    try:
        return "".join([chunk async for chunk in logs.chunks()])
    finally:
        await logs.aclose()


async def test_service_logs_and_a_follow_that_ends_with_the_engine(
    core: Core, game_id: str
) -> None:
    started = await core.lifecycle.start(game_id, V100, OpSource.ADMIN_REST)
    assert started.record is not None and started.record.current_container_id
    service_id = started.record.current_container_id

    async def listening() -> bool:
        return "listening on :8080" in await _read(core, service_id)

    await wait_for(listening, timeout=30, interval=0.5)
    follow = await core.docker.open_logs(service_id, tail=0, follow=True)
    assert follow is not None
    try:
        assert started.record.state_path is not None
        (Path(started.record.state_path) / "exit_code").write_text("0\n")
        printed = "".join([chunk async for chunk in follow.chunks()])  # ends by itself
    finally:
        await follow.aclose()
    assert "engine[1.0.0]: exiting with code 0" in printed
    assert await core.docker.open_logs("no-such-service") is None
