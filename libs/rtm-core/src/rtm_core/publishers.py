"""Outgoing streams, as plain field/value entries exactly as the contract shows.

Not FastStream's `publish`: that wraps payloads in its own envelope, which
Lobby and the notification service do not read.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis

from rtm_core.domain import HealthEventType, Outcome


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class JobResult:
    game_id: str
    outcome: Outcome
    container_id: str = ""
    engine_endpoint: str = ""
    error_code: str = ""
    error_message: str = ""

    def fields(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class HealthEvent:
    game_id: str
    container_id: str
    event_type: HealthEventType
    details: dict[str, Any]
    occurred_at_ms: int

    def fields(self) -> dict[str, str]:
        return {
            "game_id": self.game_id,
            "container_id": self.container_id,
            "event_type": self.event_type.value,
            "occurred_at_ms": str(self.occurred_at_ms),
            "details": json.dumps(self.details, separators=(",", ":")),
        }


#: error_code → notification intent type; only first-touch start failures notify.
INTENT_TYPES = {
    "image_pull_failed": "runtime.image_pull_failed",
    "container_start_failed": "runtime.container_start_failed",
    "start_config_invalid": "runtime.start_config_invalid",
}


@dataclass(frozen=True)
class NotificationIntent:
    game_id: str
    image_ref: str
    error_code: str
    error_message: str
    attempted_at_ms: int

    @property
    def type(self) -> str:
        return INTENT_TYPES[self.error_code]

    def envelope(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "producer": "rtmanager",
            "idempotency_key": f"{self.type}:{self.game_id}:{self.attempted_at_ms}",
            "audience": {
                "kind": "admin_email",
                "email_address_kind": f"runtime_{self.error_code}",
            },
            "payload": {
                "game_id": self.game_id,
                "image_ref": self.image_ref,
                "error_code": self.error_code,
                "error_message": self.error_message,
                "attempted_at_ms": self.attempted_at_ms,
            },
        }


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
