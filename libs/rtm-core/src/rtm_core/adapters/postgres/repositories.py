"""PostgreSQL repositories over the three tables, speaking domain records.

A lifecycle operation writes its record and its operation-log row in one
transaction (`commit_operation`), so the log never claims a change the
record does not show, nor the reverse.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import asyncpg
from sqlalchemy import Text, any_, bindparam, delete, func, select, tuple_
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlmodel import col

from rtm_core.adapters.postgres.database import create_read_pool
from rtm_core.adapters.postgres.tables import (
    SCHEMA,
    CrashHistoryRow,
    EngineUsageRow,
    GameFenceRow,
    HealthSnapshotRow,
    OperationLogRow,
    PatchProgressRow,
    RuntimeRecordRow,
)
from rtm_core.domain.crashloop import CrashHistory
from rtm_core.domain.errors import FencedOut, ServiceUnavailable
from rtm_core.domain.ordering import GameFence
from rtm_core.domain.records import (
    HealthSnapshot,
    OperationLogEntry,
    PatchProgress,
    RecordKey,
    RuntimeRecord,
)
from rtm_core.domain.usage import EngineUsage
from rtm_core.domain.vocabulary import RuntimeStatus
from rtm_core.observability import tracer
from rtm_core.ports import FencedCommit

P = ParamSpec("P")
R = TypeVar("R")


def traced(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """A child span per repository call, so a trace shows its PostgreSQL time;
    an outage leaves it as `ServiceUnavailable` (see `outage_mapped`)."""
    name = f"postgres.{method.__name__}"
    mapped = outage_mapped(method)

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with tracer.start_as_current_span(name, attributes={"db.system": "postgresql"}):
            return await mapped(*args, **kwargs)

    return wrapper


#: SQLSTATEs of "no server to talk to", as the driver's own errors carry them
#: (they reach us unwrapped while a pool connection is being opened): the
#: shutdown and startup states of class 57 (not 57014, a cancelled statement);
#: all of class 08 (connection exception) besides.
_OUTAGE_STATES = {"57P01", "57P02", "57P03"}


def is_outage(exc: BaseException) -> bool:
    """A connection-level failure: refused, reset, timed out, closed by a
    restarting server. Not a failed statement (constraint, syntax, fence)."""
    if isinstance(exc, OperationalError | InterfaceError | asyncpg.InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        # A pooled connection that a restarting server closed arrives as a
        # plain DBAPIError (not invalidated) whose driver error carries the
        # state, e.g. 57P01 on the first statement after a PostgreSQL restart.
        if exc.connection_invalidated:
            return True
        driver = exc.orig
        return driver is not None and (
            is_outage(driver) or (driver.__cause__ is not None and is_outage(driver.__cause__))
        )
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and (sqlstate.startswith("08") or sqlstate in _OUTAGE_STATES):
        return True
    return isinstance(exc, OSError)


def outage_mapped(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """PostgreSQL away → `ServiceUnavailable("postgres unavailable: …")`, SPEC's 503:
    REST answers it, stream jobs retry it. Every other error passes unchanged."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except Exception as exc:
            if not is_outage(exc):
                raise
            cause = getattr(exc, "orig", None) or exc
            reason = str(cause) or type(cause).__name__
            raise ServiceUnavailable(f"postgres unavailable: {reason}") from exc

    return wrapper


