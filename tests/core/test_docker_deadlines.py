"""Every Docker call has a deadline (issue 10 §4b), against the real daemon.

A wedged daemon is made for real: a loopback TCP server that accepts and
never answers stands in for the whole daemon, and a proxy in front of the
real Docker socket forwards every request but one kind (create, start or
stop), which it swallows. On expiry the operation fails with its SPEC code,
leaves exactly one operation-log row, and the game's lease is free again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
from harness import stream_entries
from redis.asyncio import Redis
from rig import Rig

from rtm_core.adapters.docker_engine import Deadlines
from rtm_core.domain.errors import ContainerStartFailed, DockerUnavailable
from rtm_core.domain.vocabulary import OpSource
from rtm_core.settings import Settings, SettingsError, load_settings

V100 = "galaxy/test-engine:1.0.0"
GM = OpSource.GM_REST
DOCKER_SOCKET = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


class _Connections:
    """The peers and handler tasks of a test server, all closed at its end."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def track(self, *writers: asyncio.StreamWriter) -> None:
        self.writers.extend(writers)
        if (task := asyncio.current_task()) is not None:
            self.tasks.add(task)

    async def close(self, server: asyncio.Server) -> None:
        server.close()
        for writer in self.writers:
            writer.close()
        await server.wait_closed()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)


async def _drain(reader: asyncio.StreamReader) -> None:
    """Read and drop whatever the peer sends until it hangs up."""
    with suppress(ConnectionError):
        while await reader.read(65536):
            pass


@asynccontextmanager
async def silent_daemon() -> AsyncIterator[str]:
    """A `tcp://` Docker host that accepts connections and never answers."""
    connections = _Connections()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.track(writer)
        await _drain(reader)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        await connections.close(server)


@asynccontextmanager
async def daemon_hanging_on(call: str) -> AsyncIterator[str]:
    """A `tcp://` Docker host proxying the real daemon, except that a `POST
    /containers/…<call>` request is swallowed and never answered."""
    assert DOCKER_SOCKET.startswith("unix://"), "the proxy fronts a local Docker socket"
    hang = re.compile(rb"(?m)^POST /(?:v[\d.]+/)?containers/(?:[^/\s]+/)?" + call.encode() + rb"\b")
    connections = _Connections()

    async def pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, watch: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if watch and hang.search(data):
                    await _drain(reader)  # the request never reaches the daemon
                    return
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        daemon_r, daemon_w = await asyncio.open_unix_connection(DOCKER_SOCKET[len("unix://") :])
        connections.track(client_w, daemon_w)
        await asyncio.gather(
            pipe(client_r, daemon_w, watch=True),
            pipe(daemon_r, client_w, watch=False),
            return_exceptions=True,
        )

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        await connections.close(server)


async def rows(core: Rig, game_id: str) -> list:
    return list(reversed(await core.repos.operations(game_id)))


# ------------------------------------------------------------------ settings


def test_deadline_settings_default_to_30s_and_5m() -> None:
    defaults = load_settings(postgres_primary_dsn="postgresql://x", redis_master_addr="x:1")
    assert defaults.docker_call_timeout == 30.0
    assert defaults.docker_pull_timeout == 300.0
    assert defaults.docker_config is None
    assert Deadlines().of("pull") == 300.0 and Deadlines().of("inspect") == 30.0
    deadlines = Deadlines(call=2.0, pull=90.0)
    assert deadlines.of("pull") == 90.0 and deadlines.of("create") == 2.0
    assert deadlines.stop(30) == 32.0  # the SIGTERM grace, then an ordinary call


def test_deadline_settings_parse_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTMANAGER_DOCKER_CALL_TIMEOUT", "1500ms")
    monkeypatch.setenv("RTMANAGER_DOCKER_PULL_TIMEOUT", "10m")
    s = load_settings(postgres_primary_dsn="postgresql://x", redis_master_addr="x:1")
    assert (s.docker_call_timeout, s.docker_pull_timeout) == (1.5, 600.0)
    monkeypatch.setenv("RTMANAGER_DOCKER_PULL_TIMEOUT", "0s")
    with pytest.raises(SettingsError, match="RTMANAGER_DOCKER_PULL_TIMEOUT"):
        load_settings(postgres_primary_dsn="postgresql://x", redis_master_addr="x:1")


