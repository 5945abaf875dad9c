"""PostgreSQL and Redis servers of a test's own, for outages.

Other tests share the session's PostgreSQL and Redis, so an outage is never
made by stopping those. These are real servers (Debian's PostgreSQL 15 and
redis-server, as `scripts/ensure-deps.sh` runs them) on a free loopback
port, that a test stops and starts under RTM to see what a job or a
request meets while one is away.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from processes import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(command: list[str]) -> list[str]:
    """The server refuses to run as root: use its OS user then."""
    if os.getuid() != 0:
        return command
    return ["su", "-s", "/bin/sh", "postgres", "-c", shlex.join(command)]


async def _run(command: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} exited {proc.returncode}: {out.decode()}")


class PrivatePostgres:
    """`initdb` into a temporary directory, `pg_ctl` on a free port; trust auth."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="rtm-pg-"))
        self.port = free_port()
        self.running = False
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres")
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "--no-sync",
                    "-D",
                    str(self.dir / "data"),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                ]
            ),
            check=True,
            capture_output=True,
        )

    @property
    def server_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> list[str]:
        data, log = str(self.dir / "data"), str(self.dir / "log")
        return _as_postgres([str(PG_BIN / "pg_ctl"), "-D", data, "-l", log, *args])

    async def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        await _run(self._ctl("-w", "-o", options, "start"))
        self.running = True

    async def stop(self) -> None:
        """Fast shutdown: sessions are terminated, as on a server restart."""
        await _run(self._ctl("-w", "-m", "fast", "stop"))
        self.running = False

    async def begin_smart_stop(self) -> None:
        """Ask for a smart shutdown and return at once: the server refuses new
        connections ("the database system is shutting down", 57P03) until its
        open sessions end, then stops."""
        await _run(self._ctl("-W", "-m", "smart", "stop"))

    async def wait_stopped(self) -> None:
        while os.path.exists(self.dir / "data" / "postmaster.pid"):
            await asyncio.sleep(0.1)
        self.running = False

    def remove(self) -> None:
        if self.running:
            subprocess.run(self._ctl("-w", "-m", "immediate", "stop"), check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """`redis-server` on a free port with an append-only file, so a stop and a start
    is a Redis restart that keeps its data (streams, groups, keys)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="rtm-redis-"))
        self.port = free_port()
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.025)
                continue
            writer.close()
            return
        raise RuntimeError(f"redis-server on {self.addr} did not start")

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()
        self._proc = None

    async def remove(self) -> None:
        await self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
