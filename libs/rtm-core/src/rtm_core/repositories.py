"""Repositories over the three tables.

A lifecycle operation writes its record and its operation-log row in one
transaction (`Repositories.commit_operation`), so the log never claims a
change the record does not show, nor the reverse.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlmodel import col

from rtm_core.domain import RuntimeStatus
from rtm_core.schema import HealthSnapshot, OperationLogEntry, RuntimeRecord
from rtm_core.telemetry import tracer

P = ParamSpec("P")
R = TypeVar("R")


def traced(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """A child span per repository call, so a trace shows its PostgreSQL time."""
    name = f"postgres.{method.__name__}"

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with tracer.start_as_current_span(name, attributes={"db.system": "postgresql"}):
            return await method(*args, **kwargs)

    return wrapper


#: Rows per INSERT: 6 parameters each, well under PostgreSQL's 32767.
_SNAPSHOT_BATCH = 1000
_SNAPSHOT_COLUMNS = ("game_id", "container_id", "status", "source", "observed_at", "details")
_RECORD_COLUMNS = [c.name for c in RuntimeRecord.__table__.columns]  # type: ignore[attr-defined]


class Repositories:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # Single-statement reads need no BEGIN/ROLLBACK around them.
        self._reads = async_sessionmaker(
            engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )

    def session(self) -> AsyncSession:
        return self._sessions()

    # runtime_records -------------------------------------------------------

    @traced
    async def get_record(self, game_id: str) -> RuntimeRecord | None:
        async with self._reads() as s:
            return await s.get(RuntimeRecord, game_id)

    @traced
    async def list_records(self, status: str | None = None) -> Sequence[RuntimeRecord]:
        query = select(RuntimeRecord).order_by(col(RuntimeRecord.game_id))
        if status is not None:
            query = query.where(col(RuntimeRecord.status) == status)
        async with self._reads() as s:
            return (await s.execute(query)).scalars().all()

    @traced
    async def live_records(self) -> Sequence[RuntimeRecord]:
        """Every record that still claims a container (`running` or `stopped`)."""
        query = (
            select(RuntimeRecord)
            .where(col(RuntimeRecord.status) != RuntimeStatus.REMOVED.value)
            .order_by(col(RuntimeRecord.game_id))
        )
        async with self._reads() as s:
            return (await s.execute(query)).scalars().all()

    @traced
    async def stopped_before(self, cutoff: datetime) -> Sequence[RuntimeRecord]:
        """`stopped` records whose `stopped_at` is older than `cutoff` (retention cleanup)."""
        query = (
            select(RuntimeRecord)
            .where(
                col(RuntimeRecord.status) == RuntimeStatus.STOPPED.value,
                col(RuntimeRecord.stopped_at) < cutoff,
            )
            .order_by(col(RuntimeRecord.stopped_at))
        )
        async with self._reads() as s:
            return (await s.execute(query)).scalars().all()

    async def count_by_status(self) -> dict[str, int]:
        status = col(RuntimeRecord.status)
        query = select(status, func.count()).group_by(status)
        async with self._reads() as s:
            return {status: n for status, n in (await s.execute(query)).all()}

    @traced
    async def save_record(self, record: RuntimeRecord) -> None:
        async with self._sessions() as s, s.begin():
            await _upsert_record(s, record)

    @traced
    async def commit_operation(
        self, entry: OperationLogEntry, record: RuntimeRecord | None = None
    ) -> None:
        async with self._sessions() as s, s.begin():
            if record is not None:
                await _upsert_record(s, record)
            s.add(entry)

    # operation_log ---------------------------------------------------------

    @traced
    async def append_operation(self, entry: OperationLogEntry) -> None:
        await self.commit_operation(entry)

    @traced
    async def operations(self, game_id: str, limit: int = 50) -> Sequence[OperationLogEntry]:
        query = (
            select(OperationLogEntry)
            .where(col(OperationLogEntry.game_id) == game_id)
            .order_by(col(OperationLogEntry.started_at).desc(), col(OperationLogEntry.id).desc())
            .limit(limit)
        )
        async with self._reads() as s:
            return (await s.execute(query)).scalars().all()

    # health_snapshots ------------------------------------------------------

    @traced
    async def upsert_snapshot(
        self,
        *,
        game_id: str,
        container_id: str | None,
        status: str,
        source: str,
        observed_at: datetime,
        details: dict[str, Any],
    ) -> None:
        await self._upsert_snapshots(
            [
                {
                    "game_id": game_id,
                    "container_id": container_id,
                    "status": status,
                    "source": source,
                    "observed_at": observed_at,
                    "details": details,
                }
            ]
        )

    @traced
    async def upsert_snapshots(self, rows: Sequence[dict[str, Any]]) -> None:
        """Many games' latest snapshots (rows of `upsert_snapshot`'s fields) in one
        transaction, as a watcher cycle produces them; for a game given twice the
        later row wins."""
        await self._upsert_snapshots(rows)

    async def _upsert_snapshots(self, rows: Sequence[dict[str, Any]]) -> None:
        latest = list({row["game_id"]: row for row in rows}.values())
        if not latest:
            return
        async with self._sessions() as s, s.begin():
            for at in range(0, len(latest), _SNAPSHOT_BATCH):
                table = HealthSnapshot.__table__  # type: ignore[attr-defined]
                stmt = insert(table).values(latest[at : at + _SNAPSHOT_BATCH])
                stmt = stmt.on_conflict_do_update(
                    index_elements=["game_id"],
                    set_={k: stmt.excluded[k] for k in _SNAPSHOT_COLUMNS if k != "game_id"},
                )
                await s.execute(stmt)

    @traced
    async def get_snapshot(self, game_id: str) -> HealthSnapshot | None:
        async with self._reads() as s:
            return await s.get(HealthSnapshot, game_id)


async def _upsert_record(session: AsyncSession, record: RuntimeRecord) -> None:
    values = {c: getattr(record, c) for c in _RECORD_COLUMNS if c != "created_at"}
    insert_stmt = insert(RuntimeRecord.__table__).values(**values)  # type: ignore[attr-defined]
    stmt = insert_stmt.on_conflict_do_update(
        index_elements=["game_id"],
        set_={k: insert_stmt.excluded[k] for k in values if k != "game_id"},
    ).returning(col(RuntimeRecord.created_at))
    record.created_at = (await session.execute(stmt)).scalar_one()