def test_docker_config_is_the_file_or_its_directory(tmp_path: Path) -> None:
    base = {"postgres_primary_dsn": "postgresql://x", "redis_master_addr": "x:1"}
    (tmp_path / "config.json").write_text(json.dumps({"auths": {}}))
    assert load_settings(**base, docker_config=tmp_path).docker_config == tmp_path / "config.json"
    assert (
        load_settings(**base, docker_config=tmp_path / "config.json").docker_config
        == tmp_path / "config.json"
    )
    for bad in (tmp_path / "missing.json", tmp_path / "bad.json", tmp_path / "list.json"):
        (tmp_path / "bad.json").write_text("{not json")
        (tmp_path / "list.json").write_text("[]")
        with pytest.raises(SettingsError, match="RTMANAGER_DOCKER_CONFIG"):
            load_settings(**base, docker_config=bad)


# ------------------------------------------------------------- wedged daemon


async def test_a_daemon_that_never_answers_is_docker_unavailable_on_time(
    make_settings: Callable[..., Settings], make_core: Callable[[Settings], Rig], game_id: str
) -> None:
    async with silent_daemon() as host:
        core = make_core(make_settings(docker_host=host, docker_call_timeout="1s"))
        began = time.monotonic()
        with pytest.raises(DockerUnavailable, match="timed out after 1s"):
            await core.docker.ping()
        assert 1.0 <= time.monotonic() - began < 4.0

        began = time.monotonic()
        with pytest.raises(DockerUnavailable, match="docker inspect timed out after 1s"):
            await core.lifecycle.start(game_id, V100, GM)
        assert time.monotonic() - began < 5.0
        assert not await core.leases.is_held(game_id)
        (row,) = await rows(core, game_id)
        assert (row.op_kind, row.outcome, row.error_code) == (
            "start",
            "failure",
            "docker_unavailable",
        )
        assert await core.repos.get_record(game_id) is None


async def test_a_create_that_hangs_is_container_start_failed_with_its_notification(
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    redis: Redis,
    game_id: str,
) -> None:
    async with daemon_hanging_on("create") as host:
        core = make_core(make_settings(docker_host=host, docker_call_timeout="1s"))
        with pytest.raises(ContainerStartFailed, match="docker create timed out after 1s"):
            await core.lifecycle.start(game_id, V100, GM)
        assert not await core.leases.is_held(game_id)
        (row,) = await rows(core, game_id)
        assert (row.outcome, row.error_code) == ("failure", "container_start_failed")
        (intent,) = await stream_entries(redis, core.settings.notification_intents_stream)
        envelope = json.loads(intent["envelope"])
        assert envelope["type"] == "runtime.container_start_failed"
        assert envelope["payload"]["game_id"] == game_id
        assert await core.docker.list_owned(game_id) == []


async def test_a_start_that_hangs_is_container_start_failed_and_leaves_no_container(
    make_settings: Callable[..., Settings], make_core: Callable[[Settings], Rig], game_id: str
) -> None:
    async with daemon_hanging_on("start") as host:
        core = make_core(make_settings(docker_host=host, docker_call_timeout="1s"))
        with pytest.raises(ContainerStartFailed, match="docker start timed out after 1s"):
            await core.lifecycle.start(game_id, V100, GM)
        assert not await core.leases.is_held(game_id)
        (row,) = await rows(core, game_id)
        assert (row.outcome, row.error_code) == ("failure", "container_start_failed")
        # The created container went through the proxy's remove, which answers.
        assert await core.docker.list_owned(game_id) == []


async def test_a_stop_that_hangs_waits_its_grace_then_fails_docker_unavailable(
    make_settings: Callable[..., Settings], make_core: Callable[[Settings], Rig], game_id: str
) -> None:
    direct = make_core(make_settings())
    started = await direct.lifecycle.start(game_id, V100, GM)
    assert started.record is not None
    async with daemon_hanging_on("stop") as host:
        core = make_core(
            make_settings(
                docker_host=host, docker_call_timeout="1s", container_stop_timeout_seconds=1
            )
        )
        began = time.monotonic()
        with pytest.raises(DockerUnavailable, match="docker stop timed out after 2s"):
            await core.lifecycle.stop(game_id, "finished", GM)
        assert 2.0 <= time.monotonic() - began < 6.0
        assert not await core.leases.is_held(game_id)
    start_row, stop_row = await rows(direct, game_id)
    assert (start_row.op_kind, start_row.outcome) == ("start", "success")
    assert (stop_row.op_kind, stop_row.outcome, stop_row.error_code) == (
        "stop",
        "failure",
        "docker_unavailable",
    )
    record = await direct.repos.get_record(game_id)
    assert record is not None and record.status == "running"
