"""Real-Docker fixtures for the busybox test engine (see tests/engine/README.md).

`engine_image` is the 1.0.0 engine, every tag built (or confirmed) once per session;
`run_engine` starts engines the way RTM does (hardened, state dir bind-mounted)
and always removes them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.models.containers import Container
from engine.engine_harness import (
    CONTAINER_PREFIX,
    STATE_MOUNT_PATH,
    Engine,
    RunEngine,
)


@pytest.fixture(scope="session")
def engine_image(engine_images: str) -> str:
    """The 1.0.0 engine; `engine_images` (tests/conftest.py) builds every tag once."""
    return f"{engine_images}:1.0.0"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def run_engine(
    engine_image: str, docker_client: docker.DockerClient, tmp_path: Path
) -> Iterator[RunEngine]:
    """Start an engine like RTM would; every container is removed at teardown.

    `env` adds to the engine's environment; other keyword arguments go to
    `containers.run` and override the defaults, e.g. `init=False`,
    `mem_limit="32m"`. `state_dir` reuses a state directory (to recreate an
    engine on the same state).
    """
    started: list[Container] = []

    def run(
        image: str = engine_image,
        *,
        state_dir: Path | None = None,
        wait_ready: bool = True,
        env: dict[str, str] | None = None,
        **overrides: Any,
    ) -> Engine:
        if state_dir is None:
            state_dir = tmp_path / f"state-{len(started)}"
            # RTMANAGER_GAME_STATE_DIR_MODE default; owner is root like RTM's default.
            state_dir.mkdir(mode=0o750)
        options: dict[str, Any] = {
            "name": f"{CONTAINER_PREFIX}{uuid.uuid4().hex[:12]}",
            "detach": True,
            "environment": {"GAME_STATE_PATH": STATE_MOUNT_PATH, **(env or {})},
            "volumes": {str(state_dir): {"bind": STATE_MOUNT_PATH, "mode": "rw"}},
            # RTM's hardening (SPEC §4): the engine must work under it.
            "init": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "pids_limit": 64,
            "mem_limit": "64m",
            "memswap_limit": "64m",
        }
        options.update(overrides)
        container = docker_client.containers.run(image, **options)
        started.append(container)
        engine = Engine(container, state_dir)
        if wait_ready:
            engine.wait_ready()
        return engine

    yield run
    for container in started:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
