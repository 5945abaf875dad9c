"""The misbehaving test-engine releases of the self-healing tests (issue 12),
built by scripts/build-test-engine.sh from 1.0.0 (see tests/engine/README.md)."""

from __future__ import annotations

import time
from pathlib import Path

import docker
import pytest
from engine.engine_harness import ENGINE_REPOSITORY, ENGINE_VERSIONS, RunEngine

pytestmark = pytest.mark.docker

BAD_VERSIONS = ("1.0.7", "1.0.8", "1.0.9")


def test_a_crash_loop_release_exits_1_after_a_second_every_time(run_engine: RunEngine) -> None:
    engine = run_engine(f"{ENGINE_REPOSITORY}:1.0.7")
    assert engine.get("/version") == (200, "1.0.7\n")

    assert engine.wait_exit() == 1
    assert 0.8 <= engine.run_seconds() < 5
    again = run_engine(f"{ENGINE_REPOSITORY}:1.0.7", state_dir=engine.state_dir)
    assert again.wait_exit() == 1


def test_a_clean_exit_release_exits_0(run_engine: RunEngine) -> None:
    engine = run_engine(f"{ENGINE_REPOSITORY}:1.0.8")

    assert engine.wait_exit() == 0
    assert not engine.state()["OOMKilled"]


def test_a_bad_patch_release_corrupts_its_state_then_fails_its_health_check(
    run_engine: RunEngine,
) -> None:
    good = run_engine(f"{ENGINE_REPOSITORY}:1.0.0")
    (good.state_dir / "game.dat").write_bytes(b"turn=41\n")
    good.container.remove(force=True)

    bad = run_engine(f"{ENGINE_REPOSITORY}:1.0.9", state_dir=good.state_dir, wait_ready=False)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if bad.get("/healthz", timeout=1.0)[0] == 503:
                break
        except OSError:
            pass
        time.sleep(0.2)
    assert bad.get("/healthz") == (503, "unhealthy\n")
    assert bad.get("/version") == (200, "1.0.9\n")
    state: Path = bad.state_dir
    assert (state / "boot.log").read_text() == "corrupted by version=1.0.9\n"
    assert (state / "corrupted_by").read_text() == "1.0.9\n"
    assert (state / "game.dat").read_bytes() == b"turn=41\n"


def test_good_releases_know_nothing_of_the_bad_controls(
    engine_image: str, docker_client: docker.DockerClient
) -> None:
    controls = ("ENGINE_EXIT_CODE", "ENGINE_CORRUPT_STATE", "ENGINE_FAIL_HEALTH_AFTER")
    for version in ENGINE_VERSIONS:
        env = docker_client.images.get(f"{ENGINE_REPOSITORY}:{version}").attrs["Config"]["Env"]
        assert not [e for e in env if e.startswith(controls)], version
    for version in BAD_VERSIONS:
        env = docker_client.images.get(f"{ENGINE_REPOSITORY}:{version}").attrs["Config"]["Env"]
        assert f"ENGINE_VERSION={version}" in env
