"""RTM's durable records (SPEC §5) as plain data: what the lifecycle reads and
writes, with no knowledge of how a repository stores them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
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
