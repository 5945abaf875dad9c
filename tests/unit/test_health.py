"""Health observations (SPEC §8): one call publishes the event in its wire shape
and updates the game's snapshot; a snapshot-only observation publishes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from rtm_core.domain.vocabulary import HealthEventType, HealthSource
from rtm_core.lifecycle.health import SnapshotUpdate
from unit.fakes import Fakes
from unit.helpers import GAME

AT_MS = 1_893_456_000_123


@pytest.mark.parametrize(
    ("event_type", "details"),
    [
        (HealthEventType.CONTAINER_EXITED, {"exit_code": 137, "oom": False}),
        (HealthEventType.CONTAINER_OOM, {"exit_code": 137}),
        (
            HealthEventType.INSPECT_UNHEALTHY,
            {"restart_count": 2, "state": "running", "health": "unhealthy"},
        ),
        (HealthEventType.PROBE_RECOVERED, {"prior_failure_count": 4}),
    ],
)
async def test_report_publishes_the_event_and_updates_the_snapshot(
    fakes: Fakes, event_type: HealthEventType, details: dict[str, object]
) -> None:
    await fakes.health.report(
        game_id=GAME,
        container_id="c1",
        event_type=event_type,
        source=HealthSource.DOCKER_EVENT,
        details=details,
        occurred_at_ms=AT_MS,
    )
    (event,) = fakes.publisher.health_events
    fields = event.fields()
    assert fields == {
        "game_id": GAME,
        "container_id": "c1",
        "event_type": event_type.value,
        "occurred_at_ms": str(AT_MS),
        "details": fields["details"],
        "traceparent": "",
    }
    assert json.loads(fields["details"]) == details
    snapshot = await fakes.repos.get_snapshot(GAME)
    assert snapshot is not None
    assert (snapshot.status, snapshot.source, snapshot.container_id) == (
        event_type.value,
        "docker_event",
        "c1",
    )
    assert snapshot.observed_at == datetime.fromtimestamp(AT_MS / 1000, UTC)
    assert fakes.counter("health_events", event_type=event_type.value) == 1


async def test_details_that_do_not_fit_the_event_type_are_refused_before_publishing(
    fakes: Fakes,
) -> None:
    with pytest.raises(ValidationError):
        await fakes.health.report(
            game_id=GAME,
            container_id="c1",
            event_type=HealthEventType.CONTAINER_EXITED,
            source=HealthSource.DOCKER_EVENT,
            details={"exit_code": "not a number", "oom": False},
        )
    assert fakes.publisher.health_events == []
    assert await fakes.repos.get_snapshot(GAME) is None


async def test_observe_many_updates_snapshots_only_and_the_later_wins(fakes: Fakes) -> None:
    await fakes.health.observe_many(
        [
            SnapshotUpdate(GAME, "c1", HealthSource.PROBE, "healthy", {}, AT_MS),
            SnapshotUpdate("g-2", "c2", HealthSource.INSPECT, "running", {}, AT_MS),
            SnapshotUpdate(GAME, "c1", HealthSource.PROBE, "probe_failed", {}, AT_MS + 1),
        ]
    )
    assert fakes.publisher.health_events == []
    first = await fakes.repos.get_snapshot(GAME)
    second = await fakes.repos.get_snapshot("g-2")
    assert first is not None and second is not None
    assert (first.status, second.status) == ("probe_failed", "running")
