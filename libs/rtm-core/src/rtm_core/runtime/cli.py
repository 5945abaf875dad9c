"""`rtm-migrate`: apply migrations and exit (compose one-shot, Helm hook)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from rtm_core.adapters.postgres import database as db
from rtm_core.runtime.logs import setup_logging

log = logging.getLogger("rtm_core.migrate")


def migrate_main() -> None:
    setup_logging("rtm-migrate", os.environ.get("RTMANAGER_LOG_LEVEL", "info"))
    dsn = os.environ.get("RTMANAGER_POSTGRES_PRIMARY_DSN")
    if not dsn:
        log.error(
            "invalid configuration", extra={"error": "RTMANAGER_POSTGRES_PRIMARY_DSN is required"}
        )
        sys.exit(2)

    async def run() -> None:
        engine = db.create_engine(dsn, pool_size=1)
        try:
            await db.migrate(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except Exception as exc:
        log.error("migrations failed", extra={"error": str(exc) or type(exc).__name__})
        sys.exit(1)
    log.info("migrations applied")
