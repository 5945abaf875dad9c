"""rtm-api fixtures: an HTTP client over the real app and core, and the real
`rtm-api` process started with the test settings as `RTMANAGER_*` variables."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from enum import Enum
from typing import Any

import httpx
import pytest
from harness import wait_for
from pydantic import SecretStr

from rtm_api.app import create_app
from rtm_core.bootstrap import Core
from rtm_core.settings import Settings

BASE = "http://rtm-api.test"
MakeClient = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """`make_client(core, **create_app_kwargs)`: an httpx client over the app, in process."""
    clients: list[httpx.AsyncClient] = []

    def make(core: Core, **app_kwargs: Any) -> httpx.AsyncClient:
        app = create_app(core, **app_kwargs)
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
def client(make_client: MakeClient, core: Core) -> httpx.AsyncClient:
    return make_client(core)


WaitReady = Callable[[httpx.AsyncClient], Coroutine[Any, Any, httpx.Response]]


@pytest.fixture
def wait_ready() -> WaitReady:
    """`/readyz` until it answers 200, as a kubelet would retry it: each check has a
    2 s budget, which a loaded CI box can exceed once without anything being wrong."""

    async def ready(http: httpx.AsyncClient) -> httpx.Response:
        last: list[httpx.Response] = []

        async def probe() -> httpx.Response | None:
            last[:] = [await http.get("/readyz")]
            return last[0] if last[0].status_code == 200 else None

        try:
            return await wait_for(probe, timeout=20, interval=0.2)  # type: ignore[no-any-return]
        except AssertionError:
            raise AssertionError(f"never ready: {last[0].text if last else '-'}") from None

    return ready


# ------------------------------------------------------------- the real process


def settings_env(settings: Settings) -> dict[str, str]:
    """`RTMANAGER_*` variables that load back into `settings`."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, tuple | list):
            text = ",".join(value)
        elif isinstance(value, Enum):
            text = str(value.value)
        elif name == "game_state_dir_mode":
            text = format(value, "04o")
        else:
            text = str(value)
        env[f"RTMANAGER_{name.upper()}"] = text
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiProcess:
    """A running `rtm-api`, its JSON log lines as they arrive."""

    def __init__(self, proc: asyncio.subprocess.Process, addr: str) -> None:
        self.proc = proc
        self.base_url = f"http://{addr}"
        self.logs: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._pump = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            text = line.decode(errors="replace").rstrip()
            self.raw.append(text)
            with contextlib.suppress(ValueError):
                self.logs.append(json.loads(text))

    def messages(self) -> list[str]:
        return [str(entry.get("message")) for entry in self.logs]

    async def wait_for_message(self, message: str, timeout: float = 30.0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            if self.proc.returncode is not None and self._pump.done():
                raise AssertionError(f"rtm-api exited {self.proc.returncode}: {self.raw}")
            return next((e for e in self.logs if e.get("message") == message), None)

        return await wait_for(found, timeout=timeout)  # type: ignore[no-any-return]

    async def exit_code(self, timeout: float = 30.0) -> int:
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await self._pump
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump


SpawnApi = Callable[..., Coroutine[Any, Any, ApiProcess]]


@pytest.fixture
async def spawn_api() -> AsyncIterator[SpawnApi]:
    """Start `rtm-api` with `settings` (plus raw `env` overrides); killed afterwards."""
    command = shutil.which("rtm-api", path=os.path.dirname(sys.executable))
    assert command, "the rtm-api console script is not installed in this venv"
    started: list[ApiProcess] = []

    async def spawn(settings: Settings, **env: str) -> ApiProcess:
        addr = f"127.0.0.1:{free_port()}"
        variables = {
            "PATH": os.environ.get("PATH", ""),
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            **settings_env(settings),
            "RTMANAGER_INTERNAL_HTTP_ADDR": addr,
            **env,
        }
        proc = await asyncio.create_subprocess_exec(
            command,
            env=variables,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        process = ApiProcess(proc, addr)
        started.append(process)
        return process

    yield spawn
    for process in started:
        await process.kill()
