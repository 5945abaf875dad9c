"""crash_history and patch_progress: durable state of the self-healing features

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Issue 12, both features opt-in; with the defaults both tables stay empty and
the new column stays false.

- `runtime_records.quarantined` (boolean, default false): the REST
  RuntimeRecord's additive field (rendered only with RTMANAGER_AUTO_RESTART=on)
  and its `?quarantined=` filter. Written together with `crash_history`.

- `crash_history`: the crash-loop policy's state per game
  (`rtm_core.domain.crashloop.CrashHistory`): crashes in a row, restart
  attempts in the window, the restart scheduled and when, the last crash, the
  quarantine. Written by the auto-restart loop (RTMANAGER_AUTO_RESTART=on),
  reset by a command that relaunches the engine and by a quarantine lift.
- `patch_progress`: a health-gated patch under way
  (`rtm_core.domain.records.PatchProgress`): its phase, both images, the old
  and new containers and the snapshot, so an RTM that dies mid-patch leaves
  enough for the reconciler (or the game's next operation) to finish the
  rollback. Deleted in the transaction that ends the patch.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "rtmanager"


def _ts(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _updated_at() -> sa.Column[object]:
    return sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    )


def upgrade() -> None:
    op.add_column(
        "runtime_records",
        sa.Column("quarantined", sa.Boolean, nullable=False, server_default=sa.text("false")),
        schema=SCHEMA,
    )
    op.create_table(
        "crash_history",
        sa.Column("game_id", sa.Text, primary_key=True),
        sa.Column("consecutive", sa.Integer, nullable=False, server_default="0"),
        sa.Column(
            "restart_times",
            postgresql.ARRAY(sa.DateTime(timezone=True)),
            nullable=False,
            server_default=sa.text("'{}'"),
        ),
        sa.Column("pending_container_id", sa.Text),
        sa.Column("pending_reason", sa.Text),
        _ts("next_restart_at"),
        sa.Column("attempt_counted", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("last_container_id", sa.Text),
        sa.Column("last_reason", sa.Text),
        sa.Column("last_exit_code", sa.Integer),
        _ts("last_crash_at"),
        sa.Column("quarantined", sa.Boolean, nullable=False, server_default=sa.text("false")),
        _ts("quarantined_at"),
        _updated_at(),
        schema=SCHEMA,
    )
    op.create_index(
        "crash_history_next_restart_idx", "crash_history", ["next_restart_at"], schema=SCHEMA
    )
    op.create_table(
        "patch_progress",
        sa.Column("game_id", sa.Text, primary_key=True),
        sa.Column("phase", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("from_image_ref", sa.Text, nullable=False),
        sa.Column("to_image_ref", sa.Text, nullable=False),
        sa.Column("from_container_id", sa.Text),
        sa.Column("from_status", sa.Text, nullable=False),
        sa.Column("new_container_id", sa.Text),
        sa.Column("snapshot_path", sa.Text),
        sa.Column("failure", sa.Text),
        sa.Column("answered", sa.Boolean, nullable=False, server_default=sa.text("false")),
        _ts("started_at", nullable=False),
        _updated_at(),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("patch_progress", schema=SCHEMA)
    op.drop_index("crash_history_next_restart_idx", "crash_history", schema=SCHEMA)
    op.drop_table("crash_history", schema=SCHEMA)
    op.drop_column("runtime_records", "quarantined", schema=SCHEMA)
