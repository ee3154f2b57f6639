"""The replica's first schema: guilds, users, members, roles, links, activity, runs, scheduler slots, views.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import typing

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _when(name: str, *, nullable: bool = True) -> sa.Column[typing.Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), autoincrement=False, nullable=nullable)


def _count(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "guilds",
        _id("id"),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("member_count", sa.Integer(), nullable=True),
        _when("first_seen_at", nullable=False),
        _when("last_reconciled_at"),
        _when("removed_at"),
        _when("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_guilds"),
    )
    op.create_table(
        "users",
        _id("id"),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("global_name", sa.Text(), nullable=True),
        sa.Column("avatar_hash", sa.Text(), nullable=True),
        sa.Column("is_bot", sa.Boolean(), nullable=False),
        _when("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "members",
        _id("guild_id"),
        _id("user_id"),
        sa.Column("nickname", sa.Text(), nullable=True),
        _when("joined_at"),
        _when("first_seen_at", nullable=False),
        _when("last_seen_at"),
        sa.Column("status", sa.String(length=8), server_default=sa.text("'active'"), nullable=False),
        _when("left_at"),
        _when("updated_at", nullable=False),
        sa.Column("fingerprint", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("status IN ('active', 'inactive', 'left')", name="ck_members_status"),
        sa.ForeignKeyConstraint(["guild_id"], ["guilds.id"], name="fk_members_guild_id_guilds"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_members_user_id_users"),
        sa.PrimaryKeyConstraint("guild_id", "user_id", name="pk_members"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_members_guild_id_status", "members", ["guild_id", "status"])
    op.create_index("ix_members_guild_id_last_seen_at", "members", ["guild_id", "last_seen_at"])
    op.create_table(
        "roles",
        _id("guild_id"),
        _id("role_id"),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("color", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("permissions", sa.BigInteger(), nullable=False),
        sa.Column("managed", sa.Boolean(), nullable=False),
        _when("deleted_at"),
        _when("updated_at", nullable=False),
        sa.ForeignKeyConstraint(["guild_id"], ["guilds.id"], name="fk_roles_guild_id_guilds"),
        sa.PrimaryKeyConstraint("guild_id", "role_id", name="pk_roles"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "member_roles",
        _id("guild_id"),
        _id("user_id"),
        _id("role_id"),
        sa.PrimaryKeyConstraint("guild_id", "user_id", "role_id", name="pk_member_roles"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_member_roles_guild_id_role_id", "member_roles", ["guild_id", "role_id"])
    op.create_table(
        "message_activity",
        _id("guild_id"),
        _id("user_id"),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", "user_id", "day", name="pk_message_activity"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_message_activity_guild_id_day", "message_activity", ["guild_id", "day"])
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        _id("guild_id"),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        _id("requested_by", nullable=True),
        _when("started_at", nullable=False),
        _when("finished_at"),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        _count("created"),
        _count("updated"),
        _count("unchanged"),
        _count("left"),
        _count("inactive"),
        _count("errors"),
        sa.Column("error_sample", sa.Text(), nullable=True),
        sa.CheckConstraint("\"trigger\" IN ('command', 'schedule', 'startup', 'gateway')", name="ck_sync_runs_trigger"),
        sa.PrimaryKeyConstraint("id", name="pk_sync_runs"),
    )
    op.create_index("ix_sync_runs_guild_id_kind_started_at", "sync_runs", ["guild_id", "kind", "started_at"])
    op.create_table(
        "scheduler_slots",
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.String(length=64), nullable=False),
        sa.Column("claimed_by", sa.Text(), nullable=False),
        _when("claimed_at", nullable=False),
        sa.PrimaryKeyConstraint("job", "slot", name="pk_scheduler_slots"),
    )
    for statement in _views(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for name in ("v_member_roles", "v_active_members_activity", "v_members"):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for table in (
        "scheduler_slots",
        "sync_runs",
        "message_activity",
        "member_roles",
        "roles",
        "members",
        "users",
        "guilds",
    ):
        op.drop_table(table)


def _views(dialect_name: str) -> list[str]:
    # Days are UTC days, as message_activity.day is; "7 days" is today and the 6 days before.
    if dialect_name == "sqlite":
        since_7, since_30 = "date('now', '-6 days')", "date('now', '-29 days')"
    else:
        today = "CAST((CURRENT_TIMESTAMP AT TIME ZONE 'UTC') AS DATE)"
        since_7, since_30 = f"({today} - 6)", f"({today} - 29)"
    return [
        """
        CREATE VIEW v_members AS
        SELECT m.guild_id, m.user_id, u.username, u.global_name, m.nickname,
               COALESCE(m.nickname, u.global_name, u.username) AS display_name,
               u.avatar_hash, u.is_bot, m.status, m.joined_at, m.first_seen_at, m.last_seen_at, m.left_at
        FROM members m
        JOIN users u ON u.id = m.user_id
        """,
        f"""
        CREATE VIEW v_active_members_activity AS
        SELECT m.guild_id, m.user_id, u.username, u.global_name, m.nickname,
               COALESCE(m.nickname, u.global_name, u.username) AS display_name,
               u.is_bot, m.joined_at, m.last_seen_at,
               COALESCE(a.messages_7d, 0) AS messages_7d,
               COALESCE(a.messages_30d, 0) AS messages_30d
        FROM members m
        JOIN users u ON u.id = m.user_id
        LEFT JOIN (
            SELECT guild_id, user_id,
                   SUM(CASE WHEN day >= {since_7} THEN messages ELSE 0 END) AS messages_7d,
                   SUM(messages) AS messages_30d
            FROM message_activity
            WHERE day >= {since_30}
            GROUP BY guild_id, user_id
        ) a ON a.guild_id = m.guild_id AND a.user_id = m.user_id
        WHERE m.status = 'active'
        """,
        """
        CREATE VIEW v_member_roles AS
        SELECT mr.guild_id, mr.user_id, mr.role_id, r.name AS role_name, r.position AS role_position,
               r.color AS role_color, m.status AS member_status
        FROM member_roles mr
        JOIN roles r ON r.guild_id = mr.guild_id AND r.role_id = mr.role_id AND r.deleted_at IS NULL
        JOIN members m ON m.guild_id = mr.guild_id AND m.user_id = mr.user_id AND m.status <> 'left'
        """,
    ]
