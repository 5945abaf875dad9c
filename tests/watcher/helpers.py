"""Helpers of the watcher suite: the watcher's deps, engines, health events, a
cuttable Docker socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import aiodocker
from harness import stream_entries, wait_for
from redis.asyncio import Redis
from rig import Rig

from rtm_core.domain.vocabulary import OpSource
from rtm_watcher.bootstrap import WatcherDeps, bootstrap

ENGINE = "galaxy/test-engine:1.0.0"
#: 64m memory limit (image labels): `eat_memory` gets it OOM-killed fast.
LIMITED_ENGINE = "galaxy/test-engine-limited:1.0.0"
DOCKER_SOCKET = "/var/run/docker.sock"


def watcher_deps(core: Rig) -> WatcherDeps:
    """The watcher's dependencies over a test rig, built as `rtm-watcher` builds them."""
    return bootstrap(core.infra, core.adapters)


async def start_engine(core: Rig, game_id: str, image: str = ENGINE) -> str:
    """Starts an engine as GM would; returns its container id."""
    result = await core.lifecycle.start(game_id, image, OpSource.GM_REST)
    assert result.record is not None and result.record.current_container_id
    return result.record.current_container_id


def control(state_dir: Path, name: str, content: str = "") -> None:
    """Steer the test engine through a file in its state dir (tests/engine/README.md)."""
    (state_dir / name).write_text(content)


async def health_events(
    redis: Redis, core: Rig, game_id: str, event_type: str | None = None
) -> list[dict[str, Any]]:
    """This game's health events (optionally of one type), details decoded."""
    entries = await stream_entries(redis, core.settings.redis_health_events_stream)
    return [
        {**e, "details": json.loads(e["details"])}
        for e in entries
        if e["game_id"] == game_id and event_type in (None, e["event_type"])
    ]


async def wait_for_event(
    redis: Redis, core: Rig, game_id: str, event_type: str, timeout: float = 15
) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        events = await health_events(redis, core, game_id, event_type)
        return events[0] if events else None

    try:
        return await wait_for(found, timeout=timeout)  # type: ignore[no-any-return]
    except AssertionError:
        seen = await health_events(redis, core, game_id)
        raise AssertionError(f"no {event_type} for {game_id}; its events: {seen}") from None


async def container_state(docker: aiodocker.Docker, container_id: str) -> dict[str, Any]:
    return (await docker.containers.get(container_id))._container["State"]  # type: ignore[no-any-return]


async def wait_until_exited(docker: aiodocker.Docker, container_id: str) -> dict[str, Any]:
    async def exited() -> dict[str, Any] | None:
        state = await container_state(docker, container_id)
        return None if state["Running"] else state

    return await wait_for(exited, timeout=15)  # type: ignore[no-any-return]


class DockerSocketProxy:
    """`tcp://127.0.0.1:<port>` in front of the Docker socket. `cut()` drops every
    connection and refuses new ones until `restore()`: to a client that is what
    a daemon restart looks like, without restarting the shared daemon."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(DOCKER_SOCKET)
        self._writers |= {writer, up_writer}
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        for pipe in pipes:
            pipe.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            self._writers.discard(writer)
