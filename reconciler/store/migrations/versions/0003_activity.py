"""Exactly-once activity: per-channel daily totals, each channel's counted state, gaps given up.

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import typing

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def _when(name: str, *, nullable: bool = True) -> sa.Column[typing.Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), autoincrement=False, nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "channel_activity",
        _id("guild_id"),
        _id("channel_id"),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", "channel_id", "day", name="pk_channel_activity"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_channel_activity_guild_id_day", "channel_activity", ["guild_id", "day"])
    op.create_table(
        "activity_channels",
        _id("guild_id"),
        _id("channel_id"),
        sa.Column("watermark", sa.BigInteger(), nullable=False),
        sa.Column("counted_ranges", sa.Text(), server_default=sa.text("''"), nullable=False),
        _when("tracked_since", nullable=False),
        _when("forbidden_at"),
        _when("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("guild_id", "channel_id", name="pk_activity_channels"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "activity_gaps",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        _id("guild_id"),
        _id("channel_id"),
        sa.Column("after_id", sa.BigInteger(), nullable=False),
        sa.Column("before_id", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        _when("recorded_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_activity_gaps"),
    )
    op.create_index("ix_activity_gaps_guild_id_channel_id", "activity_gaps", ["guild_id", "channel_id"])
    op.execute(_view(op.get_bind().dialect.name))


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS v_channel_activity")
    for table in ("activity_gaps", "activity_channels", "channel_activity"):
        op.drop_table(table)


def _view(dialect_name: str) -> str:
    # Days are UTC days; "7 days" is today and the 6 days before (as v_active_members_activity).
    if dialect_name == "sqlite":
        since_7, since_30 = "date('now', '-6 days')", "date('now', '-29 days')"
    else:
        today = "CAST((CURRENT_TIMESTAMP AT TIME ZONE 'UTC') AS DATE)"
        since_7, since_30 = f"({today} - 6)", f"({today} - 29)"
    return f"""
        CREATE VIEW v_channel_activity AS
        SELECT guild_id, channel_id,
               SUM(CASE WHEN day >= {since_7} THEN messages ELSE 0 END) AS messages_7d,
               SUM(CASE WHEN day >= {since_30} THEN messages ELSE 0 END) AS messages_30d,
               SUM(messages) AS messages_total,
               MIN(day) AS first_day,
               MAX(day) AS last_day
        FROM channel_activity
        GROUP BY guild_id, channel_id
        """
