"""What the unit tests share: image refs, and the fields a user reads off a row."""

from __future__ import annotations

import json
from typing import Any

from rtm_core.domain.records import OperationLogEntry
from rtm_core.domain.vocabulary import OpSource
from rtm_core.domain.wire import NotificationIntent

V100 = "galaxy/test-engine:1.0.0"
V101 = "galaxy/test-engine:1.0.1"
V110 = "galaxy/test-engine:1.1.0"
V200 = "galaxy/test-engine:2.0.0"
LATEST = "galaxy/test-engine:latest"
MISSING = "galaxy/not-pulled:1.0.0"

GM = OpSource.GM_REST
ADMIN = OpSource.ADMIN_REST
LOBBY = OpSource.LOBBY_STREAM

GAME = "g-1"
BAD_GAME_IDS = ["../x", "a b", "", "-lead", "x" * 129, "a/b", "g\n1"]


def row_of(row: OperationLogEntry) -> dict[str, Any]:
    """An operation-log row as an operator reads it (no id, no timestamps)."""
    return {
        "game_id": row.game_id,
        "op_kind": row.op_kind,
        "op_source": row.op_source,
        "outcome": row.outcome,
        "error_code": row.error_code,
        "image_ref": row.image_ref,
        "previous_image_ref": row.previous_image_ref,
        "container_id": row.container_id,
    }


def intent_fields(
    intent: NotificationIntent, game_id: str, image_ref: str, code: str
) -> dict[str, str]:
    """The `notification:intents` entry `001` shows, for `intent`'s attempt time:
    one field, `envelope`, holding compact JSON in the contract's key order."""
    kind = f"runtime.{code}"
    envelope = {
        "type": kind,
        "producer": "rtmanager",
        "idempotency_key": f"{kind}:{game_id}:{intent.attempted_at_ms}",
        "audience": {"kind": "admin_email", "email_address_kind": f"runtime_{code}"},
        "payload": {
            "game_id": game_id,
            "image_ref": image_ref,
            "error_code": code,
            "error_message": intent.error_message,
            "attempted_at_ms": intent.attempted_at_ms,
        },
    }
    return {"envelope": json.dumps(envelope, separators=(",", ":"))}
