"""What the unit tests share: image refs, and the fields a user reads off a row."""

from __future__ import annotations

import functools
import json
from typing import Any

import httpx
from fastapi import FastAPI

from rtm_api.app import declare_app
from rtm_api.bootstrap import ApiDeps
from rtm_api.deps import bind
from rtm_api.streams import Followers
from rtm_core.domain.records import OperationLogEntry
from rtm_core.domain.vocabulary import OpSource
from rtm_core.domain.wire import NotificationIntent
from rtm_core.lifecycle import Lifecycle
from unit.fakes import FakeHealthEventLog, Fakes

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


@functools.cache
def declared_app() -> FastAPI:
    """Every route, declared once; each client binds its own fakes."""
    return declare_app()


async def _ready() -> str | None:
    return None


def rest_client(
    lifecycle: Lifecycle, fakes: Fakes, *, followers: Followers | None = None
) -> httpx.AsyncClient:
    """An HTTP client of the real app serving `ApiDeps` over the fakes (as `create_app`)."""
    app = declared_app()
    bind(
        app,
        ApiDeps(
            settings=fakes.settings,
            lifecycle=lifecycle,
            records=fakes.repos,
            operations=fakes.repos,
            ready=_ready,
            engine=fakes.engine,
            snapshots=fakes.repos,
            health_events=FakeHealthEventLog(),
            followers=followers or Followers(fakes.settings.api_max_followers),
            usages=fakes.repos,
        ),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rtm-api")
