"""Operator reads (issue 13): an engine's logs, its health events, its latest
health snapshot. Same bearer guard and error envelope as every other route;
nothing here changes a game, so no lease and no operation-log row.

Every check (the game, its container, the log driver, the follower cap)
happens before the first byte, so a refusal is always an envelope; once a
stream has begun it only ends: at the engine's stop or the client's going
away (logs), after `RTMANAGER_EVENTS_FOLLOW_MAX_DURATION` (events, with a
final `end` event), or at shutdown.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.sse import format_sse_event

from rtm_api.bootstrap import ApiDeps
from rtm_api.deps import Deps, bearer_guard
from rtm_api.errors import error_responses
from rtm_api.routes import PREFIX, GameId
from rtm_api.schemas import HealthEventList, HealthEventOut, HealthSnapshotOut
from rtm_core.domain.errors import (
    DockerUnavailable,
    InvalidRequest,
    LogsNotReadable,
    NotFound,
    TooManyFollowers,
)
from rtm_core.domain.records import RuntimeRecord
from rtm_core.domain.vocabulary import require_game_id
from rtm_core.ports import FeedEntry
from rtm_core.settings import parse_duration

log = logging.getLogger("rtm_api.observe")

EVENTS_PATH = "/api/v1/internal/events"
#: `events?limit=`: recent events returned (and replayed first by a follow).
EVENTS_DEFAULT_LIMIT = 50
EVENTS_MAX_LIMIT = 1000
#: A follow waits this long on Redis per read (and so notices its end within it),
#: and sends an SSE comment after this long without an event (keeps proxies
#: from closing a quiet stream, and notices a gone client).
EVENTS_POLL_MS = 1000
EVENTS_KEEPALIVE_MS = 5000
EVENTS_READ_COUNT = 100
TEXT = "text/plain; charset=utf-8"
SSE = "text/event-stream"
_STREAM_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

_LOG_ERRORS = error_responses(NotFound, TooManyFollowers, LogsNotReadable, DockerUnavailable)
_LOG_ERRORS[200] = {
    "description": "The engine's stdout and stderr, interleaved, as the engine wrote them",
    "content": {TEXT: {"schema": {"type": "string"}}},
}
_EVENT_ERRORS: dict[int | str, dict[str, Any]] = error_responses(NotFound, TooManyFollowers)
_EVENT_ERRORS[200] = {
    "model": HealthEventList,
    "description": "`follow=false`: the JSON list. `follow=true`: server-sent events, "
    "`event: health_event` with the entry id as `id` and a HealthEventOut as `data`, "
    "then new ones as they come; a final `event: end` (`data` names the reason) when "
    "RTMANAGER_EVENTS_FOLLOW_MAX_DURATION has passed",
    "content": {SSE: {"schema": {"type": "string"}}},
}

Follow = Annotated[bool, Query(description="Keep the response open and stream what comes next")]
EventsLimit = Annotated[
    int,
    Query(ge=1, le=EVENTS_MAX_LIMIT, description="Recent events returned (and replayed first)"),
]
After = Annotated[
    str | None,
    Query(
        description="Only events after this entry id (a follow resumes here; also the "
        "`Last-Event-ID` header)",
        pattern=r"^[0-9]+-[0-9]+$",
    ),
]
LastEventId = Annotated[
    str | None, Header(alias="Last-Event-ID", include_in_schema=False, pattern=r"^[0-9]+-[0-9]+$")
]


def parse_since(value: str, now: datetime) -> datetime:
    """RFC 3339 (`2026-12-02T14:00:00Z`) or a span back from now (`90s`, `10m`, `2h`)."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        try:
            return now - timedelta(seconds=parse_duration(value))
        except ValueError:
            raise InvalidRequest(
                f"since: {value!r} is neither an RFC 3339 time nor a duration such as 10m"
            ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


async def _known(deps: ApiDeps, game_id: str) -> RuntimeRecord:
    record = await deps.records.get_record(require_game_id(game_id))
    if record is None:
        raise NotFound(f"no runtime for game {game_id}")
    return record


async def logs(
    game_id: GameId,
    deps: Deps,
    tail: Annotated[
        int | None, Query(ge=0, description="Only the last N lines (default: all)")
    ] = None,
    since: Annotated[
        str | None,
        Query(description="Only lines from then on: RFC 3339, or a span back (`10m`)"),
    ] = None,
    follow: Follow = False,
) -> StreamingResponse:
    """The engine's stdout and stderr from Docker (`docker logs`). A follow ends
    when the engine stops or the client goes away. 404 when the game has no
    container (never started, or removed); 501 `logs_not_readable` when the
    engine's log driver keeps nothing to read back (RTMANAGER_DOCKER_LOG_DRIVER)."""
    when = None if since is None else parse_since(since, datetime.now(UTC))
    record = await _known(deps, game_id)
    if not record.current_container_id:
        raise NotFound(f"game {game_id} has no engine container (status {record.status})")
    if follow:
        deps.followers.take()
    try:
        opened = await deps.engine.open_logs(
            record.current_container_id, tail=tail, since=when, follow=follow
        )
        if opened is None:
            raise NotFound(
                f"the engine container {record.current_container_id} of game {game_id} "
                "no longer exists"
            )
    except BaseException:
        if follow:
            deps.followers.give_back()
        raise
    engine_logs = opened

    async def body() -> AsyncIterator[bytes]:
        try:
            chunks = engine_logs.chunks()
            source = deps.followers.relay(chunks) if follow else chunks
            async for chunk in source:
                yield chunk.encode()
        finally:
            await engine_logs.aclose()
            if follow:
                deps.followers.give_back()
                log.info("follow ended", extra={"game_id": game_id, "stream": "logs"})

    return StreamingResponse(body(), media_type=TEXT, headers=_STREAM_HEADERS)


async def _events(
    deps: ApiDeps, game_id: str | None, limit: int, follow: bool, after: str | None
) -> JSONResponse | StreamingResponse:
    if not follow:
        if after is not None:
            found, _ = await deps.health_events.after(after, game_id, count=limit, block_ms=0)
        else:
            found, _ = await deps.health_events.recent(game_id, limit)
        return JSONResponse(HealthEventList(items=_items(found)).model_dump(mode="json"))
    deps.followers.take()
    try:
        if after is None:
            first, start = await deps.health_events.recent(game_id, limit)
        else:
            first, start = [], after
    except BaseException:
        deps.followers.give_back()
        raise

    frames = _follow_events(deps, game_id, first, start)
    return StreamingResponse(frames, media_type=SSE, headers=_STREAM_HEADERS)


async def _follow_events(
    deps: ApiDeps, game_id: str | None, first: list[FeedEntry], start: str
) -> AsyncIterator[bytes]:
    """`first`, then the events after `start` as they come, until the max
    duration or shutdown, then `event: end`. Redis is read in short blocks and
    the end is checked between them: a read is never cancelled midway (a
    cancelled blocking read could leave its task pending in redis-py's
    connection teardown, and hold up the process's exit)."""
    ends = time.monotonic() + deps.settings.events_follow_max_duration
    last, quiet_ms, reason = start, 0, "max_duration"
    try:
        for item in _items(first):
            yield _sse(item)
        while (left := ends - time.monotonic()) > 0:
            if deps.followers.closing:
                reason = "shutdown"
                break
            block_ms = max(1, int(min(EVENTS_POLL_MS, left * 1000)))
            found, last = await deps.health_events.after(
                last, game_id, count=EVENTS_READ_COUNT, block_ms=block_ms
            )
            quiet_ms = 0 if found else quiet_ms + block_ms
            for item in _items(found):
                yield _sse(item)
            if quiet_ms >= EVENTS_KEEPALIVE_MS:
                quiet_ms = 0
                yield format_sse_event(comment="keep-alive")
        yield format_sse_event(event="end", data_str=json.dumps({"reason": reason}))
    finally:
        deps.followers.give_back()
        log.info("follow ended", extra={"game_id": game_id or "", "stream": "events"})


async def game_events(
    game_id: GameId,
    deps: Deps,
    last_event_id: LastEventId = None,
    limit: EventsLimit = EVENTS_DEFAULT_LIMIT,
    follow: Follow = False,
    after: After = None,
) -> JSONResponse | StreamingResponse:
    """The game's recent health events (`runtime:health_events`), oldest first;
    with `follow=true`, then new ones as server-sent events. Recent means
    within the last 10,000 entries of the stream (every game's)."""
    await _known(deps, game_id)
    return await _events(deps, game_id, limit, follow, after or last_event_id)


async def all_events(
    deps: Deps,
    last_event_id: LastEventId = None,
    limit: EventsLimit = EVENTS_DEFAULT_LIMIT,
    follow: Follow = False,
    after: After = None,
) -> JSONResponse | StreamingResponse:
    """Every game's recent health events, as `…/runtimes/{game_id}/events`."""
    return await _events(deps, None, limit, follow, after or last_event_id)


async def health(game_id: GameId, deps: Deps) -> HealthSnapshotOut:
    """The latest health snapshot of the game's engine (`health_snapshots`):
    404 for an unknown game, and for one never observed yet."""
    await _known(deps, game_id)
    snapshot = await deps.snapshots.get_snapshot(game_id)
    if snapshot is None:
        raise NotFound(f"no health observation of game {game_id} yet")
    return HealthSnapshotOut.of(snapshot)


def observe_router() -> APIRouter:
    router = APIRouter(tags=["observe"], dependencies=[Depends(bearer_guard)])
    get = router.get
    get(f"{PREFIX}/{{game_id}}/logs", response_class=StreamingResponse, responses=_LOG_ERRORS)(logs)
    get(f"{PREFIX}/{{game_id}}/events", response_model=None, responses=_EVENT_ERRORS)(game_events)
    get(EVENTS_PATH, response_model=None, responses=_EVENT_ERRORS)(all_events)
    get(
        f"{PREFIX}/{{game_id}}/health",
        response_model=HealthSnapshotOut,
        responses=error_responses(NotFound),
    )(health)
    return router


def _items(entries: list[FeedEntry]) -> list[HealthEventOut]:
    return [HealthEventOut.of(e.entry_id, e.event) for e in entries if e.event is not None]


def _sse(item: HealthEventOut) -> bytes:
    return format_sse_event(event="health_event", id=item.id, data_str=item.model_dump_json())
