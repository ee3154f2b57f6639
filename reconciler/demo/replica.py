"""The database as someone else sees it: plain SQL reads for the summary, and writes behind the bot's back.

Nothing here goes through the bot's store: the point is to check the store's work (and to break it on
purpose), so the demo needs a second, independent pair of hands on the tables.
"""

from __future__ import annotations

__all__ = ["ReplicaRow", "ReplicaView", "RunCount", "Tampering"]

import dataclasses
import logging
import typing

import sqlalchemy as sa

from reconciler.store.connect import create_engine

if typing.TYPE_CHECKING:
    import random
    from collections.abc import Collection

    from sqlalchemy.ext.asyncio import AsyncEngine

_LOGGER: typing.Final = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaRow:
    """A member row joined with its user, as a reader of the replica sees it."""

    user_id: int
    nickname: str | None
    username: str
    global_name: str | None
    avatar_hash: str | None
    is_bot: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunCount:
    """How many `sync_runs` rows share a kind, a trigger and an outcome."""

    kind: str
    trigger: str
    outcome: str | None
    runs: int
    errors: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Tampering:
    """What was changed behind the bot's back."""

    renamed: tuple[int, ...]
    deleted: tuple[int, ...]
    links_deleted: int
    role_renamed: int | None


class ReplicaView:
    """Reads and writes one database with its own connection; `close()` when done."""

    def __init__(self, url: str) -> None:
        self._engine: AsyncEngine = create_engine(url, pool_size=1)

    async def close(self) -> None:
        await self._engine.dispose()

    async def _rows(self, sql: str, **params: object) -> list[tuple[typing.Any, ...]]:
        async with self._engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(sa.text(sql), params)]

    async def present_members(self, guild_id: int) -> dict[int, ReplicaRow]:
        """Members the replica has on the guild now (status active or inactive)."""
        rows = await self._rows(
            "SELECT m.user_id, m.nickname, u.username, u.global_name, u.avatar_hash, u.is_bot"
            " FROM members m JOIN users u ON u.id = m.user_id"
            " WHERE m.guild_id = :g AND m.status IN ('active', 'inactive')",
            g=guild_id,
        )
        return {
            int(r[0]): ReplicaRow(
                user_id=int(r[0]),
                nickname=r[1],
                username=str(r[2]),
                global_name=r[3],
                avatar_hash=r[4],
                is_bot=bool(r[5]),
            )
            for r in rows
        }

    async def left_members(self, guild_id: int) -> set[int]:
        """Members the replica has marked as departed."""
        rows = await self._rows("SELECT user_id FROM members WHERE guild_id = :g AND status = 'left'", g=guild_id)
        return {int(r[0]) for r in rows}

    async def bookkeeping_rows(self) -> dict[str, int]:
        """Rows in the tables that only retention prunes: `sync_runs` and `scheduler_slots`."""
        counts: dict[str, int] = {}
        for table in ("sync_runs", "scheduler_slots"):
            rows = await self._rows(f"SELECT COUNT(*) FROM {table}")
            counts[table] = int(rows[0][0])
        return counts

    async def status_counts(self, guild_id: int) -> dict[str, int]:
        rows = await self._rows("SELECT status, COUNT(*) FROM members WHERE guild_id = :g GROUP BY status", g=guild_id)
        return {str(r[0]): int(r[1]) for r in rows}

    async def links(self, guild_id: int) -> set[tuple[int, int]]:
        rows = await self._rows("SELECT user_id, role_id FROM member_roles WHERE guild_id = :g", g=guild_id)
        return {(int(r[0]), int(r[1])) for r in rows}

    async def roles(self, guild_id: int) -> dict[int, tuple[str, int, int, int, bool]]:
        """Roles not deleted: id -> (name, color, position, permissions, managed)."""
        rows = await self._rows(
            "SELECT role_id, name, color, position, permissions, managed FROM roles"
            " WHERE guild_id = :g AND deleted_at IS NULL",
            g=guild_id,
        )
        return {int(r[0]): (str(r[1]), int(r[2]), int(r[3]), int(r[4]), bool(r[5])) for r in rows}

    async def messages(self, guild_id: int) -> int:
        rows = await self._rows(
            "SELECT COALESCE(SUM(messages), 0) FROM message_activity WHERE guild_id = :g", g=guild_id
        )
        return int(rows[0][0])

    async def runs(self, guild_id: int) -> list[RunCount]:
        rows = await self._rows(
            'SELECT kind, "trigger", outcome, SUM(runs), COALESCE(SUM(errors), 0) FROM sync_runs'
            ' WHERE guild_id = :g GROUP BY kind, "trigger", outcome ORDER BY kind, "trigger", outcome',
            g=guild_id,
        )
        return [
            RunCount(kind=str(r[0]), trigger=str(r[1]), outcome=r[2], runs=int(r[3]), errors=int(r[4])) for r in rows
        ]

    async def tamper(
        self,
        guild_id: int,
        rng: random.Random,
        *,
        renames: int,
        deletions: int,
        spare: Collection[int] = (),
        role_id: int | None = None,
    ) -> Tampering:
        """Rename some members, delete others with their role links, rename a role: one transaction."""
        present = sorted(u for u in await self.present_members(guild_id) if u not in spare)
        chosen = rng.sample(present, min(len(present), renames + deletions))
        renamed, deleted = tuple(chosen[:renames]), tuple(chosen[renames:])
        async with self._engine.begin() as conn:
            for user_id in renamed:
                await conn.execute(
                    sa.text("UPDATE members SET nickname = :n WHERE guild_id = :g AND user_id = :u"),
                    {"n": f"tampered-{user_id % 10_000}", "g": guild_id, "u": user_id},
                )
            links_deleted = 0
            for user_id in deleted:
                params = {"g": guild_id, "u": user_id}
                result = await conn.execute(
                    sa.text("DELETE FROM member_roles WHERE guild_id = :g AND user_id = :u"), params
                )
                links_deleted += result.rowcount
                await conn.execute(sa.text("DELETE FROM members WHERE guild_id = :g AND user_id = :u"), params)
            if role_id is not None:
                await conn.execute(
                    sa.text("UPDATE roles SET name = 'renamed behind the bot' WHERE guild_id = :g AND role_id = :r"),
                    {"g": guild_id, "r": role_id},
                )
        return Tampering(renamed=renamed, deleted=deleted, links_deleted=links_deleted, role_renamed=role_id)
