"""The watcher's health events (tests/watcher) against the swarm backend.

Same functions, this directory's fixtures, the watcher suite's short intervals.
The events arrive through `SwarmEngine.events()`: on this one-node swarm
they are the manager's own container events with the service id as the
id (OOM included); the task-transition path for other nodes is exercised
by tests/swarm/multinode.py. The usage sampler reads the task's container on
the manager's own node (the only one whose stats a manager serves). Not run here:

- the rising-restart-count test: it makes Docker restart a task container by
  hand, which Swarm's agent fights (restarts are Swarm's or RTM's business);
- the probe worker's tests: they probe engines from the host, and an overlay
  network is reachable only from its nodes' namespaces (RTM's containers
  join it in production; see docs/scale-out.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from swarm.nodes import Cluster
from watcher.conftest import WATCHER_SETTINGS
from watcher.test_events_listener import (  # noqa: F401  (collected here, run on the swarm)
    test_a_nonzero_exit_is_container_exited_once,
    test_an_engine_dying_before_its_start_committed_is_reported,
    test_an_oom_kill_is_one_container_oom,
    test_an_oom_kill_the_engine_survives_is_one_container_oom,
    test_catch_up_reports_a_death_no_event_announced,
    test_exits_rtm_causes_are_silent,
)
from watcher.test_events_listener import (
    test_the_listener_survives_a_broken_stream_and_catches_up as _broken_stream,
)
from watcher.test_inspect_worker import (  # noqa: F401
    test_a_healthy_engine_only_updates_its_snapshot,
    test_an_exit_rtm_announced_is_not_reported,
    test_an_exited_engine_is_reported_once_across_leaders,
)
from watcher.test_usage_sampler import (  # noqa: F401
    test_a_running_engine_gets_its_usage_persisted_and_exported,
)

from rtm_core.settings import Settings


@pytest.fixture
def settings(settings: Settings, make_settings: Callable[..., Settings]) -> Settings:
    """The watcher suite's intervals (and stop timeout 0) on this suite's database."""
    return make_settings(postgres_primary_dsn=settings.postgres_primary_dsn, **WATCHER_SETTINGS)


async def test_the_listener_survives_a_broken_stream_and_catches_up(
    swarm: Cluster,
    monkeypatch: pytest.MonkeyPatch,
    core: Any,
    make_core: Any,
    settings: Settings,
    redis: Any,
    docker: Any,
    background: Any,
    state_dir: Any,
    game_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """tests/watcher's version, its socket proxy in front of the swarm manager."""
    monkeypatch.setattr("watcher.helpers.DOCKER_SOCKET", swarm.manager.socket)
    await _broken_stream(
        core, make_core, settings, redis, docker, background, state_dir, game_id, caplog
    )
