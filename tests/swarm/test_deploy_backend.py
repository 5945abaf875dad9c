"""`make up` / `make down` and the engine backend (deploy/scripts/engine-backend.sh,
down.sh, down-engines.sh), against a dockerd of their own that starts in no swarm:
what `make up ENGINE_BACKEND=swarm` meets on a fresh host, and the switches
between backends ENVIRONMENT.md warns about (a swarm joined or left under a
running compose stack breaks its networks).

The compose project is played by one container carrying its labels (no RTM
image is needed); `compose down` really runs (deploy/scripts/compose.sh).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from swarm.nodes import Cluster

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "deploy" / "scripts"
ENGINE = "galaxy/test-engine:1.0.0"
NET = "galaxy-verify"


@pytest.fixture(scope="module")
def daemon(engine_images: str) -> Iterator[Cluster]:
    cluster = Cluster.start(1, swarm=False)
    try:
        cluster.load_images([ENGINE])
        yield cluster
    finally:
        cluster.teardown()


@pytest.fixture
def sh(daemon: Cluster, tmp_path: Path):
    env = {
        **os.environ,
        "DOCKER_HOST": daemon.manager.host,
        "RTM_DEV_DIR": str(tmp_path / "dev"),
        "RTM_COMPOSE_PROJECT": "rtmverify",
        "RTMANAGER_STACK": "verify",
        "RTMANAGER_DOCKER_NETWORK": NET,
    }

    def run(*cmd: str, backend: str | None = None, ok: bool = True) -> str:
        extra = {"RTMANAGER_ENGINE_BACKEND": backend} if backend else {}
        done = subprocess.run(
            cmd, env={**env, **extra}, capture_output=True, text=True, check=False
        )
        assert (done.returncode == 0) == ok, (cmd, done.returncode, done.stdout, done.stderr)
        return done.stdout + done.stderr

    return run


def _fake_rtm(sh) -> None:
    sh(
        "docker", "run", "-d", "--name", "rtmverify_rtm-api_1", "--network", NET,
        "--label", "com.docker.compose.project=rtmverify",
        "--label", "com.docker.compose.service=rtm-api",
        "--label", "com.docker.compose.oneoff=False", ENGINE,
    )  # fmt: skip


def _swarm(sh) -> str:
    return sh("docker", "info", "-f", "{{.Swarm.LocalNodeState}}").strip()


def _net(sh) -> str:
    return sh("docker", "network", "inspect", "-f", "{{.Driver}} {{.Attachable}}", NET).strip()


def test_switching_backends_is_safe_and_down_removes_only_what_up_made(sh) -> None:
    prepare, down = str(SCRIPTS / "engine-backend.sh"), str(SCRIPTS / "down.sh")
    down_engines = str(SCRIPTS / "down-engines.sh")

    sh(prepare, "prepare", backend="docker")
    assert (_net(sh), _swarm(sh)) == ("bridge false", "inactive")

    # The stack runs, with an engine of the docker backend: a switch is refused
    # before anything changes (no swarm init, the stack untouched).
    _fake_rtm(sh)
    sh(
        "docker", "run", "-d", "--name", "galaxy-game-g1", "--network", NET,
        "--label", "com.galaxy.owner=rtmanager", "--label", "com.galaxy.stack=verify", ENGINE,
    )  # fmt: skip
    out = sh(prepare, "prepare", backend="swarm", ok=False)
    assert "Nothing was changed" in out
    assert (_net(sh), _swarm(sh)) == ("bridge false", "inactive")
    assert "rtmverify_rtm-api_1" in sh("docker", "ps", "--format", "{{.Names}}")

    # Engines gone: the stack goes down first, then swarm init, then the overlay.
    sh(down_engines)
    out = sh(prepare, "prepare", backend="swarm")
    assert out.index("taking the compose project") < out.index("initialised a single-node swarm")
    assert (_net(sh), _swarm(sh)) == ("overlay true", "active")
    assert "rtmverify_rtm-api_1" not in sh("docker", "ps", "-a", "--format", "{{.Names}}")
    assert "initialised" not in sh(prepare, "prepare", backend="swarm")  # idempotent

    # An engine service of the stack: back to docker is refused; make down keeps
    # the swarm and the overlay while a service uses them.
    _fake_rtm(sh)
    sh(
        "docker", "service", "create", "-d", "-q", "--name", "galaxy-game-g2",
        "--label", "com.galaxy.owner=rtmanager", "--label", "com.galaxy.stack=verify",
        "--network", NET, "--restart-condition", "none", ENGINE,
    )  # fmt: skip
    assert "still run in the swarm" in sh(prepare, "prepare", backend="docker", ok=False)
    out = sh(down)
    assert "kept the swarm" in out and "kept network" in out
    assert "rtmverify_rtm-api_1" not in sh("docker", "ps", "-a", "--format", "{{.Names}}")
    assert _swarm(sh) == "active"

    # No engine left: make down removes the overlay and leaves the swarm it made.
    sh(down_engines)
    out = sh(down)
    assert "removed network" in out and "left the swarm" in out
    assert _swarm(sh) == "inactive"
    assert sh("docker", "network", "ls", "-q", "--filter", f"name={NET}").strip() == ""


def test_a_swarm_up_did_not_make_is_never_left(sh) -> None:
    sh("docker", "swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        out = sh(str(SCRIPTS / "engine-backend.sh"), "prepare", backend="swarm")
        assert "initialised" not in out
        out = sh(str(SCRIPTS / "down.sh"))
        assert "left the swarm" not in out
        assert _swarm(sh) == "active"
    finally:
        sh("docker", "swarm", "leave", "--force")
