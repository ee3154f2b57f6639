"""What the database holds, read with plain SQL: tests assert rows, not the store's own answers."""

from __future__ import annotations

__all__ = ["DatabaseView"]

import typing

import sqlalchemy as sa

from reconciler.store.connect import create_engine

if typing.TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


class DatabaseView:
    """Read-only queries over one database (any backend); `close()` when done."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: AsyncEngine = create_engine(url, pool_size=1)

    async def close(self) -> None:
        await self._engine.dispose()

    async def rows(self, sql: str, **params: object) -> list[dict[str, typing.Any]]:
        async with self._engine.connect() as conn:
            result = await conn.execute(sa.text(sql), params)
            return [dict(row._mapping) for row in result]  # pyright: ignore[reportPrivateUsage]

    async def scalar(self, sql: str, **params: object) -> typing.Any:
        async with self._engine.connect() as conn:
            return (await conn.execute(sa.text(sql), params)).scalar()

    async def execute(self, sql: str, **params: object) -> None:
        """Write behind the bot's back (tampering tests)."""
        async with self._engine.begin() as conn:
            await conn.execute(sa.text(sql), params)

    async def members(self, guild_id: int) -> dict[int, dict[str, typing.Any]]:
        rows = await self.rows(
            "SELECT m.user_id, m.nickname, m.status, m.left_at, m.updated_at, m.last_seen_at, m.joined_at,"
            " u.username, u.global_name, u.avatar_hash, u.is_bot"
            " FROM members m JOIN users u ON u.id = m.user_id WHERE m.guild_id = :g",
            g=guild_id,
        )
        return {int(r["user_id"]): r for r in rows}

    async def active_ids(self, guild_id: int) -> set[int]:
        rows = await self.rows(
            "SELECT user_id FROM members WHERE guild_id = :g AND status IN ('active', 'inactive')", g=guild_id
        )
        return {int(r["user_id"]) for r in rows}

    async def links(self, guild_id: int) -> set[tuple[int, int]]:
        rows = await self.rows("SELECT user_id, role_id FROM member_roles WHERE guild_id = :g", g=guild_id)
        return {(int(r["user_id"]), int(r["role_id"])) for r in rows}

    async def roles(self, guild_id: int) -> dict[int, dict[str, typing.Any]]:
        rows = await self.rows("SELECT * FROM roles WHERE guild_id = :g", g=guild_id)
        return {int(r["role_id"]): r for r in rows}

    async def runs(self, guild_id: int | None = None) -> list[dict[str, typing.Any]]:
        if guild_id is None:
            return await self.rows("SELECT * FROM sync_runs ORDER BY id")
        return await self.rows("SELECT * FROM sync_runs WHERE guild_id = :g ORDER BY id", g=guild_id)

    async def activity(self, guild_id: int) -> dict[int, int]:
        rows = await self.rows(
            "SELECT user_id, SUM(messages) AS n FROM message_activity WHERE guild_id = :g GROUP BY user_id",
            g=guild_id,
        )
        return {int(r["user_id"]): int(r["n"]) for r in rows}
