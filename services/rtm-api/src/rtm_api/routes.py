"""`/api/v1/internal/runtimes`: parse, call `core.lifecycle` / the repositories, translate out.

Every lifecycle call runs with REST semantics: `lease_wait=0`, so a game
another operation holds answers 409 `operation_in_progress` at once.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from rtm_api.deps import Source, bearer_guard
from rtm_api.errors import error_responses
from rtm_api.schemas import (
    ImageRequest,
    OperationList,
    RuntimeList,
    RuntimeRecord,
    StopRequest,
)
from rtm_core.domain.errors import (
    Conflict,
    ContainerStartFailed,
    DockerUnavailable,
    ImagePullFailed,
    ImageRefNotSemver,
    NotFound,
    OperationInProgress,
    SemverPatchOnly,
    StartConfigInvalid,
)
from rtm_core.domain.vocabulary import GAME_ID_RE, RuntimeStatus, require_game_id
from rtm_core.lifecycle import OperationResult
from rtm_core.runtime.bootstrap import Core

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


#: Documented, not enforced by FastAPI: core answers a bad game_id with the
#: code of the operation (400 `start_config_invalid` on start, `invalid_request` elsewhere).
GameId = Annotated[
    str,
    Path(description="The game's id", json_schema_extra={"pattern": GAME_ID_RE.pattern}),
]


def _record(result: OperationResult) -> RuntimeRecord:
    assert result.record is not None  # REST operations always leave a record
    return RuntimeRecord.of(result.record)


def runtimes_router(core: Core) -> APIRouter:
    router = APIRouter(
        prefix=PREFIX, tags=["runtimes"], dependencies=[Depends(bearer_guard(core.settings))]
    )

    @router.get("", response_model=RuntimeList, responses=error_responses())
    async def list_runtimes(
        status: Annotated[RuntimeStatus | None, Query(description="Only this status")] = None,
    ) -> RuntimeList:
        """Every runtime record, by game_id."""
        return RuntimeList.of(await core.repos.list_records(status and status.value))

    @router.get("/{game_id}", response_model=RuntimeRecord, responses=error_responses(NotFound))
    async def get_runtime(game_id: GameId) -> RuntimeRecord:
        """One game's runtime record."""
        row = await core.repos.get_record(require_game_id(game_id))
        if row is None:
            raise NotFound(f"no runtime for game {game_id}")
        return RuntimeRecord.of(row)

    @router.get("/{game_id}/operations", response_model=OperationList, responses=error_responses())
    async def list_operations(
        game_id: GameId,
        limit: Annotated[
            int, Query(ge=1, le=OPERATIONS_MAX_LIMIT, description="Rows to return")
        ] = OPERATIONS_DEFAULT_LIMIT,
    ) -> OperationList:
        """The game's operation log, newest first (empty for a game RTM never saw)."""
        return OperationList.of(await core.repos.operations(require_game_id(game_id), limit))

    @router.post(
        "/{game_id}/start",
        response_model=RuntimeRecord,
        responses=error_responses(StartConfigInvalid, Conflict, *_LAUNCH),
    )
    async def start(game_id: GameId, body: ImageRequest, source: Source) -> RuntimeRecord:
        """Start the game's engine; the same image already running is a success (replay)."""
        return _record(
            await core.lifecycle.start(game_id, body.image_ref, source, lease_wait=REST_LEASE_WAIT)
        )

    @router.post(
        "/{game_id}/stop",
        response_model=RuntimeRecord,
        responses=error_responses(NotFound, *_RETIRE),
    )
    async def stop(game_id: GameId, body: StopRequest, source: Source) -> RuntimeRecord:
        """Stop the engine, keep its container; an already stopped runtime is a replay."""
        return _record(
            await core.lifecycle.stop(game_id, body.reason, source, lease_wait=REST_LEASE_WAIT)
        )

    @router.post(
        "/{game_id}/restart",
        response_model=RuntimeRecord,
        responses=error_responses(StartConfigInvalid, NotFound, Conflict, *_LAUNCH),
    )
    async def restart(game_id: GameId, source: Source) -> RuntimeRecord:
        """Recreate the engine with its current image; works from running and stopped."""
        return _record(await core.lifecycle.restart(game_id, source, lease_wait=REST_LEASE_WAIT))

    @router.post(
        "/{game_id}/patch",
        response_model=RuntimeRecord,
        responses=error_responses(
            StartConfigInvalid,
            ImageRefNotSemver,
            SemverPatchOnly,
            NotFound,
            Conflict,
            *_LAUNCH,
        ),
    )
    async def patch(game_id: GameId, body: ImageRequest, source: Source) -> RuntimeRecord:
        """Recreate the engine with a new patch version of its image."""
        return _record(
            await core.lifecycle.patch(game_id, body.image_ref, source, lease_wait=REST_LEASE_WAIT)
        )

    @router.delete(
        "/{game_id}/container",
        response_model=RuntimeRecord,
        responses=error_responses(NotFound, Conflict, *_RETIRE),
    )
    async def cleanup(game_id: GameId, source: Source) -> RuntimeRecord:
        """Remove a stopped engine's container; the state directory stays."""
        return _record(await core.lifecycle.cleanup(game_id, source, lease_wait=REST_LEASE_WAIT))

    return router
