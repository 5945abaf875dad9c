"""game_fences: per-game fencing number and last applied job

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Coordination data kept beside `runtime_records` (whose columns are the REST
RuntimeRecord of the contract): the fencing number of the newest lease that
wrote the game's record, and the stream entry id (or REST order id) of the
last job applied to it. Written in the same transaction as the record.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "rtmanager"


def upgrade() -> None:
    op.create_table(
        "game_fences",
        sa.Column("game_id", sa.Text, primary_key=True),
        sa.Column("fence", sa.BigInteger, nullable=False),
        sa.Column("last_job_id", sa.Text),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("game_fences", schema=SCHEMA)
