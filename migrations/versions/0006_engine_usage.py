"""engine_usage: the latest usage sample per game's engine

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Issue 13, opt-in (RTMANAGER_ENGINE_USAGE=on); with the default the table
stays empty. One row per game: CPU (percent of one CPU), memory and its
limit in bytes, the container's restart count and when it was sampled, for
the container named in `container_id` (the REST wide view shows it only
while that is still the record's container). The watcher's usage sampler
upserts every running engine's row once per pass and drops the rows of games
that are no longer running, in one transaction.

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "rtmanager"


def upgrade() -> None:
    op.create_table(
        "engine_usage",
        sa.Column("game_id", sa.Text, primary_key=True),
        sa.Column("container_id", sa.Text, nullable=False),
        sa.Column("cpu_percent", sa.Double, nullable=False),
        sa.Column("memory_bytes", sa.BigInteger, nullable=False),
        sa.Column("memory_limit_bytes", sa.BigInteger, nullable=False),
        sa.Column("restart_count", sa.Integer, nullable=False),
        sa.Column("sampled_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("engine_usage", schema=SCHEMA)
