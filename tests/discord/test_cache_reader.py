"""Reading hikari's cache: the fast road over its records equals the public view, member for member."""

from __future__ import annotations

import asyncio

import pytest

from reconciler.discord.cache_reader import CacheReader, _member_records, member_state
from reconciler.discord.readiness import GuildReadiness
from reconciler.domain import Scope


@pytest.mark.asyncio
async def test_fast_snapshot_equals_public_view(sandbox_factory, gateway_bot_factory) -> None:
    sandbox = await sandbox_factory()
    guild_id = sandbox.create_guild(members=2000, roles=10, seed=5)
    bot = await gateway_bot_factory(sandbox)
    role_ids = [r for r in sandbox.roles(guild_id) if r != guild_id]
    member = next(uid for uid, m in sandbox.members(guild_id).items() if role_ids[0] in m.role_ids)
    await sandbox.delete_role(guild_id, role_ids[0])  # cached members still carry the dead role id
    await sandbox.remove_member(guild_id, next(u for u in sandbox.members(guild_id) if u != member))
    await sandbox.update_member(guild_id, member, nick="renamed")
    await sandbox.flush()
    await _settle(bot, guild_id, member)

    reader = CacheReader(bot.cache, GuildReadiness())
    assert _member_records(bot.cache, guild_id) is not None, "hikari's records moved: the fast road is off"
    fast = reader.snapshot(guild_id, Scope.everything())
    known = frozenset(int(r) for r in bot.cache.get_roles_view_for_guild(guild_id))
    public = {int(uid): member_state(m, known) for uid, m in bot.cache.get_members_view_for_guild(guild_id).items()}
    assert dict(fast.members) == public
    assert len(public) == sandbox.member_count(guild_id)
    assert role_ids[0] not in fast.members[member].role_ids
    assert fast.members[member].nickname == "renamed"
    assert reader.member_count(guild_id) == len(public)
    assert reader.member_ids(guild_id) == public.keys()


async def _settle(bot, guild_id: int, member: int) -> None:
    for _ in range(200):
        cached = bot.cache.get_member(guild_id, member)
        if cached is not None and cached.nickname == "renamed":
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the update never reached the cache")


@pytest.mark.asyncio
async def test_scoped_snapshot_reads_only_present_members_in_scope(sandbox_factory, gateway_bot_factory) -> None:
    sandbox = await sandbox_factory()
    guild_id = sandbox.create_guild(members=300, seed=6)
    bot = await gateway_bot_factory(sandbox)
    present = sorted(sandbox.members(guild_id))[:5]
    absent = 4242
    reader = CacheReader(bot.cache, GuildReadiness())
    snapshot = reader.snapshot(guild_id, Scope.of_users([*present, absent]))
    assert list(snapshot.members) == present, "a scope's members come out in user id order"
    ids = reader.member_ids(guild_id)
    assert frozenset({absent, present[0]}) & ids == {present[0]}
    assert absent not in ids
    assert len(ids) == sandbox.member_count(guild_id)
    assert all(type(uid) is int for uid in ids)
    assert snapshot.roles == {}
