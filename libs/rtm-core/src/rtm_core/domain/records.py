"""RTM's durable records (SPEC §5) as plain data: what the lifecycle reads and
writes, with no knowledge of how a repository stores them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


@dataclass(kw_only=True)
class RuntimeRecord:
    """One game's runtime: the `runtime_records` row, field for field (the REST
    RuntimeRecord is the contract's subset of it: every field but `placement_node`)."""

    game_id: str
    status: str
    current_container_id: str | None = None
    current_image_ref: str | None = None
    engine_endpoint: str | None = None
    state_path: str | None = None
    docker_network: str | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    removed_at: datetime | None = None
    last_op_at: datetime | None = None
    #: Set by the repository on first insert; kept on every later write.
    created_at: datetime | None = None
    #: The node the game was first placed on (multi-node backends; migration 0003):
    #: its state lives there, so every later launch is pinned to it. Not in the
    #: REST record, whose fields are the `001` contract's.
    placement_node: str | None = None
    #: Issue 12 (migration 0004): the crash-loop policy quarantined the game (no
    #: more automatic restarts). Always false while RTMANAGER_AUTO_RESTART=off;
    #: kept equal to `crash_history.quarantined` by the repository.
    quarantined: bool = False


@dataclass(frozen=True)
class RecordKey:
    """A runtime record's place in the paging order (issue 13): `(created_at,
    game_id)`. A game keeps its `created_at` for life, so a page boundary never
    moves, and a game created while someone pages lands after every older one."""

    created_at: datetime
    game_id: str

    @classmethod
    def of(cls, record: RuntimeRecord) -> RecordKey:
        assert record.created_at is not None  # set by the repository on insert
        return cls(record.created_at, record.game_id)


@dataclass(kw_only=True)
class OperationLogEntry:
    """One `operation_log` row: exactly one per operation, failures included."""

    game_id: str
    op_kind: str
    op_source: str
    outcome: str
    started_at: datetime
    finished_at: datetime
    error_code: str | None = None
    error_message: str | None = None
    image_ref: str | None = None
    previous_image_ref: str | None = None
    container_id: str | None = None
    #: Assigned by the repository when the row is appended.
    id: int | None = None


@dataclass(kw_only=True)
class HealthSnapshot:
    """The latest observation of one game's engine (`health_snapshots`)."""

    game_id: str
    status: str
    source: str
    observed_at: datetime
    container_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class PatchPhase(StrEnum):
    """How far a health-gated patch got (issue 12), in order. Each phase is stored
    before its step begins, so an RTM that dies mid-patch leaves the step it was in."""

    #: The old engine is being stopped and removed.
    STOPPING = "stopping"
    #: The state directory is being copied to its snapshot.
    SNAPSHOTTING = "snapshotting"
    #: The new engine is being created, started and probed by the gate.
    GATING = "gating"
    #: The gate failed: the new engine is removed, the state restored, the old image started.
    ROLLING_BACK = "rolling_back"


@dataclass(kw_only=True)
class PatchProgress:
    """A health-gated patch under way (table `patch_progress`, one row per game).

    The row exists from before the old engine is stopped until the commit that
    ends the patch (success or rollback), which deletes it in the same
    transaction; a row with no lease held on its game is an interrupted patch,
    which the reconciler or the game's next operation rolls back.
    """

    game_id: str
    phase: str
    #: `op_source` of the patch request (its failure row carries it).
    source: str
    from_image_ref: str
    to_image_ref: str
    #: The engine the patch replaces, and the status its record had.
    from_container_id: str | None = None
    from_status: str
    new_container_id: str | None = None
    snapshot_path: str | None = None
    #: Why the gate failed, once it has.
    failure: str | None = None
    #: The patch already answered (its failure row is written): whoever finishes
    #: the rollback owes only the `patch_rollback` row.
    answered: bool = False
    started_at: datetime
    updated_at: datetime | None = None
