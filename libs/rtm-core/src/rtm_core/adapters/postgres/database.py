"""PostgreSQL: the async engine and migrations under an advisory lock.

The DSN is libpq-style (`postgres://…?search_path=rtmanager&sslmode=disable`),
as operators already write it; asyncpg takes those two as connect arguments.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from rtm_core.adapters.postgres.tables import SCHEMA

log = logging.getLogger(__name__)

#: Arbitrary but fixed: every RTM process serialises migrations on this key.
MIGRATION_LOCK_KEY = 0x52544D5F4D494752  # "RTM_MIGR"


def asyncpg_url(dsn: str) -> tuple[str, dict[str, Any]]:
    """Split a libpq DSN into an SQLAlchemy asyncpg URL and connect_args."""
    parts = urlsplit(dsn)
    if parts.scheme not in {"postgres", "postgresql", "postgresql+asyncpg"}:
        raise ValueError(f"unsupported DSN scheme {parts.scheme!r}")
    query = dict(parse_qsl(parts.query))
    connect_args: dict[str, Any] = {"server_settings": {"application_name": "rtmanager"}}
    search_path = query.pop("search_path", None)
    if search_path:
        connect_args["server_settings"]["search_path"] = search_path
    sslmode = query.pop("sslmode", None)
    if sslmode:
        connect_args["ssl"] = False if sslmode == "disable" else sslmode
    url = urlunsplit(("postgresql+asyncpg", parts.netloc, parts.path, urlencode(query), ""))
    return url, connect_args


def create_engine(dsn: str, *, pool_size: int = 10) -> AsyncEngine:
    url, connect_args = asyncpg_url(dsn)
    # No pre-ping: it costs a round trip on every checkout, on the read path
    # that SPEC §10 bounds at p99 10 ms. A connection the server dropped fails
    # one call and is discarded; recycling bounds how stale one can get.
    return create_async_engine(
        url,
        connect_args=connect_args,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=300,
    )


def migrations_dir() -> Path:
    """Wheels ship the scripts inside the package; a source checkout keeps them at the root."""
    packaged = Path(__file__).parents[2] / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[6] / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    try:
        exists = connection.execute(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": SCHEMA}
        ).scalar()
        if not exists:
            # Normally provisioned with the role; created here for dev and tests.
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))
        connection.commit()
        command.upgrade(alembic_config(connection), "head")
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
        connection.commit()


async def migrate(engine: AsyncEngine) -> None:
    """Apply every migration; safe when several processes boot at once."""
    async with engine.connect() as conn:
        await conn.run_sync(_upgrade)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
