"""The wire contract of every stream RTM reads or writes (`001` §Stream Payload
Examples), written once: what the publishers XADD, what the job-result step
writes, and what the AsyncAPI document shows.

Every Redis stream value is a string: numbers are decimal digits, `details`
and `envelope` are JSON text.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from rtm_core.domain.vocabulary import HealthEventType, Outcome


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
