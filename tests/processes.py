"""Running a real RTM console command in a test: its settings as `RTMANAGER_*`
variables, a free port, and its JSON log lines as they arrive.

Generic over the command (`rtm-watcher`, `rtm-jobs`, ...); a test always
closes what it started (`RtmProcess.close` in a finalizer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Any

from harness import wait_for
from pydantic import SecretStr

from rtm_core.settings import Settings

BIN = Path(sys.executable).parent
#: SPEC §2: the boot lines every process logs, in this order (the reconciler
#: then adds `reconciler initial pass completed`).
BOOT_LINES = [
    "migrations applied",
    "postgres ping ok",
    "redis ping ok",
    "docker ping ok",
    "docker network found",
    "telemetry exporter started",
    "internal http listening",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment under which a process loads exactly `settings` (plus `extra`,
    given without the `RTMANAGER_` prefix); telemetry exporters off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RTMANAGER_", "OTEL_"))}
    env.update({"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"})
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if name == "game_state_dir_mode":
            text = f"{value:04o}"
        elif isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, tuple | list):
            text = ",".join(value)
        elif isinstance(value, Enum):
            text = str(value.value)
        else:
            text = str(value)
        env[f"RTMANAGER_{name.upper()}"] = text
    env.update({f"RTMANAGER_{k.upper()}": v for k, v in extra.items()})
    return env


class RtmProcess:
    """One console command as a subprocess; stdout JSON lines collected as they come,
    each with the monotonic time it was read."""

    def __init__(self, command: str, env: dict[str, str], name: str | None = None) -> None:
        self.command = str(BIN / command)
        self.env = env
        self.name = name or command
        self.lines: list[dict[str, Any]] = []
        self.arrived: list[float] = []
        self.raw: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> RtmProcess:
        self.proc = await asyncio.create_subprocess_exec(
            self.command,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.raw.append(line)
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(line))
                self.arrived.append(time.monotonic())

    def logged(self, message: str, **fields: Any) -> list[dict[str, Any]]:
        """The lines with this message and these field values."""
        return [
            line
            for line in self.lines
            if line.get("message") == message and all(line.get(k) == v for k, v in fields.items())
        ]

    def seen_at(self, message: str) -> float:
        """When `message` was first read (monotonic)."""
        return next(
            t
            for line, t in zip(self.lines, self.arrived, strict=True)
            if line.get("message") == message
        )

    async def wait_for_message(
        self, message: str, count: int = 1, timeout: float = 30, **fields: Any
    ) -> None:
        def seen() -> bool:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.output}")
            return len(self.logged(message, **fields)) >= count

        try:
            await wait_for(seen, timeout=timeout, interval=0.02)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; waiting for {message!r} in:\n{self.output}") from None

    @property
    def output(self) -> str:
        return "\n".join(self.raw[-60:])

    async def signal(self, sig: signal.Signals, timeout: float = 30) -> int:
        """Send `sig` and wait for the exit code."""
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
