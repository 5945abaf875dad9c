"""Helpers for driving the busybox test engine (see tests/engine/README.md).

Plain module (not conftest) so tests can import the names they assert on.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from docker.models.containers import Container

ENGINE_REPOSITORY = "galaxy/test-engine"
ENGINE_VERSIONS = ("1.0.0", "1.0.1", "1.0.2", "1.1.0", "2.0.0", "latest", "notsemver")
LIMITED_ENGINE_IMAGE = "galaxy/test-engine-limited:1.0.0"
ENGINE_PORT = 8080
STATE_MOUNT_PATH = "/var/lib/galaxy-game"
CONTAINER_PREFIX = "rtm-engine-test-"
# Generous bound for "the engine is up": a busybox start takes ~0.3 s here.
READY_TIMEOUT_S = 10.0


@dataclass
class Engine:
    container: Container
    state_dir: Path

    @property
    def ip(self) -> str:
        self.container.reload()
        ip: str = self.container.attrs["NetworkSettings"]["IPAddress"]
        if not ip:  # exited: "" would make http.client talk to localhost
            raise AssertionError(f"engine is not running:\n{self.logs()}")
        return ip

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace")

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        """GET from the host straight to the container IP (no published ports)."""
        return http_get(self.ip, path, timeout)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        last: object = None
        while time.monotonic() < deadline:
            try:
                if self.get("/healthz", timeout=1.0) == (200, "ok\n"):
                    return
            except (OSError, http.client.HTTPException) as exc:
                last = exc
            time.sleep(0.05)
        raise AssertionError(
            f"engine not ready in {READY_TIMEOUT_S}s ({last!r}); logs:\n{self.logs()}"
        )

    def wait_exit(self, timeout: float = 10.0) -> int:
        code: int = self.container.wait(timeout=timeout)["StatusCode"]
        return code

    def state(self) -> dict[str, Any]:
        self.container.reload()
        state: dict[str, Any] = self.container.attrs["State"]
        return state

    def run_seconds(self) -> float:
        """How long the (exited) engine ran, by Docker's own clock."""
        state = self.state()
        return (docker_time(state["FinishedAt"]) - docker_time(state["StartedAt"])).total_seconds()


def docker_time(value: str) -> datetime:
    # Docker gives nanoseconds ("...:13.123456789Z"); datetime takes micro.
    stamp, _, fraction = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{stamp}.{fraction[:6]:0<6}+00:00")


def http_get(host: str, path: str, timeout: float) -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, ENGINE_PORT, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


# The `run_engine` fixture: run_engine(image=..., state_dir=..., wait_ready=..., **run_options)
RunEngine = Callable[..., Engine]
