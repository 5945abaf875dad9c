"""Helpers of the reconciler suite: hand-made engine containers, the real
`rtm-reconciler` console command as a subprocess, and its JSON log lines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from enum import Enum
from pathlib import Path
from typing import Any

import aiodocker
from harness import wait_for
from pydantic import SecretStr

from rtm_core.bootstrap import Core
from rtm_core.domain import OpSource
from rtm_core.schema import RuntimeRecord
from rtm_core.settings import Settings

ENGINE_V100 = "galaxy/test-engine:1.0.0"
COMMAND = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "rtm-reconciler"


def labelled_config(image: str, labels: dict[str, str]) -> dict[str, Any]:
    """A container as an operator's `docker run --label … <image>` makes it."""
    return {"Image": image, "Labels": labels, "HostConfig": {"Init": True}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The `RTMANAGER_*` variables that make a process load exactly `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RTMANAGER_", "OTEL_"))}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if name == "game_state_dir_mode":
            text = f"{value:o}"
        elif isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, tuple):
            text = ",".join(value)
        elif isinstance(value, Enum):
            text = str(value.value)
        else:
            text = str(value)
        env[f"RTMANAGER_{name.upper()}"] = text
    env.update({f"RTMANAGER_{k.upper()}": v for k, v in extra.items()})
    return env


class RtmProcess:
    """One `rtm-reconciler` subprocess; its stdout JSON lines are collected as they come."""

    def __init__(self, env: dict[str, str], name: str = "rtm-reconciler") -> None:
        self.env = env
        self.name = name
        self.lines: list[dict[str, Any]] = []
        self.arrived: list[float] = []  # monotonic time each JSON line was read
        self.raw: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> RtmProcess:
        self.proc = await asyncio.create_subprocess_exec(
            str(COMMAND),
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode().rstrip("\n")
            self.raw.append(line)
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(line))
                self.arrived.append(time.monotonic())

    def messages(self) -> list[str]:
        return [line.get("message", "") for line in self.lines]

    def first(self, message: str) -> dict[str, Any] | None:
        return next((line for line in self.lines if line.get("message") == message), None)

    def seen_at(self, message: str) -> float:
        """When `message` was first read (monotonic)."""
        return next(
            t
            for line, t in zip(self.lines, self.arrived, strict=True)
            if line["message"] == message
        )

    async def wait_for_message(self, message: str, count: int = 1, timeout: float = 30) -> None:
        """Waits until `message` was logged `count` times."""

        def seen() -> bool:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.output}")
            return self.messages().count(message) >= count

        try:
            await wait_for(seen, timeout=timeout, interval=0.02)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; waiting for {message!r} in:\n{self.output}") from None

    @property
    def output(self) -> str:
        return "\n".join(self.raw[-60:])

    async def signal(self, sig: signal.Signals, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await self._reader
        return code

    async def close(self) -> None:
        """Finalizer: whatever happened, the process is gone afterwards."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader


async def start_engine(core: Core, game_id: str) -> RuntimeRecord:
    """A running engine, started the way GM would."""
    result = await core.lifecycle.start(game_id, ENGINE_V100, OpSource.GM_REST)
    assert result.record is not None and result.record.current_container_id
    return result.record


async def vanish(docker: aiodocker.Docker, container_id: str) -> None:
    """`docker rm -f`: what a daemon restart or an operator does behind RTM's back."""
    await (await docker.containers.get(container_id)).delete(force=True)