_SNAPSHOT_COLUMNS = ("game_id", "container_id", "status", "source", "observed_at", "details")
_RECORD_COLUMNS = [f.name for f in dataclasses.fields(RuntimeRecord)]
_RECORD_TABLE = RuntimeRecordRow.__table__  # type: ignore[attr-defined]
_FENCE_TABLE = GameFenceRow.__table__  # type: ignore[attr-defined]
_CRASH_TABLE = CrashHistoryRow.__table__  # type: ignore[attr-defined]
_PATCH_TABLE = PatchProgressRow.__table__  # type: ignore[attr-defined]
_USAGE_TABLE = EngineUsageRow.__table__  # type: ignore[attr-defined]
_USAGE_COLUMNS = [f.name for f in dataclasses.fields(EngineUsage)]
#: Rows per INSERT: 7 parameters each.
_USAGE_BATCH = 1000
_LOG_TABLE = OperationLogRow.__table__  # type: ignore[attr-defined]
_CRASH_COLUMNS = [f.name for f in dataclasses.fields(CrashHistory)]
_PATCH_FIELDS = dataclasses.fields(PatchProgress)
_PATCH_COLUMNS = [f.name for f in _PATCH_FIELDS if f.name != "updated_at"]


def _text_array(name: str, values: Sequence[str]) -> Any:
    """One array parameter, however many values (an IN list would take one
    parameter each, and PostgreSQL takes at most 32767)."""
    return bindparam(name, list(values), type_=ARRAY(Text))


def _record(row: RuntimeRecordRow) -> RuntimeRecord:
    return RuntimeRecord(**{c: getattr(row, c) for c in _RECORD_COLUMNS})


def _crash(row: CrashHistoryRow) -> CrashHistory:
    history = CrashHistory(**{c: getattr(row, c) for c in _CRASH_COLUMNS})
    history.restart_times = list(row.restart_times or [])
    return history


def _patch(row: PatchProgressRow) -> PatchProgress:
    return PatchProgress(**{f.name: getattr(row, f.name) for f in _PATCH_FIELDS})


def _entry(row: OperationLogRow) -> OperationLogEntry:
    return OperationLogEntry(**{f.name: getattr(row, f.name) for f in _ENTRY_FIELDS})


def _snapshot(row: HealthSnapshotRow) -> HealthSnapshot:
    return HealthSnapshot(**{c: getattr(row, c) for c in _SNAPSHOT_COLUMNS})


_ENTRY_FIELDS = dataclasses.fields(OperationLogEntry)


#: `get_record` on the plain pool: the record's columns in dataclass order.
_GET_RECORD = (
    f"SELECT {', '.join(_RECORD_COLUMNS)} FROM {SCHEMA}.runtime_records WHERE game_id = $1"
)


def _typed(table: Any, columns: Sequence[str], first: int) -> str:
    """`$n::type, …` for `columns` of `table`, numbered from `first`."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return ", ".join(
        f"${first + i}::{table.c[c].type.compile(dialect=dialect)}" for i, c in enumerate(columns)
    )


_FENCED_RECORD_COLUMNS = [c for c in _RECORD_COLUMNS if c != "created_at"]
_LOG_COLUMNS = [f.name for f in dataclasses.fields(OperationLogEntry) if f.name != "id"]
#: `commit_operation`'s usual case as one statement (issue 14): the fence claimed
#: (refused when a newer one is stored), then the record and the row written only
#: if it was. One statement is one transaction; the fence row stays locked until
#: it ends, as in the multi-statement transaction this replaces.
_FENCED_COMMIT = f"""
WITH f AS (
  INSERT INTO {SCHEMA}.game_fences AS g (game_id, fence, last_job_id)
  VALUES ($1::text, $2::bigint, $3::text)
  ON CONFLICT (game_id) DO UPDATE SET fence = EXCLUDED.fence,
    last_job_id = COALESCE(EXCLUDED.last_job_id, g.last_job_id), updated_at = now()
  WHERE g.fence <= EXCLUDED.fence
  RETURNING 1
), r AS (
  INSERT INTO {SCHEMA}.runtime_records AS t ({", ".join(_FENCED_RECORD_COLUMNS)})
  SELECT {_typed(_RECORD_TABLE, _FENCED_RECORD_COLUMNS, 4)} WHERE EXISTS (SELECT 1 FROM f)
  ON CONFLICT (game_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _FENCED_RECORD_COLUMNS if c != "game_id")}
  RETURNING t.created_at
), l AS (
  INSERT INTO {SCHEMA}.operation_log ({", ".join(_LOG_COLUMNS)})
  SELECT {_typed(_LOG_TABLE, _LOG_COLUMNS, 4 + len(_FENCED_RECORD_COLUMNS))}
  WHERE EXISTS (SELECT 1 FROM f)
  RETURNING id
)
SELECT EXISTS (SELECT 1 FROM f), (SELECT created_at FROM r), (SELECT id FROM l)
"""
_GET_RECORDS = (
    f"SELECT {', '.join(_RECORD_COLUMNS)} FROM {SCHEMA}.runtime_records"
    " WHERE game_id = ANY($1::text[])"
)


def _arrays(table: Any, columns: Sequence[str]) -> str:
    """`unnest($1::type[], …)` over `columns` of `table`: many rows, one parameter a column."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return "unnest({})".format(
        ", ".join(
            f"${i + 1}::{table.c[c].type.compile(dialect=dialect)}[]" for i, c in enumerate(columns)
        )
    )


