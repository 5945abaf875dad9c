"""Outgoing streams, as plain field/value entries exactly as the contract shows.

Not FastStream's `publish`: that wraps payloads in its own envelope, which
Lobby and the notification service do not read. The shapes are
`rtm_core.domain.wire`'s.
"""

from __future__ import annotations

import json

from redis.asyncio import Redis

from rtm_core.domain.wire import HealthEvent, JobResult, NotificationIntent


class Publishers:
    def __init__(
        self,
        redis: Redis,
        *,
        job_results_stream: str,
        health_events_stream: str,
        notification_intents_stream: str,
        maxlen: int = 0,
    ) -> None:
        self._redis = redis
        self.job_results_stream = job_results_stream
        self.health_events_stream = health_events_stream
        self.notification_intents_stream = notification_intents_stream
        self._maxlen = maxlen or None

    async def _xadd(self, stream: str, fields: dict[str, str]) -> str:
        entry_id = await self._redis.xadd(
            stream,
            fields,  # type: ignore[arg-type]
            maxlen=self._maxlen,
            approximate=True,
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def job_result(self, result: JobResult) -> str:
        return await self._xadd(self.job_results_stream, result.fields())

    async def health_event(self, event: HealthEvent) -> str:
        return await self._xadd(self.health_events_stream, event.fields())

    async def notification_intent(self, intent: NotificationIntent) -> str:
        envelope = json.dumps(intent.envelope(), separators=(",", ":"))
        return await self._xadd(self.notification_intents_stream, {"envelope": envelope})
