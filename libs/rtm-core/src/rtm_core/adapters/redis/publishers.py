"""Outgoing streams, as plain field/value entries exactly as the contract shows.

Not FastStream's `publish`: that wraps payloads in its own envelope, which
Lobby and the notification service do not read. Each entry is the
`fields()` of its `rtm_core.domain.wire` shape, the one encoder of it.

Job results are not published here: rtm-jobs writes each one in the same
Redis step that acknowledges its job and moves the offset
(`rtm_jobs.offsets.GroupState.complete`), so that no crash can leave a job
answered but pending (answered twice) or acknowledged but unanswered. A
second path that XADDs a result alone would reopen that window.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from rtm_core.adapters.redis.errors import redis_unavailable
from rtm_core.domain.wire import HealthEvent, NotificationIntent
from rtm_core.observability import current_traceparent, tracer


class Publishers:
    def __init__(
        self,
        redis: Redis,
        *,
        health_events_stream: str,
        notification_intents_stream: str,
        maxlen: int = 0,
    ) -> None:
        self._redis = redis
        self.health_events_stream = health_events_stream
        self.notification_intents_stream = notification_intents_stream
        self._maxlen = maxlen or None

    @redis_unavailable
    async def _xadd(self, stream: str, fields: dict[str, str]) -> str:
        entry_id = await self._redis.xadd(
            stream,
            fields,  # type: ignore[arg-type]
            maxlen=self._maxlen,
            approximate=True,
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def health_event(self, event: HealthEvent) -> str:
        """One producer span per event (a child of the operation or loop that saw
        it); the entry carries that span's `traceparent`."""
        with tracer.start_as_current_span(
            "rtm.publish health_event",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "redis",
                "messaging.destination.name": self.health_events_stream,
                "rtm.game_id": event.game_id,
                "rtm.event_type": event.event_type.value,
            },
        ):
            if not event.traceparent:
                event = event.model_copy(update={"traceparent": current_traceparent()})
            return await self._xadd(self.health_events_stream, event.fields())

    @redis_unavailable
    async def health_event_batch(self, events: Sequence[HealthEvent]) -> list[str]:
        """Many events in one pipeline (a reconcile batch), in order: the
        entries are exactly those `health_event` would add one by one."""
        if not events:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for event in events:
            pipe.xadd(
                self.health_events_stream,
                event.fields(),  # type: ignore[arg-type]
                maxlen=self._maxlen,
                approximate=True,
            )
        ids = await pipe.execute()
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def notification_intent(self, intent: NotificationIntent) -> str:
        return await self._xadd(self.notification_intents_stream, intent.fields())
