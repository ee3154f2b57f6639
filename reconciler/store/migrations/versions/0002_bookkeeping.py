"""Gateway runs summed per period: `sync_runs.runs` and `sync_runs.period_start`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05

Existing rows are single runs: `runs` 1 and no period, exactly what the defaults give them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("sync_runs", sa.Column("runs", sa.Integer(), server_default=sa.text("1"), nullable=False))
    op.add_column("sync_runs", sa.Column("period_start", sa.DateTime(timezone=True), nullable=True))
    # One row per guild, kind, outcome and period for gateway runs; NULL periods (deliberate runs) never
    # collide (NULLs are distinct in a unique index on both SQLite and PostgreSQL).
    op.create_index(
        "ix_sync_runs_guild_id_kind_outcome_period_start",
        "sync_runs",
        ["guild_id", "kind", "outcome", "period_start"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ix_sync_runs_guild_id_kind_outcome_period_start", table_name="sync_runs")
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("period_start")
        batch.drop_column("runs")
