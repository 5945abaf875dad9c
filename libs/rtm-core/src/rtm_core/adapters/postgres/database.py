"""PostgreSQL: the async engine and migrations under an advisory lock.

The DSN is libpq-style (`postgres://…?search_path=rtmanager&sslmode=disable`),
as operators already write it; asyncpg takes those two as connect arguments.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from rtm_core.adapters.postgres.tables import SCHEMA

log = logging.getLogger(__name__)

#: Arbitrary but fixed: every RTM process serialises migrations on this key.
MIGRATION_LOCK_KEY = 0x52544D5F4D494752  # "RTM_MIGR"


#: libpq DSN parameters the adapter honours; any other is refused, not ignored.
DSN_PARAMETERS = (
    "search_path",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "application_name",
)
_SSLMODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


def asyncpg_url(dsn: str) -> tuple[str, dict[str, Any]]:
    """Split a libpq DSN into an SQLAlchemy asyncpg URL and connect_args.

    Honoured: `search_path` (the schema), `sslmode` (libpq's six modes; the
    verify modes check the server against `sslrootcert`, `verify-full` its
    host name too), `sslcert`/`sslkey` (client certificate),
    `connect_timeout` (seconds), `application_name`.
    """
    parts = urlsplit(dsn)
    if parts.scheme not in {"postgres", "postgresql", "postgresql+asyncpg"}:
        raise ValueError(f"unsupported DSN scheme {parts.scheme!r}")
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - set(DSN_PARAMETERS))
    if unknown:
        raise ValueError(
            f"unsupported DSN parameter(s) {', '.join(unknown)}; "
            f"supported: {', '.join(DSN_PARAMETERS)}"
        )
    server_settings = {"application_name": query.get("application_name", "rtmanager")}
    if search_path := query.get("search_path"):
        server_settings["search_path"] = search_path
    connect_args: dict[str, Any] = {"server_settings": server_settings}
    if timeout := query.get("connect_timeout"):
        connect_args["timeout"] = float(timeout)
    if sslmode := query.get("sslmode"):
        connect_args["ssl"] = _ssl(sslmode, query)
    url = urlunsplit(("postgresql+asyncpg", parts.netloc, parts.path, "", ""))
    return url, connect_args


def _ssl(mode: str, query: dict[str, str]) -> bool | str | ssl.SSLContext:
    if mode not in _SSLMODES:
        raise ValueError(f"sslmode must be one of {', '.join(sorted(_SSLMODES))}")
    if mode == "disable":
        return False
    if mode in {"allow", "prefer", "require"} and not query.get("sslcert"):
        return mode
    context = ssl.create_default_context(cafile=query.get("sslrootcert"))
    context.check_hostname = mode == "verify-full"
    if mode in {"allow", "prefer", "require"}:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert := query.get("sslcert"):
        context.load_cert_chain(cert, query.get("sslkey"))
    return context


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


def create_read_pool(dsn: str, *, max_size: int = 10) -> asyncpg.Pool:
    """A plain asyncpg pool over the same DSN, for the hottest single-row reads
    (`GET /runtimes/{game_id}`): no ORM session, no SQLAlchemy pool events,
    statements prepared once per connection. Not awaited here: it opens its
    connections on first use (min_size 0), so a process that never reads this
    way holds none."""
    url, connect_args = asyncpg_url(dsn)
    plain = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    return asyncpg.create_pool(
        plain,
        min_size=0,
        max_size=max_size,
        max_inactive_connection_lifetime=300,
        reset=_keep_session,
        **connect_args,
    )


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """The read pool's connections only ever run single-row SELECTs: nothing to
    reset between uses, so no `RESET ALL`/`UNLISTEN`/`CLOSE ALL` round trip per
    release (asyncpg's default, a tenth of a read's CPU)."""


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
