"""Health observations: one call publishes the event and updates the snapshot."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rtm_core.domain.records import HealthSnapshot
from rtm_core.domain.vocabulary import AnyHealthEventType, HealthSource
from rtm_core.domain.wire import HealthEvent, now_ms
from rtm_core.observability import Metrics
from rtm_core.ports import EventPublisher, HealthSnapshots

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotUpdate:
    """One observation for `HealthReporter.observe_many`; `observed_at_ms` None = now."""

    game_id: str
    container_id: str | None
    source: HealthSource
    status: str
    details: dict[str, Any]
    observed_at_ms: int | None = None


@dataclass(frozen=True)
class HealthReport:
    """One event for `HealthReporter.report_many`."""

    game_id: str
    container_id: str
    event_type: AnyHealthEventType
    source: HealthSource
    details: dict[str, Any]


class HealthReporter:
    def __init__(
        self, publishers: EventPublisher, repos: HealthSnapshots, metrics: Metrics
    ) -> None:
        self._publishers = publishers
        self._repos = repos
        self._metrics = metrics

    async def observe(
        self,
        *,
        game_id: str,
        container_id: str | None,
        source: HealthSource,
        status: str,
        details: dict[str, Any],
        observed_at_ms: int | None = None,
    ) -> None:
        """Update the latest snapshot without publishing an event."""
        await self.observe_many(
            [SnapshotUpdate(game_id, container_id, source, status, details, observed_at_ms)]
        )

    async def observe_many(self, updates: Sequence[SnapshotUpdate]) -> None:
        """Update many games' snapshots in one transaction (a whole worker cycle)."""
        now = now_ms()
        await self._repos.upsert_snapshots(
            [
                HealthSnapshot(
                    game_id=u.game_id,
                    container_id=u.container_id,
                    status=u.status,
                    source=u.source.value,
                    observed_at=datetime.fromtimestamp((u.observed_at_ms or now) / 1000, UTC),
                    details=u.details,
                )
                for u in updates
            ]
        )

    async def report_many(self, reports: Sequence[HealthReport]) -> None:
        """`report` for many games at once: the events in one pipelined publish,
        the snapshots in one transaction (a reconcile batch)."""
        if not reports:
            return
        at_ms = now_ms()
        events = [
            HealthEvent(
                game_id=r.game_id,
                container_id=r.container_id,
                event_type=r.event_type,
                details=r.details,
                occurred_at_ms=at_ms,
            )
            for r in reports
        ]
        await self._publishers.health_event_batch(events)
        for event in events:
            self._metrics.health_events.add(1, {"event_type": event.event_type.value})
            log.info(
                "health event published",
                extra={
                    "game_id": event.game_id,
                    "event_type": event.event_type.value,
                    "details": event.details,
                },
            )
        await self.observe_many(
            [
                SnapshotUpdate(
                    r.game_id, r.container_id, r.source, r.event_type.value, r.details, at_ms
                )
                for r in reports
            ]
        )

    async def report(
        self,
        *,
        game_id: str,
        container_id: str,
        event_type: AnyHealthEventType,
        source: HealthSource,
        details: dict[str, Any],
        occurred_at_ms: int | None = None,
    ) -> None:
        """Publish a health event, then record it as the latest snapshot."""
        at_ms = occurred_at_ms or now_ms()
        await self._publishers.health_event(
            HealthEvent(
                game_id=game_id,
                container_id=container_id,
                event_type=event_type,
                details=details,
                occurred_at_ms=at_ms,
            )
        )
        self._metrics.health_events.add(1, {"event_type": event_type.value})
        log.info(
            "health event published",
            extra={"game_id": game_id, "event_type": event_type.value, "details": details},
        )
        await self.observe(
            game_id=game_id,
            container_id=container_id,
            source=source,
            status=event_type.value,
            details=details,
            observed_at_ms=at_ms,
        )
