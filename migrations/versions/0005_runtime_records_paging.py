"""runtime_records (created_at, game_id) index: keyset paging of the REST list

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Issue 13: `GET /api/v1/internal/runtimes?limit=&cursor=` pages in
`(created_at, game_id)` order, a cursor being the last record's key. The
index makes each page one index range scan, whatever page it is; without it
every page would sort the whole table. Nothing else changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "rtmanager"
INDEX = "runtime_records_created_game_idx"


def upgrade() -> None:
    op.create_index(INDEX, "runtime_records", ["created_at", "game_id"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_index(INDEX, "runtime_records", schema=SCHEMA)