#: `commit_operations` on the plain pool: one statement per table, whole
#: columns as arrays (no per-row SQL to build or parse).
_CLAIM_FENCES = f"""
INSERT INTO {SCHEMA}.game_fences AS g (game_id, fence)
SELECT * FROM unnest($1::text[], $2::bigint[])
ON CONFLICT (game_id) DO UPDATE SET fence = EXCLUDED.fence, updated_at = now()
WHERE g.fence <= EXCLUDED.fence
RETURNING game_id
"""
_UPSERT_RECORDS = f"""
INSERT INTO {SCHEMA}.runtime_records AS t ({", ".join(_FENCED_RECORD_COLUMNS)})
SELECT * FROM {_arrays(_RECORD_TABLE, _FENCED_RECORD_COLUMNS)}
ON CONFLICT (game_id) DO UPDATE SET
  {", ".join(f"{c} = EXCLUDED.{c}" for c in _FENCED_RECORD_COLUMNS if c != "game_id")}
RETURNING game_id, created_at
"""
_APPEND_ROWS = f"""
INSERT INTO {SCHEMA}.operation_log ({", ".join(_LOG_COLUMNS)})
SELECT * FROM {_arrays(_LOG_TABLE, _LOG_COLUMNS)}
RETURNING id, game_id
"""


async def _commit_many(pool: asyncpg.Pool, ordered: Sequence[FencedCommit]) -> set[str]:
    """`Repositories.commit_operations` in three statements and one transaction."""
    fenced = [c for c in ordered if c.fence is not None]
    async with pool.acquire() as conn, conn.transaction():
        refused: set[str] = set()
        if fenced:
            claimed = await conn.fetch(
                _CLAIM_FENCES, [c.entry.game_id for c in fenced], [c.fence for c in fenced]
            )
            refused = {c.entry.game_id for c in fenced} - {r[0] for r in claimed}
        kept = [c for c in ordered if c.entry.game_id not in refused]
        records = [c.record for c in kept if c.record is not None]
        if records:
            columns = [[getattr(r, c) for r in records] for c in _FENCED_RECORD_COLUMNS]
            created = dict(await conn.fetch(_UPSERT_RECORDS, *columns))
            for r in records:
                r.created_at = created[r.game_id]
        if kept:
            columns = [[getattr(c.entry, n) for c in kept] for n in _LOG_COLUMNS]
            ids = {game_id: row_id for row_id, game_id in await conn.fetch(_APPEND_ROWS, *columns)}
            for c in kept:
                c.entry.id = ids[c.entry.game_id]
    return refused


