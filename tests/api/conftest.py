"""rtm-api fixtures: an HTTP client over the real app, bound to the `ApiDeps`
its own `bootstrap()` picks from a real rig, and the real `rtm-api` process
started with the test settings as `RTMANAGER_*` variables."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from api.helpers import api_deps
from harness import wait_for
from processes import RtmProcess, free_port, settings_env
from rig import Rig

from rtm_api.app import create_app
from rtm_core.settings import Settings

BASE = "http://rtm-api.test"
MakeClient = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """`make_client(rig, **create_app_kwargs)`: an httpx client over the app, in process."""
    clients: list[httpx.AsyncClient] = []

    def make(rig: Rig, **app_kwargs: Any) -> httpx.AsyncClient:
        app = create_app(api_deps(rig), **app_kwargs)
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
def client(make_client: MakeClient, core: Rig) -> httpx.AsyncClient:
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


@dataclass
class Api:
    """A running `rtm-api` and where it listens."""

    process: RtmProcess
    base_url: str

    def messages(self) -> list[str]:
        return [str(line.get("message")) for line in self.process.lines]

    async def exited(self, timeout: float = 30) -> int:
        """The exit code of a process that stops by itself (or was already signalled)."""
        assert self.process.proc is not None
        code = await asyncio.wait_for(self.process.proc.wait(), timeout)
        await self.process.close()  # reads the rest of its output
        return code


SpawnApi = Callable[..., Coroutine[Any, Any, Api]]


@pytest.fixture
async def spawn_api() -> AsyncIterator[SpawnApi]:
    """`spawn_api(settings, **extra)`: `rtm-api` with `settings` plus `extra` variables
    (named without `RTMANAGER_`) on a free port; killed afterwards."""
    started: list[RtmProcess] = []

    async def spawn(settings: Settings, **extra: str) -> Api:
        addr = f"127.0.0.1:{free_port()}"
        env = settings_env(settings, internal_http_addr=addr, **extra)
        process = RtmProcess("rtm-api", env)
        started.append(process)
        return Api(await process.start(), f"http://{addr}")

    yield spawn
    for process in started:
        await process.close()
