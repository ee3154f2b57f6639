"""Member history and the fields admins ask about: member_events, forgotten_users, five member columns, two views.

Only adds: the new member columns are nullable or have a default, so existing rows keep their
values (the fingerprint version changes with them: the first reconcile of each guild rewrites the
stored fingerprints once, and fills the new columns from Discord).

Revision ID: 0004
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import typing

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def _when(name: str, *, nullable: bool = True) -> sa.Column[typing.Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), autoincrement=False, nullable=nullable)


def upgrade() -> None:
    # ADD COLUMN, not a batch rebuild: SQLite adds a column with a constant default in place.
    op.add_column("members", _when("premium_since"))
    op.add_column("members", _when("communication_disabled_until"))
    op.add_column("members", sa.Column("pending", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("members", sa.Column("flags", sa.BigInteger(), server_default=sa.text("0"), nullable=False))
    op.add_column("members", sa.Column("guild_avatar_hash", sa.Text(), nullable=True))
    op.create_table(
        "member_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        _id("guild_id"),
        _id("user_id"),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        _id("role_id", nullable=True),
        _when("observed_at", nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        _id("run_id", nullable=True),
        sa.CheckConstraint("source IN ('gateway', 'repair', 'relist', 'command')", name="ck_member_events_source"),
        sa.PrimaryKeyConstraint("id", name="pk_member_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_member_events_guild_id_user_id_id", "member_events", ["guild_id", "user_id", "id"])
    op.create_index("ix_member_events_observed_at", "member_events", ["observed_at"])
    op.create_table(
        "forgotten_users",
        _id("user_id"),
        _when("forgotten_at", nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_forgotten_users"),
    )
    for statement in VIEWS:
        op.execute(statement)


def downgrade() -> None:
    for name in ("v_role_history", "v_member_history"):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table("forgotten_users")
    op.drop_table("member_events")
    with op.batch_alter_table("members", table_kwargs={"sqlite_with_rowid": False}) as batch:
        for column in ("guild_avatar_hash", "flags", "pending", "communication_disabled_until", "premium_since"):
            batch.drop_column(column)


VIEWS: typing.Final = (
    # One line per event, readable by a person: who, when, what, and how it was seen.
    """
    CREATE VIEW v_member_history AS
    SELECT e.id, e.guild_id, e.user_id, u.username, e.observed_at, e.kind,
           e.old_value, e.new_value, e.role_id, r.name AS role_name,
           CASE
               WHEN e.role_id IS NOT NULL THEN e.kind || ': ' || COALESCE(r.name, CAST(e.role_id AS TEXT))
               WHEN e.old_value IS NOT NULL OR e.new_value IS NOT NULL
                   THEN e.kind || ': ' || COALESCE(e.old_value, '(none)') || ' -> ' || COALESCE(e.new_value, '(none)')
               ELSE e.kind
           END AS description,
           e.source, e.run_id
    FROM member_events e
    LEFT JOIN users u ON u.id = e.user_id
    LEFT JOIN roles r ON r.guild_id = e.guild_id AND r.role_id = e.role_id
    """,
    # Intervals [valid_from, valid_to) during which a member held a role (valid_to NULL: still holds it).
    # A departure writes role_removed for every link held, a rejoin role_added for every role held
    # again, so each interval is bounded by events; roles held since the member's first sync (the
    # baseline, which writes no event) start at first_seen_at.
    """
    CREATE VIEW v_role_history AS
    SELECT e.guild_id, e.user_id, e.role_id, e.observed_at AS valid_from,
           (SELECT x.observed_at FROM member_events x
            WHERE x.guild_id = e.guild_id AND x.user_id = e.user_id AND x.role_id = e.role_id
              AND x.kind = 'role_removed' AND x.id > e.id
            ORDER BY x.id LIMIT 1) AS valid_to
    FROM member_events e
    WHERE e.kind = 'role_added'
    UNION ALL
    SELECT e.guild_id, e.user_id, e.role_id, m.first_seen_at AS valid_from, e.observed_at AS valid_to
    FROM member_events e
    JOIN members m ON m.guild_id = e.guild_id AND m.user_id = e.user_id
    WHERE e.kind = 'role_removed'
      AND NOT EXISTS (
          SELECT 1 FROM member_events p
          WHERE p.guild_id = e.guild_id AND p.user_id = e.user_id AND p.role_id = e.role_id AND p.id < e.id
      )
    UNION ALL
    SELECT mr.guild_id, mr.user_id, mr.role_id, m.first_seen_at AS valid_from, NULL AS valid_to
    FROM member_roles mr
    JOIN members m ON m.guild_id = mr.guild_id AND m.user_id = mr.user_id
    WHERE m.status <> 'left'
      AND NOT EXISTS (
          SELECT 1 FROM member_events p
          WHERE p.guild_id = mr.guild_id AND p.user_id = mr.user_id AND p.role_id = mr.role_id
      )
    """,
)