#: A watcher cycle's snapshots in one statement (issue 14), whole columns as arrays.
_UPSERT_SNAPSHOTS = f"""
INSERT INTO {SCHEMA}.health_snapshots AS h ({", ".join(_SNAPSHOT_COLUMNS)})
SELECT g, c, st, so, o, d::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[])
  AS u(g, c, st, so, o, d)
ON CONFLICT (game_id) DO UPDATE SET
  {", ".join(f"{c} = EXCLUDED.{c}" for c in _SNAPSHOT_COLUMNS if c != "game_id")}
"""
_LIST_RECORDS = (
    f"SELECT {', '.join(_RECORD_COLUMNS)} FROM {SCHEMA}.runtime_records"
    " WHERE ($1::text IS NULL OR status = $1) AND ($2::boolean IS NULL OR quarantined = $2)"
    " ORDER BY game_id"
)
_LIVE_RECORDS = (
    f"SELECT {', '.join(_RECORD_COLUMNS)} FROM {SCHEMA}.runtime_records"
    " WHERE status <> 'removed' ORDER BY game_id"
)
_GET_FENCE = f"SELECT fence, last_job_id FROM {SCHEMA}.game_fences WHERE game_id = $1"


class Repositories:
    def __init__(self, engine: AsyncEngine, *, read_dsn: str) -> None:
        """`read_dsn` (the same database as `engine`): the hot reads and the usual
        commits go through a plain asyncpg pool over it (`database.create_read_pool`,
        opened on first use), the rest through SQLAlchemy sessions of `engine`."""
        self._read_dsn = read_dsn
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # Single-statement reads need no BEGIN/ROLLBACK around them.
        self._reads = async_sessionmaker(
            engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )

    def session(self) -> AsyncSession:
        return self._sessions()

    # runtime_records -------------------------------------------------------

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def _plain(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await create_read_pool(self._read_dsn)
        assert self._pool is not None
        return self._pool

    @traced
    async def get_record(self, game_id: str) -> RuntimeRecord | None:
        """The hottest read (every GET of a runtime, every operation's re-check):
        one prepared statement on the plain pool."""
        found = await (await self._plain()).fetchrow(_GET_RECORD, game_id)
        return None if found is None else RuntimeRecord(**dict(found.items()))

    @traced
    async def list_records(
        self, status: str | None = None, *, quarantined: bool | None = None
    ) -> list[RuntimeRecord]:
        # every cycle of the watcher, every REST list
        rows = await (await self._plain()).fetch(_LIST_RECORDS, status, quarantined)
        return [RuntimeRecord(**dict(r.items())) for r in rows]

    @traced
    async def page_records(
        self,
        status: str | None = None,
        *,
        quarantined: bool | None = None,
        after: RecordKey | None = None,
        limit: int = 100,
    ) -> list[RuntimeRecord]:
        """One page in `(created_at, game_id)` order: a range scan of
        `runtime_records_created_game_idx` (migration 0005) from `after` on."""
        created, game = col(RuntimeRecordRow.created_at), col(RuntimeRecordRow.game_id)
        query = select(RuntimeRecordRow).order_by(created, game).limit(limit)
        if after is not None:
            query = query.where(tuple_(created, game) > tuple_(after.created_at, after.game_id))
        if status is not None:
            query = query.where(col(RuntimeRecordRow.status) == status)
        if quarantined is not None:
            query = query.where(col(RuntimeRecordRow.quarantined).is_(quarantined))
        return await self._records(query)

    @traced
    async def live_records(self) -> list[RuntimeRecord]:
        """Every record that still claims a container (`running` or `stopped`)."""
        rows = await (await self._plain()).fetch(_LIVE_RECORDS)  # every reconcile pass
        return [RuntimeRecord(**dict(r.items())) for r in rows]

    @traced
    async def stopped_before(self, cutoff: datetime) -> list[RuntimeRecord]:
        """`stopped` records whose `stopped_at` is older than `cutoff` (retention cleanup)."""
        query = (
            select(RuntimeRecordRow)
            .where(
                col(RuntimeRecordRow.status) == RuntimeStatus.STOPPED.value,
                col(RuntimeRecordRow.stopped_at) < cutoff,
            )
            .order_by(col(RuntimeRecordRow.stopped_at))
        )
        return await self._records(query)

    async def _records(self, query: Any) -> list[RuntimeRecord]:
        async with self._reads() as s:
            return [_record(row) for row in (await s.execute(query)).scalars().all()]

    @outage_mapped
    async def count_by_status(self) -> dict[str, int]:
        status = col(RuntimeRecordRow.status)
        query = select(status, func.count()).group_by(status)
        async with self._reads() as s:
            return {status: n for status, n in (await s.execute(query)).all()}

    @traced
    async def save_record(self, record: RuntimeRecord) -> None:
        async with self._sessions() as s, s.begin():
            await _upsert_record(s, record)

    @traced
    async def get_fence(self, game_id: str) -> GameFence | None:
        found = await (await self._plain()).fetchrow(_GET_FENCE, game_id)
        return None if found is None else GameFence(found[0], found[1])

    @traced
    async def get_records(self, game_ids: Sequence[str]) -> dict[str, RuntimeRecord]:
        rows = await (await self._plain()).fetch(_GET_RECORDS, list(game_ids))
        return {r["game_id"]: RuntimeRecord(**dict(r.items())) for r in rows}

    @traced
    async def get_fences(self, game_ids: Sequence[str]) -> dict[str, GameFence]:
        query = select(_FENCE_TABLE.c.game_id, _FENCE_TABLE.c.fence, _FENCE_TABLE.c.last_job_id)
        query = query.where(_FENCE_TABLE.c.game_id.in_(list(game_ids)))
        async with self._reads() as s:
            rows = (await s.execute(query)).all()
        return {game_id: GameFence(fence, last_job_id) for game_id, fence, last_job_id in rows}

    @traced
    async def commit_operations(self, commits: Sequence[FencedCommit]) -> set[str]:
        """One transaction, a few multi-row statements: the fences first (each
        refused on its own when a newer one is stored, the rest row-locked
        until commit), then the records and rows of the games whose fence held."""
        ordered = sorted(commits, key=lambda c: c.entry.game_id)
        return await _commit_many(await self._plain(), ordered)

    @traced
    async def commit_operation(
        self,
        entry: OperationLogEntry,
        record: RuntimeRecord | None = None,
        *,
        fence: int | None = None,
        job_id: str | None = None,
        finish_patch: bool = False,
        reset_crash_history: bool = False,
    ) -> None:
        if (
            fence is not None
            and record is not None
            and not finish_patch
            and not reset_crash_history
        ):
            await self._fenced_commit(await self._plain(), entry, record, fence, job_id)
            return
        async with self._sessions() as s, s.begin():
            if fence is not None:
                await _claim_fence(s, entry.game_id, fence, job_id)
            if record is not None:
                await _upsert_record(s, record)
            if finish_patch:
                await s.execute(delete(_PATCH_TABLE).where(_PATCH_TABLE.c.game_id == entry.game_id))
            if reset_crash_history:
                await _reset_crash_history(s, entry.game_id)
            row = OperationLogRow(**dataclasses.asdict(entry))
            s.add(row)
            await s.flush()
            entry.id = row.id

    async def _fenced_commit(
        self,
        pool: asyncpg.Pool,
        entry: OperationLogEntry,
        record: RuntimeRecord,
        fence: int,
        job_id: str | None,
    ) -> None:
        claimed, created_at, row_id = await pool.fetchrow(
            _FENCED_COMMIT,
            entry.game_id,
            fence,
            job_id,
            *(getattr(record, c) for c in _FENCED_RECORD_COLUMNS),
            *(getattr(entry, c) for c in _LOG_COLUMNS),
        )
        if not claimed:
            raise FencedOut(
                f"game {entry.game_id} was written under a newer lease than fence {fence}"
            )
        record.created_at = created_at
        entry.id = row_id

    # operation_log ---------------------------------------------------------

    @traced
    async def append_operation(self, entry: OperationLogEntry) -> None:
        await self.commit_operation(entry)

    @traced
    async def operations(self, game_id: str, limit: int = 50) -> list[OperationLogEntry]:
        query = (
            select(OperationLogRow)
            .where(col(OperationLogRow.game_id) == game_id)
            .order_by(col(OperationLogRow.started_at).desc(), col(OperationLogRow.id).desc())
            .limit(limit)
        )
        async with self._reads() as s:
            return [_entry(row) for row in (await s.execute(query)).scalars().all()]

    # health_snapshots ------------------------------------------------------

    @traced
    async def upsert_snapshots(self, snapshots: Sequence[HealthSnapshot]) -> None:
        """Many games' latest snapshots in one transaction, as a watcher cycle
        produces them; for a game given twice the later one wins."""
        latest = list(
            {s.game_id: {c: getattr(s, c) for c in _SNAPSHOT_COLUMNS} for s in snapshots}.values()
        )
        if not latest:
            return
        columns = [[row[c] for row in latest] for c in _SNAPSHOT_COLUMNS]
        columns[-1] = [json.dumps(d) for d in columns[-1]]  # details, as jsonb text
        await (await self._plain()).execute(_UPSERT_SNAPSHOTS, *columns)

    @traced
    async def get_snapshot(self, game_id: str) -> HealthSnapshot | None:
        async with self._reads() as s:
            row = await s.get(HealthSnapshotRow, game_id)
        return None if row is None else _snapshot(row)

    # engine_usage (issue 13) -----------------------------------------------

    @traced
    async def save_usages(self, usages: Sequence[EngineUsage], *, keep: Sequence[str]) -> None:
        """One watcher pass: upsert its samples (batched) and drop the rows of
        games not in `keep` (no longer running), in one transaction."""
        latest = {u.game_id: {c: getattr(u, c) for c in _USAGE_COLUMNS} for u in usages}
        rows = list(latest.values())
        async with self._sessions() as s, s.begin():
            for at in range(0, len(rows), _USAGE_BATCH):
                stmt = insert(_USAGE_TABLE).values(rows[at : at + _USAGE_BATCH])
                stmt = stmt.on_conflict_do_update(
                    index_elements=["game_id"],
                    set_={k: stmt.excluded[k] for k in _USAGE_COLUMNS if k != "game_id"},
                )
                await s.execute(stmt)
            running = _USAGE_TABLE.c.game_id == any_(_text_array("keep", keep))
            await s.execute(delete(_USAGE_TABLE).where(~running))

    @traced
    async def usages(self, game_ids: Sequence[str]) -> dict[str, EngineUsage]:
        if not game_ids:
            return {}
        wanted = col(EngineUsageRow.game_id) == any_(_text_array("ids", game_ids))
        query = select(EngineUsageRow).where(wanted)
        async with self._reads() as s:
            rows = (await s.execute(query)).scalars().all()
        return {r.game_id: EngineUsage(**{c: getattr(r, c) for c in _USAGE_COLUMNS}) for r in rows}

    # crash_history (issue 12) ----------------------------------------------

    @traced
    async def get_crash_history(self, game_id: str) -> CrashHistory | None:
        async with self._reads() as s:
            row = await s.get(CrashHistoryRow, game_id)
        return None if row is None else _crash(row)

    @traced
    async def save_crash_history(self, history: CrashHistory) -> None:
        """The history, and its quarantine on the game's record, in one transaction."""
        values = {c: getattr(history, c) for c in _CRASH_COLUMNS}
        async with self._sessions() as s, s.begin():
            await _upsert(s, _CRASH_TABLE, values)
            await _mark_quarantine(s, history.game_id, history.quarantined)

    @traced
    async def crash_histories(self) -> list[CrashHistory]:
        """Games with a restart scheduled or a quarantine (the loop's work list)."""
        query = (
            select(CrashHistoryRow)
            .where(
                col(CrashHistoryRow.pending_container_id).is_not(None)
                | col(CrashHistoryRow.quarantined)
            )
            .order_by(col(CrashHistoryRow.game_id))
        )
        async with self._reads() as s:
            return [_crash(row) for row in (await s.execute(query)).scalars().all()]

    # patch_progress (issue 12) ---------------------------------------------

    @traced
    async def get_patch_progress(self, game_id: str) -> PatchProgress | None:
        async with self._reads() as s:
            row = await s.get(PatchProgressRow, game_id)
        return None if row is None else _patch(row)

    @traced
    async def save_patch_progress(self, progress: PatchProgress) -> None:
        values = {c: getattr(progress, c) for c in _PATCH_COLUMNS}
        async with self._sessions() as s, s.begin():
            await _upsert(s, _PATCH_TABLE, values)

    @traced
    async def delete_patch_progress(self, game_id: str) -> None:
        async with self._sessions() as s, s.begin():
            await s.execute(delete(_PATCH_TABLE).where(_PATCH_TABLE.c.game_id == game_id))

    @traced
    async def patches_in_progress(self) -> list[PatchProgress]:
        query = select(PatchProgressRow).order_by(col(PatchProgressRow.game_id))
        async with self._reads() as s:
            return [_patch(row) for row in (await s.execute(query)).scalars().all()]


async def _upsert_record(session: AsyncSession, record: RuntimeRecord) -> None:
    values = {c: getattr(record, c) for c in _RECORD_COLUMNS if c != "created_at"}
    insert_stmt = insert(_RECORD_TABLE).values(**values)
    stmt = insert_stmt.on_conflict_do_update(
        index_elements=["game_id"],
        set_={k: insert_stmt.excluded[k] for k in values if k != "game_id"},
    ).returning(col(RuntimeRecordRow.created_at))
    record.created_at = (await session.execute(stmt)).scalar_one()


async def _upsert(session: AsyncSession, table: Any, values: dict[str, Any]) -> None:
    stmt = insert(table).values(**values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["game_id"],
            set_={
                **{k: stmt.excluded[k] for k in values if k != "game_id"},
                "updated_at": func.now(),
            },
        )
    )


