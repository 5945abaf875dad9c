"""rtmctl driven as a user drives it: the real console command against a real
`rtm-api` process (and `rtm-jobs` where a stream start is needed), over real
PostgreSQL, Redis and Docker. Tables, --watch and spinners run in a
pseudo-terminal (pexpect); `-o json` through plain pipes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect
import pytest
from processes import BIN, RtmProcess, free_port, settings_env

from rtm_core.settings import Settings

RTMCTL = str(BIN / "rtmctl")


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


@dataclass
class Api:
    process: RtmProcess
    url: str


SpawnApi = Callable[..., Coroutine[Any, Any, Api]]


def rtmctl_env(url: str | None, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user whose only RTM setting is RTM_URL (no config file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RTM_", "RTMCTL_"))}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "NO_COLOR": "1"})
    if url is not None:
        env["RTM_URL"] = url
    env.update(extra)
    return env


@pytest.fixture
async def spawn_api() -> AsyncIterator[SpawnApi]:
    """`await spawn_api(settings, **extra)`: a listening `rtm-api` on a free port."""
    started: list[RtmProcess] = []

    async def spawn(settings: Settings, **extra: str) -> Api:
        addr = f"127.0.0.1:{free_port()}"
        process = RtmProcess("rtm-api", settings_env(settings, internal_http_addr=addr, **extra))
        started.append(process)
        await process.start()
        await process.wait_for_message("internal http listening")
        return Api(process, f"http://{addr}")

    yield spawn
    for process in started:
        await process.close()


class Cli:
    """`await cli.run(*args)` through pipes; `cli.terminal(*args)` in a pseudo-terminal."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.url: str | None = None
        self.children: list[pexpect.spawn] = []

    def env(self, **extra: str) -> dict[str, str]:
        return rtmctl_env(self.url, self.home, **extra)

    async def run(self, *args: str, timeout: float = 120, **env: str) -> Ran:
        proc = await asyncio.create_subprocess_exec(
            RTMCTL,
            *args,
            env=self.env(**env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return Ran(proc.returncode, out.decode(), err.decode())

    def terminal(self, *args: str, **env: str) -> pexpect.spawn:
        child = pexpect.spawn(
            RTMCTL,
            list(args),
            env=self.env(**env),
            encoding="utf-8",
            dimensions=(40, 200),
            timeout=60,
        )
        self.children.append(child)
        return child

    def close(self) -> None:
        for child in self.children:
            child.close(force=True)


@pytest.fixture
def cli(tmp_path: Path) -> Any:
    home = tmp_path / "home"
    home.mkdir()
    c = Cli(home)
    yield c
    c.close()
