"""runtime_records.placement_node: the node a game's state lives on

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

With the swarm backend a game's state directory is on the node the game was
first placed on; every later launch (restart, patch, a start after a stop) is
pinned there with a `node.id==<id>` placement constraint. NULL: the docker
backend (one host), or a game not placed yet. Additive and nullable, so a
running deployment of the previous revision keeps working while it rolls.
The REST RuntimeRecord (the `001` contract) does not show the column.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "rtmanager"


def upgrade() -> None:
    op.add_column("runtime_records", sa.Column("placement_node", sa.Text), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("runtime_records", "placement_node", schema=SCHEMA)
