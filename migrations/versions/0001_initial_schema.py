"""initial rtmanager schema: runtime_records, operation_log, health_snapshots

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "rtmanager"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runtime_records",
        sa.Column("game_id", sa.Text, primary_key=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("current_container_id", sa.Text),
        sa.Column("current_image_ref", sa.Text),
        sa.Column("engine_endpoint", sa.Text),
        sa.Column("state_path", sa.Text),
        sa.Column("docker_network", sa.Text),
        sa.Column("started_at", TS),
        sa.Column("stopped_at", TS),
        sa.Column("removed_at", TS),
        sa.Column("last_op_at", TS),
        sa.Column("created_at", TS, nullable=False, server_default=sa.text("now()")),
        sa.CheckConstraint(
            "status IN ('running', 'stopped', 'removed')", name="runtime_records_status_check"
        ),
        schema=SCHEMA,
    )
    op.create_index("runtime_records_status_idx", "runtime_records", ["status"], schema=SCHEMA)

    op.create_table(
        "operation_log",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("game_id", sa.Text, nullable=False),
        sa.Column("op_kind", sa.Text, nullable=False),
        sa.Column("op_source", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("error_code", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("image_ref", sa.Text),
        sa.Column("previous_image_ref", sa.Text),
        sa.Column("container_id", sa.Text),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=False),
        sa.CheckConstraint("outcome IN ('success', 'failure')", name="operation_log_outcome_check"),
        schema=SCHEMA,
    )
    op.create_index(
        "operation_log_game_started_idx",
        "operation_log",
        ["game_id", "started_at"],
        schema=SCHEMA,
    )

    op.create_table(
        "health_snapshots",
        sa.Column("game_id", sa.Text, primary_key=True),
        sa.Column("container_id", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("observed_at", TS, nullable=False),
        sa.Column("details", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("health_snapshots", schema=SCHEMA)
    op.drop_index("operation_log_game_started_idx", "operation_log", schema=SCHEMA)
    op.drop_table("operation_log", schema=SCHEMA)
    op.drop_index("runtime_records_status_idx", "runtime_records", schema=SCHEMA)
    op.drop_table("runtime_records", schema=SCHEMA)
