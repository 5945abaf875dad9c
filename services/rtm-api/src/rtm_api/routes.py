"""`/api/v1/internal/runtimes`: parse, call the lifecycle or read the records, translate out.

Every lifecycle call runs with REST semantics: `lease_wait=0`, so a game
another operation holds answers 409 `operation_in_progress` at once. What
each operation can answer is `OPERATION_ERRORS`, the route's OpenAPI error
list; tests/api/test_error_contract.py checks it against what the lifecycle
and the adapters under it can raise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import JSONResponse

from rtm_api import paging
from rtm_api.bootstrap import ApiDeps
from rtm_api.deps import Deps, Source, bearer_guard
from rtm_api.errors import error_responses
from rtm_api.schemas import (
    ImageRequest,
    OperationList,
    RuntimePage,
    RuntimeRecord,
    RuntimeRecordWide,
    StopRequest,
    Usage,
    View,
    record_json,
    record_wire,
    records_json,
)
from rtm_core.domain.errors import (
    Conflict,
    ContainerStartFailed,
    DockerUnavailable,
    ImagePullFailed,
    ImageRefNotSemver,
    NotFound,
    OperationInProgress,
    PatchRolledBack,
    RtmError,
    SemverPatchOnly,
    StartConfigInvalid,
)
from rtm_core.domain.records import RecordKey
from rtm_core.domain.records import RuntimeRecord as RuntimeRecordRow
from rtm_core.domain.usage import usage_of
from rtm_core.domain.vocabulary import GAME_ID_RE, OpKind, RuntimeStatus, require_game_id
from rtm_core.lifecycle import OperationResult

PREFIX = "/api/v1/internal/runtimes"

#: REST never waits for another operation's lease (SPEC §2).
REST_LEASE_WAIT = 0.0
#: `operations?limit=`: the runbook's page size, and a ceiling that keeps one read cheap.
OPERATIONS_DEFAULT_LIMIT = 50
OPERATIONS_MAX_LIMIT = 500

#: What any operation that touches Docker can answer besides its own rules.
_RETIRE = (OperationInProgress, DockerUnavailable)
#: …and one that creates a container.
_LAUNCH = (*_RETIRE, ImagePullFailed, ContainerStartFailed)

#: What each lifecycle operation can raise, beyond the 400 `invalid_request`,
#: 401 and 500 every route answers (`errors.error_responses`); in this order
#: in each route's OpenAPI responses.
OPERATION_ERRORS: Mapping[OpKind, tuple[type[RtmError], ...]] = {
    OpKind.START: (StartConfigInvalid, Conflict, *_LAUNCH),
    OpKind.STOP: (NotFound, *_RETIRE),
    OpKind.RESTART: (StartConfigInvalid, NotFound, Conflict, *_LAUNCH),
    OpKind.PATCH: (
        StartConfigInvalid,
        ImageRefNotSemver,
        SemverPatchOnly,
        NotFound,
        Conflict,
        *_LAUNCH,
        PatchRolledBack,
    ),
    OpKind.CLEANUP_CONTAINER: (NotFound, Conflict, *_RETIRE),
    OpKind.QUARANTINE_LIFT: (NotFound, OperationInProgress),
}


#: Documented, not enforced by FastAPI: core answers a bad game_id with the
#: code of the operation (400 `start_config_invalid` on start, `invalid_request` elsewhere).
GameId = Annotated[
    str,
    Path(description="The game's id", json_schema_extra={"pattern": GAME_ID_RE.pattern}),
]


def _record(result: OperationResult, deps: ApiDeps) -> RuntimeRecord:
    assert result.record is not None  # REST operations always leave a record
    return RuntimeRecord.of(result.record, with_quarantine=bool(deps.settings.auto_restart))


def _json(body: bytes) -> Response:
    """A body encoded by `schemas.record_json`: the route's `response_model` still
    documents it, and FastAPI does not validate and encode it a second time."""
    return Response(content=body, media_type="application/json")


def _errors(kind: OpKind) -> dict[int | str, dict[str, Any]]:
    return error_responses(*OPERATION_ERRORS[kind])


ViewQuery = Annotated[
    View,
    Query(
        description="`wide`: each record also carries `usage`, its engine's last "
        "resource sample (null when there is none)"
    ),
]


async def _wide(deps: ApiDeps, rows: Sequence[RuntimeRecordRow]) -> list[dict[str, Any]]:
    """Each record with its engine's last usage sample, when that sample is of
    the record's current container (the watcher's sampler, RTMANAGER_ENGINE_USAGE)."""
    samples = await deps.usages.usages([r.game_id for r in rows])
    quarantine = bool(deps.settings.auto_restart)
    wide = []
    for row in rows:
        current = usage_of(row, samples.get(row.game_id))
        usage = None if current is None else Usage.model_validate(current)
        wide.append(
            RuntimeRecordWide.wide(row, usage, with_quarantine=quarantine).model_dump(mode="json")
        )
    return wide


def _plain(deps: ApiDeps, rows: Sequence[RuntimeRecordRow]) -> list[dict[str, Any]]:
    quarantine = bool(deps.settings.auto_restart)
    return [record_wire(r, with_quarantine=quarantine) for r in rows]


async def _list(
    deps: ApiDeps,
    status: str | None,
    quarantined: bool | None,
    limit: int | None,
    cursor: str | None,
    view: View,
) -> Response:
    async def render(rows: Sequence[RuntimeRecordRow]) -> list[dict[str, Any]]:
        return await _wide(deps, rows) if view is View.WIDE else _plain(deps, rows)

    if limit is None and cursor is None:
        rows = await deps.records.list_records(status, quarantined=quarantined)
        if view is View.DEFAULT:
            return _json(records_json(rows, with_quarantine=bool(deps.settings.auto_restart)))
        return JSONResponse({"items": await render(rows)})
    size = limit or paging.DEFAULT_PAGE
    after = None if cursor is None else paging.decode(cursor)
    rows = await deps.records.page_records(
        status, quarantined=quarantined, after=after, limit=size + 1
    )
    page, more = rows[:size], len(rows) > size
    next_cursor = paging.encode(RecordKey.of(page[-1])) if more else None
    return JSONResponse({"items": await render(page), "next_cursor": next_cursor})


def runtimes_router() -> APIRouter:
    """The routes, declared over no dependencies: each reads its `Deps` per request."""
    router = APIRouter(prefix=PREFIX, tags=["runtimes"], dependencies=[Depends(bearer_guard)])

    @router.get(
        "",
        response_model=None,
        responses={
            200: {"model": RuntimePage, "description": "The records"},
            **error_responses(),
        },
    )
    async def list_runtimes(
        deps: Deps,
        status: Annotated[RuntimeStatus | None, Query(description="Only this status")] = None,
        quarantined: Annotated[
            bool | None,
            Query(
                description="Only quarantined (true) or not quarantined (false) runtimes "
                "(RTMANAGER_AUTO_RESTART; nothing is quarantined while it is off)"
            ),
        ] = None,
        limit: Annotated[
            int | None,
            Query(
                ge=1,
                le=paging.MAX_PAGE,
                description="Page size: records come in creation order "
                "(`created_at`, then `game_id`) with a `next_cursor`. Without `limit` "
                "and `cursor`: every record, by game_id, and no `next_cursor`",
            ),
        ] = None,
        cursor: Annotated[
            str | None,
            Query(description="The `next_cursor` of the previous page (opaque)"),
        ] = None,
        view: ViewQuery = View.DEFAULT,
    ) -> Response:
        """Runtime records, all at once or a page at a time. Paging is keyset on
        (created_at, game_id): while games are added, every record that existed
        when paging began is seen exactly once, and new ones on a later page."""
        return await _list(deps, status and status.value, quarantined, limit, cursor, view)

    @router.get(
        "/{game_id}",
        response_model=None,
        responses={
            200: {"model": RuntimeRecordWide, "description": "`usage` only with view=wide"},
            **error_responses(NotFound),
        },
    )
    async def get_runtime(game_id: GameId, deps: Deps, view: ViewQuery = View.DEFAULT) -> Response:
        """One game's runtime record."""
        row = await deps.records.get_record(require_game_id(game_id))
        if row is None:
            raise NotFound(f"no runtime for game {game_id}")
        if view is View.WIDE:
            (wide,) = await _wide(deps, [row])
            return JSONResponse(wide)
        return _json(record_json(row, with_quarantine=bool(deps.settings.auto_restart)))

    @router.get("/{game_id}/operations", response_model=OperationList, responses=error_responses())
    async def list_operations(
        game_id: GameId,
        deps: Deps,
        limit: Annotated[
            int, Query(ge=1, le=OPERATIONS_MAX_LIMIT, description="Rows to return")
        ] = OPERATIONS_DEFAULT_LIMIT,
    ) -> OperationList:
        """The game's operation log, newest first (empty for a game RTM never saw)."""
        return OperationList.of(await deps.operations.operations(require_game_id(game_id), limit))

    @router.post("/{game_id}/start", response_model=RuntimeRecord, responses=_errors(OpKind.START))
    async def start(
        game_id: GameId,
        body: ImageRequest,
        source: Source,
        deps: Deps,
        wait_ready: Annotated[
            bool | None,
            Query(
                description="Answer only after the engine's first successful /healthz; "
                "not within RTMANAGER_START_READY_TIMEOUT: 502 container_start_failed "
                "(the engine is removed again). Default: RTMANAGER_START_WAIT_READY"
            ),
        ] = None,
    ) -> RuntimeRecord:
        """Start the game's engine; the same image already running is a success (replay)."""
        result = await deps.lifecycle.start(
            game_id, body.image_ref, source, lease_wait=REST_LEASE_WAIT, wait_ready=wait_ready
        )
        return _record(result, deps)

    @router.post("/{game_id}/stop", response_model=RuntimeRecord, responses=_errors(OpKind.STOP))
    async def stop(game_id: GameId, body: StopRequest, source: Source, deps: Deps) -> RuntimeRecord:
        """Stop the engine, keep its container; an already stopped runtime is a replay."""
        result = await deps.lifecycle.stop(game_id, body.reason, source, lease_wait=REST_LEASE_WAIT)
        return _record(result, deps)

    @router.post(
        "/{game_id}/restart", response_model=RuntimeRecord, responses=_errors(OpKind.RESTART)
    )
    async def restart(game_id: GameId, source: Source, deps: Deps) -> RuntimeRecord:
        """Recreate the engine with its current image; works from running and stopped.
        With RTMANAGER_AUTO_RESTART=on it also lifts a quarantine."""
        result = await deps.lifecycle.restart(game_id, source, lease_wait=REST_LEASE_WAIT)
        return _record(result, deps)

    @router.post("/{game_id}/patch", response_model=RuntimeRecord, responses=_errors(OpKind.PATCH))
    async def patch(
        game_id: GameId, body: ImageRequest, source: Source, deps: Deps
    ) -> RuntimeRecord:
        """Recreate the engine with a new patch version of its image. With
        RTMANAGER_PATCH_HEALTH_GATE=on the new engine must pass the health gate, or
        RTM restores the state and the previous image: 502 `patch_rolled_back`."""
        result = await deps.lifecycle.patch(
            game_id, body.image_ref, source, lease_wait=REST_LEASE_WAIT
        )
        return _record(result, deps)

    @router.delete(
        "/{game_id}/container",
        response_model=RuntimeRecord,
        responses=_errors(OpKind.CLEANUP_CONTAINER),
    )
    async def cleanup(game_id: GameId, source: Source, deps: Deps) -> RuntimeRecord:
        """Remove a stopped engine's container; the state directory stays."""
        result = await deps.lifecycle.cleanup(game_id, source, lease_wait=REST_LEASE_WAIT)
        return _record(result, deps)

    @router.post(
        "/{game_id}/quarantine/lift",
        response_model=RuntimeRecord,
        responses=_errors(OpKind.QUARANTINE_LIFT),
    )
    async def lift_quarantine(game_id: GameId, source: Source, deps: Deps) -> RuntimeRecord:
        """Lift the crash-loop quarantine (RTMANAGER_AUTO_RESTART): automatic restarts
        start over. The engine is left as it is; restart it to run it again. A runtime
        that is not quarantined answers as a replay (`replay_no_op` in its history)."""
        result = await deps.lifecycle.lift_quarantine(game_id, source, lease_wait=REST_LEASE_WAIT)
        return _record(result, deps)

    return router