async def _mark_quarantine(session: AsyncSession, game_id: str, quarantined: bool) -> None:
    await session.execute(
        _RECORD_TABLE.update()
        .where(
            _RECORD_TABLE.c.game_id == game_id,
            _RECORD_TABLE.c.quarantined.is_distinct_from(quarantined),
        )
        .values(quarantined=quarantined)
    )


async def _reset_crash_history(session: AsyncSession, game_id: str) -> None:
    """A command relaunched the engine: the policy starts over, the last crash is kept
    (so a late report of it is still recognised), the quarantine is lifted."""
    await session.execute(
        _CRASH_TABLE.update()
        .where(_CRASH_TABLE.c.game_id == game_id)
        .values(
            consecutive=0,
            restart_times=[],
            pending_container_id=None,
            pending_reason=None,
            next_restart_at=None,
            attempt_counted=False,
            quarantined=False,
            quarantined_at=None,
            updated_at=func.now(),
        )
    )
    await _mark_quarantine(session, game_id, False)


async def _claim_fence(session: AsyncSession, game_id: str, fence: int, job_id: str | None) -> None:
    """Write the game's fence (and last job) unless a newer fence is stored: one
    statement that refuses a stale writer and row-locks the game until commit,
    so the record written after it in this transaction is fenced too."""
    values = insert(_FENCE_TABLE).values(game_id=game_id, fence=fence, last_job_id=job_id)
    stmt = values.on_conflict_do_update(
        index_elements=["game_id"],
        set_={
            "fence": values.excluded.fence,
            "last_job_id": func.coalesce(values.excluded.last_job_id, _FENCE_TABLE.c.last_job_id),
            "updated_at": func.now(),
        },
        where=_FENCE_TABLE.c.fence <= values.excluded.fence,
    ).returning(_FENCE_TABLE.c.fence)
    if (await session.execute(stmt)).scalar_one_or_none() is None:
        raise FencedOut(f"game {game_id} was written under a newer lease than fence {fence}")
