"""The `rtmanager` schema (SPEC §5) as SQLModel tables, mapped to the domain
records by the repositories. Alembic's autogenerate reads `metadata`.

Timestamps are `timestamptz`; the REST shape renders them as RFC 3339 UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Identity,
    Index,
    Integer,
    MetaData,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

SCHEMA = "rtmanager"

metadata = MetaData(schema=SCHEMA)


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))


class RuntimeRecordRow(SQLModel, table=True):
    __tablename__ = "runtime_records"
    metadata = metadata
    __table_args__ = (
        Index("runtime_records_status_idx", "status"),
        # Migration 0005 (issue 13): keyset paging of the REST list.
        Index("runtime_records_created_game_idx", "created_at", "game_id"),
    )

    game_id: str = Field(sa_column=Column(Text, primary_key=True))
    status: str = Field(sa_column=Column(Text, nullable=False))
    current_container_id: str | None = Field(default=None, sa_column=Column(Text))
    current_image_ref: str | None = Field(default=None, sa_column=Column(Text))
    engine_endpoint: str | None = Field(default=None, sa_column=Column(Text))
    state_path: str | None = Field(default=None, sa_column=Column(Text))
    docker_network: str | None = Field(default=None, sa_column=Column(Text))
    started_at: datetime | None = _ts()
    stopped_at: datetime | None = _ts()
    removed_at: datetime | None = _ts()
    last_op_at: datetime | None = _ts()
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    #: Migration 0003: the node whose disk holds the game's state (swarm backend).
    placement_node: str | None = Field(default=None, sa_column=Column(Text))
    #: Migration 0004 (issue 12): the crash-loop policy's quarantine, for reads and
    #: the REST filter; `crash_history` holds the policy's state.
    quarantined: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )


class OperationLogRow(SQLModel, table=True):
    __tablename__ = "operation_log"
    metadata = metadata
    __table_args__ = (Index("operation_log_game_started_idx", "game_id", "started_at"),)

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=False), primary_key=True)
    )
    game_id: str = Field(sa_column=Column(Text, nullable=False))
    op_kind: str = Field(sa_column=Column(Text, nullable=False))
    op_source: str = Field(sa_column=Column(Text, nullable=False))
    outcome: str = Field(sa_column=Column(Text, nullable=False))
    error_code: str | None = Field(default=None, sa_column=Column(Text))
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    image_ref: str | None = Field(default=None, sa_column=Column(Text))
    previous_image_ref: str | None = Field(default=None, sa_column=Column(Text))
    container_id: str | None = Field(default=None, sa_column=Column(Text))
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    finished_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class HealthSnapshotRow(SQLModel, table=True):
    __tablename__ = "health_snapshots"
    metadata = metadata

    game_id: str = Field(sa_column=Column(Text, primary_key=True))
    container_id: str | None = Field(default=None, sa_column=Column(Text))
    status: str = Field(sa_column=Column(Text, nullable=False))
    source: str = Field(sa_column=Column(Text, nullable=False))
    observed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    details: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    )


class GameFenceRow(SQLModel, table=True):
    """Coordination beside the record (migration 0002): see `domain.ordering`."""

    __tablename__ = "game_fences"
    metadata = metadata

    game_id: str = Field(sa_column=Column(Text, primary_key=True))
    fence: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_job_id: str | None = Field(default=None, sa_column=Column(Text))
    updated_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


class CrashHistoryRow(SQLModel, table=True):
    """The crash-loop policy's state per game (migration 0004, issue 12): see
    `domain.crashloop.CrashHistory`. Empty unless RTMANAGER_AUTO_RESTART=on."""

    __tablename__ = "crash_history"
    metadata = metadata
    __table_args__ = (Index("crash_history_next_restart_idx", "next_restart_at"),)

    game_id: str = Field(sa_column=Column(Text, primary_key=True))
    consecutive: int = Field(sa_column=Column(Integer, nullable=False, server_default="0"))
    restart_times: list[datetime] = Field(
        default_factory=list,
        sa_column=Column(
            ARRAY(DateTime(timezone=True)), nullable=False, server_default=text("'{}'")
        ),
    )
    pending_container_id: str | None = Field(default=None, sa_column=Column(Text))
    pending_reason: str | None = Field(default=None, sa_column=Column(Text))
    next_restart_at: datetime | None = _ts()
    attempt_counted: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )
    last_container_id: str | None = Field(default=None, sa_column=Column(Text))
    last_reason: str | None = Field(default=None, sa_column=Column(Text))
    last_exit_code: int | None = Field(default=None, sa_column=Column(Integer))
    last_crash_at: datetime | None = _ts()
    quarantined: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )
    quarantined_at: datetime | None = _ts()
    updated_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


class PatchProgressRow(SQLModel, table=True):
    """A health-gated patch under way (migration 0004, issue 12): see
    `domain.records.PatchProgress`. Empty unless RTMANAGER_PATCH_HEALTH_GATE=on."""

    __tablename__ = "patch_progress"
    metadata = metadata

    game_id: str = Field(sa_column=Column(Text, primary_key=True))
    phase: str = Field(sa_column=Column(Text, nullable=False))
    source: str = Field(sa_column=Column(Text, nullable=False))
    from_image_ref: str = Field(sa_column=Column(Text, nullable=False))
    to_image_ref: str = Field(sa_column=Column(Text, nullable=False))
    from_container_id: str | None = Field(default=None, sa_column=Column(Text))
    from_status: str = Field(sa_column=Column(Text, nullable=False))
    new_container_id: str | None = Field(default=None, sa_column=Column(Text))
    snapshot_path: str | None = Field(default=None, sa_column=Column(Text))
    failure: str | None = Field(default=None, sa_column=Column(Text))
    answered: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


class EngineUsageRow(SQLModel, table=True):
    """The latest usage sample per game (migration 0006, issue 13): see
    `domain.usage.EngineUsage`. Written by the watcher's usage sampler
    (RTMANAGER_ENGINE_USAGE=on), read by the REST wide view."""

    __tablename__ = "engine_usage"
    metadata = metadata

    game_id: str = Field(sa_column=Column(Text, primary_key=True))
    container_id: str = Field(sa_column=Column(Text, nullable=False))
    cpu_percent: float = Field(sa_column=Column(Double, nullable=False))
    memory_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    memory_limit_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    restart_count: int = Field(sa_column=Column(Integer, nullable=False))
    sampled_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
