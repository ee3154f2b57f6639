"""The replica's tables and views: stable names other systems read (documented in docs/schema.md)."""

from __future__ import annotations

__all__ = [
    "EVENT_SOURCES",
    "MEMBER_STATUSES",
    "RUN_TRIGGERS",
    "VIEW_NAMES",
    "UtcDateTime",
    "activity_channels",
    "activity_gaps",
    "channel_activity",
    "forgotten_users",
    "guilds",
    "member_events",
    "member_roles",
    "members",
    "message_activity",
    "metadata",
    "roles",
    "scheduler_slots",
    "sync_runs",
    "users",
]

import datetime
import logging
import typing

import sqlalchemy as sa

if typing.TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import Dialect

_LOGGER: typing.Final = logging.getLogger(__name__)

NAMING_CONVENTION: typing.Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MEMBER_STATUSES: typing.Final = ("active", "inactive", "left")
RUN_TRIGGERS: typing.Final = ("command", "schedule", "startup", "gateway")
EVENT_SOURCES: typing.Final = ("gateway", "repair", "relist", "command")


class UtcDateTime(sa.types.TypeDecorator[datetime.datetime]):
    """A point in time, always UTC: stored naive-UTC on SQLite, `timestamptz` on PostgreSQL, read back aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime.datetime | None, dialect: Dialect) -> datetime.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            msg = f"naive datetime {value!r}: the store takes aware datetimes only"
            raise ValueError(msg)
        value = value.astimezone(datetime.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime.datetime | None, dialect: Dialect) -> datetime.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=datetime.UTC)
        return value.astimezone(datetime.UTC)


metadata: typing.Final = sa.MetaData(naming_convention=NAMING_CONVENTION)

# On SQLite the tables keyed by (guild, ...) are WITHOUT ROWID: the rows live in the primary key's
# b-tree, so a guild's rows are contiguous and a link is stored once instead of twice. Alembic does
# not reflect this: a batch migration of these tables must pass
# `table_kwargs={"sqlite_with_rowid": False}` to keep it.


def _id(name: str, *args: typing.Any, **kwargs: typing.Any) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, *args, autoincrement=False, **kwargs)


def _when(name: str, *, nullable: bool = True) -> sa.Column[datetime.datetime]:
    return sa.Column(name, UtcDateTime(), nullable=nullable)


def _count(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer, nullable=False, server_default=sa.text("0"))


guilds: typing.Final = sa.Table(
    "guilds",
    metadata,
    _id("id", primary_key=True),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("member_count", sa.Integer, nullable=True),
    _when("first_seen_at", nullable=False),
    _when("last_reconciled_at"),
    _when("removed_at"),
    _when("updated_at", nullable=False),
)

users: typing.Final = sa.Table(
    "users",
    metadata,
    _id("id", primary_key=True),
    sa.Column("username", sa.Text, nullable=False),
    sa.Column("global_name", sa.Text, nullable=True),
    sa.Column("avatar_hash", sa.Text, nullable=True),
    sa.Column("is_bot", sa.Boolean, nullable=False),
    _when("updated_at", nullable=False),
    sqlite_with_rowid=False,
)

members: typing.Final = sa.Table(
    "members",
    metadata,
    _id("guild_id", sa.ForeignKey("guilds.id"), primary_key=True),
    _id("user_id", sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("nickname", sa.Text, nullable=True),
    _when("joined_at"),
    _when("first_seen_at", nullable=False),
    _when("last_seen_at"),
    sa.Column("status", sa.String(8), nullable=False, server_default=sa.text("'active'")),
    _when("left_at"),
    _when("updated_at", nullable=False),
    sa.Column("fingerprint", sa.BigInteger, nullable=False),
    # The member fields admins ask about (revision 0004): boost, timeout, screening, flags, guild avatar.
    _when("premium_since"),
    _when("communication_disabled_until"),
    sa.Column("pending", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("flags", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    sa.Column("guild_avatar_hash", sa.Text, nullable=True),
    sa.CheckConstraint(f"status IN {MEMBER_STATUSES!r}", name="status"),
    sa.Index(None, "guild_id", "status"),
    sa.Index(None, "guild_id", "last_seen_at"),
    sqlite_with_rowid=False,
)

roles: typing.Final = sa.Table(
    "roles",
    metadata,
    _id("guild_id", sa.ForeignKey("guilds.id"), primary_key=True),
    _id("role_id", primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("color", sa.Integer, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("permissions", sa.BigInteger, nullable=False),
    sa.Column("managed", sa.Boolean, nullable=False),
    _when("deleted_at"),
    _when("updated_at", nullable=False),
    sqlite_with_rowid=False,
)

# No foreign keys here on purpose: the store writes a member's links in the member's own transaction,
# links may name a role before the roles of a users-only reconcile arrive, and on PostgreSQL a key
# check locks the referenced row: with it a bulk load of 1M members is ~4x slower.
member_roles: typing.Final = sa.Table(
    "member_roles",
    metadata,
    _id("guild_id", primary_key=True),
    _id("user_id", primary_key=True),
    _id("role_id", primary_key=True),
    sa.Index(None, "guild_id", "role_id"),
    sqlite_with_rowid=False,
)

message_activity: typing.Final = sa.Table(
    "message_activity",
    metadata,
    _id("guild_id", primary_key=True),
    _id("user_id", primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("messages", sa.Integer, nullable=False),
    sa.Index(None, "guild_id", "day"),
    sqlite_with_rowid=False,
)

channel_activity: typing.Final = sa.Table(
    "channel_activity",
    metadata,
    _id("guild_id", primary_key=True),
    _id("channel_id", primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("messages", sa.Integer, nullable=False),
    sa.Index(None, "guild_id", "day"),
    sqlite_with_rowid=False,
)

# The counted state of each channel (and thread): every message id at or below `watermark` is settled,
# and so is every id in the ranges of `counted_ranges` ("first-last,first-last", ascending). Written in
# the transaction that writes the counts of those messages, so a message is counted iff its id is here.
activity_channels: typing.Final = sa.Table(
    "activity_channels",
    metadata,
    _id("guild_id", primary_key=True),
    _id("channel_id", primary_key=True),
    sa.Column("watermark", sa.BigInteger, nullable=False),
    sa.Column("counted_ranges", sa.Text, nullable=False, server_default=sa.text("''")),
    _when("tracked_since", nullable=False),
    _when("forbidden_at"),
    _when("updated_at", nullable=False),
    sqlite_with_rowid=False,
)

# Ids given up rather than fetched: a gap older than `activity.backfill_max_age_days`.
activity_gaps: typing.Final = sa.Table(
    "activity_gaps",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    _id("guild_id", nullable=False),
    _id("channel_id", nullable=False),
    sa.Column("after_id", sa.BigInteger, nullable=False),
    sa.Column("before_id", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    _when("recorded_at", nullable=False),
    sa.Index(None, "guild_id", "channel_id"),
)

sync_runs: typing.Final = sa.Table(
    "sync_runs",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    _id("guild_id", nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    _id("requested_by", nullable=True),
    _when("started_at", nullable=False),
    _when("finished_at"),
    sa.Column("outcome", sa.String(32), nullable=True),
    _count("created"),
    _count("updated"),
    _count("unchanged"),
    _count("left"),
    _count("inactive"),
    _count("errors"),
    sa.Column("error_sample", sa.Text, nullable=True),
    # Gateway runs are summed per guild, kind, outcome and period (migration 0002): `runs` counts the
    # runs in the row, `period_start` names the period (NULL on a row of one deliberate run).
    sa.Column("runs", sa.Integer, nullable=False, server_default=sa.text("1")),
    _when("period_start"),
    sa.CheckConstraint(f'"trigger" IN {RUN_TRIGGERS!r}', name="trigger"),
    sa.Index(None, "guild_id", "kind", "started_at"),
    sa.Index(None, "guild_id", "kind", "outcome", "period_start", unique=True),
)

scheduler_slots: typing.Final = sa.Table(
    "scheduler_slots",
    metadata,
    sa.Column("job", sa.String(64), primary_key=True),
    sa.Column("slot", sa.String(64), primary_key=True),
    sa.Column("claimed_by", sa.Text, nullable=False),
    _when("claimed_at", nullable=False),
)


# Append-only history (revision 0004). `id` only grows (AUTOINCREMENT on SQLite: never reused), so a
# consumer follows the table with `WHERE id > :last ORDER BY id`; on PostgreSQL the writers serialise
# their event inserts (a transaction advisory lock) so that ids become visible in order.
member_events: typing.Final = sa.Table(
    "member_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    _id("guild_id", nullable=False),
    _id("user_id", nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("old_value", sa.Text, nullable=True),
    sa.Column("new_value", sa.Text, nullable=True),
    _id("role_id", nullable=True),
    _when("observed_at", nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    _id("run_id", nullable=True),
    sa.CheckConstraint(f"source IN {EVENT_SOURCES!r}", name="source"),
    sa.Index(None, "guild_id", "user_id", "id"),
    sa.Index(None, "observed_at"),
    sqlite_autoincrement=True,
)

# Users whose personal values were erased on request: their names are never stored again.
forgotten_users: typing.Final = sa.Table(
    "forgotten_users",
    metadata,
    _id("user_id", primary_key=True),
    _when("forgotten_at", nullable=False),
)


VIEW_NAMES: typing.Final = (
    "v_members",
    "v_active_members_activity",
    "v_member_roles",
    "v_member_history",
    "v_role_history",
    "v_channel_activity",
)
"""The stable views (created by the migrations, documented in docs/schema.md)."""
