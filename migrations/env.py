"""Alembic environment for the `rtmanager` schema.

RTM runs migrations itself (`rtm_core.adapters.postgres.database.migrate`) and hands in a connection
that already holds the advisory lock. The plain `alembic` CLI works too: it
connects with `RTMANAGER_POSTGRES_PRIMARY_DSN` and takes the same lock.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection

from rtm_core.adapters.postgres.tables import SCHEMA, metadata


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=SCHEMA,
        include_schemas=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return

    from rtm_core.adapters.postgres.database import create_engine, migrate

    async def main() -> None:
        engine = create_engine(os.environ["RTMANAGER_POSTGRES_PRIMARY_DSN"], pool_size=1)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(main())


if context.is_offline_mode():
    context.configure(
        url="postgresql://",
        target_metadata=metadata,
        version_table_schema=SCHEMA,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_online()
