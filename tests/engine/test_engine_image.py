"""The busybox test engine behaves as the RTM tests rely on (real Docker)."""

from __future__ import annotations

import time
from pathlib import Path

import docker
import pytest
from engine.engine_harness import (
    ENGINE_REPOSITORY,
    ENGINE_VERSIONS,
    LIMITED_ENGINE_IMAGE,
    RunEngine,
)

pytestmark = pytest.mark.docker

RESOURCE_LABELS = ("com.galaxy.memory", "com.galaxy.cpu_quota", "com.galaxy.pids_limit")


def boot_lines(state_dir: Path) -> list[str]:
    return (state_dir / "boot.log").read_text().splitlines()


def test_serves_healthz_and_version_under_rtm_hardening(run_engine: RunEngine) -> None:
    engine = run_engine()

    assert engine.get("/healthz") == (200, "ok\n")
    assert engine.get("/version") == (200, "1.0.0\n")
    assert engine.get("/no-such-page")[0] == 404


def test_boot_log_survives_recreation_with_another_version(run_engine: RunEngine) -> None:
    first = run_engine(f"{ENGINE_REPOSITORY}:1.0.0")
    assert len(boot_lines(first.state_dir)) == 1
    first.container.remove(force=True)

    # What a patch does: a new container of another tag on the same state dir.
    second = run_engine(f"{ENGINE_REPOSITORY}:1.0.1", state_dir=first.state_dir)

    lines = boot_lines(second.state_dir)
    assert len(lines) == 2
    assert "version=1.0.0 " in lines[0]
    assert "version=1.0.1 " in lines[1]
    assert second.get("/version") == (200, "1.0.1\n")


def test_state_env_name_can_be_changed(run_engine: RunEngine, tmp_path: Path) -> None:
    state_dir = tmp_path / "elsewhere"
    state_dir.mkdir()
    # `environment` replaces the default one: no GAME_STATE_PATH at all.
    run_engine(
        state_dir=state_dir,
        volumes={str(state_dir): {"bind": "/data/game", "mode": "rw"}},
        environment={"RTMANAGER_ENGINE_STATE_ENV_NAME": "GAME_DIR", "GAME_DIR": "/data/game"},
    )

    assert len(boot_lines(state_dir)) == 1


def test_hang_health_hangs_healthz_until_removed(run_engine: RunEngine) -> None:
    engine = run_engine()
    hang = engine.state_dir / "hang_health"

    hang.touch()
    with pytest.raises(TimeoutError):
        engine.get("/healthz", timeout=1.0)
    # One hung request must not block the others.
    assert engine.get("/version") == (200, "1.0.0\n")

    hang.unlink()
    assert engine.get("/healthz") == (200, "ok\n")


def test_exit_code_file_exits_with_that_code(run_engine: RunEngine) -> None:
    engine = run_engine()

    (engine.state_dir / "exit_code").write_text("7\n")
    written = time.monotonic()
    code = engine.wait_exit(timeout=5)
    elapsed = time.monotonic() - written

    assert code == 7
    assert elapsed < 2.0, f"engine took {elapsed:.2f}s to notice exit_code"
    # One-shot: a restarted engine must not exit again.
    assert not (engine.state_dir / "exit_code").exists()


def test_exit_code_env_exits_after_delay(run_engine: RunEngine) -> None:
    # Not waiting for ready: on a slow machine that could outlast the delay.
    engine = run_engine(env={"ENGINE_EXIT_CODE": "3", "ENGINE_EXIT_AFTER": "1"}, wait_ready=False)

    assert engine.wait_exit(timeout=10) == 3
    assert engine.run_seconds() >= 0.9
    assert len(boot_lines(engine.state_dir)) == 1


@pytest.mark.parametrize("trigger", ["file", "env"])
def test_eat_memory_gets_oom_killed(run_engine: RunEngine, trigger: str) -> None:
    env = {"ENGINE_EAT_MEMORY": "1"} if trigger == "env" else {}
    # The env trigger eats before the listener starts: don't wait for it.
    engine = run_engine(env=env, mem_limit="32m", memswap_limit="32m", wait_ready=trigger == "file")
    if trigger == "file":
        (engine.state_dir / "eat_memory").touch()

    assert engine.wait_exit(timeout=20) == 137
    assert engine.state()["OOMKilled"] is True


def test_eat_memory_refuses_without_memory_limit(run_engine: RunEngine) -> None:
    engine = run_engine(
        env={"ENGINE_EAT_MEMORY": "1"},
        mem_limit=None,
        memswap_limit=None,
        wait_ready=False,
    )

    assert engine.wait_exit(timeout=10) == 4
    assert engine.state()["OOMKilled"] is False


@pytest.mark.parametrize("init", [False, True], ids=["entrypoint-pid1", "docker-init"])
def test_sigterm_stops_promptly_with_code_0(run_engine: RunEngine, init: bool) -> None:
    engine = run_engine(init=init)

    started = time.monotonic()
    engine.container.stop(timeout=10)
    elapsed = time.monotonic() - started

    assert elapsed < 2.0, f"stop took {elapsed:.2f}s (SIGTERM ignored?)"
    assert engine.state()["ExitCode"] == 0


def test_tags_carry_their_version_and_no_resource_labels(
    engine_image: str, docker_client: docker.DockerClient
) -> None:
    for version in ENGINE_VERSIONS:
        config = docker_client.images.get(f"{ENGINE_REPOSITORY}:{version}").attrs["Config"]
        assert f"ENGINE_VERSION={version}" in config["Env"]
        assert not set(RESOURCE_LABELS) & set(config["Labels"] or {})


def test_limited_image_carries_resource_labels(
    engine_image: str, docker_client: docker.DockerClient
) -> None:
    labels = docker_client.images.get(LIMITED_ENGINE_IMAGE).attrs["Config"]["Labels"]

    assert {k: labels.get(k) for k in RESOURCE_LABELS} == {
        "com.galaxy.memory": "64m",
        "com.galaxy.cpu_quota": "0.5",
        "com.galaxy.pids_limit": "64",
    }
