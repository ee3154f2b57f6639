"""The sandbox's own building blocks: ids, synthetic guilds, payload encoding, command validation."""

from __future__ import annotations

import statistics

import orjson
import pytest

from reconciler.sandbox import DiscordSandbox, chunking, errors, ids, permissions, shard_of, state
from reconciler.sandbox.commands import CommandRegistry
from reconciler.sandbox.stats import SandboxStats


def test_snowflakes_are_unique_increasing_and_land_on_the_requested_shard() -> None:
    factory = ids.SnowflakeFactory()
    values = [factory.next() for _ in range(10_000)]
    on_shard = [factory.next_on_shard(3, 4) for _ in range(100)]

    assert values == sorted(set(values))
    assert all(shard_of(v, 4) == 3 for v in on_shard)
    assert ids.snowflake_ms(ids.snowflake(1_700_000_000_000)) == 1_700_000_000_000


def test_synthetic_guilds_are_deterministic_and_realistic() -> None:
    first, second = DiscordSandbox(), DiscordSandbox()
    guild_a = first.create_guild(members=3_000, roles=12, channels=3, seed=99)
    guild_b = second.create_guild(members=3_000, roles=12, channels=3, seed=99)
    other = first.create_guild(members=3_000, seed=100)

    assert guild_a == guild_b
    assert first.members(guild_a) == second.members(guild_b)
    assert set(first.members(guild_a)).isdisjoint(set(first.members(other)) - {first.bot_user_id})
    members = first.members(guild_a)
    roles = first.roles(guild_a)
    assert len(members) == 3_000
    assert len(roles) == 12
    assert roles[guild_a].name == "@everyone"
    assert roles[guild_a].position == 0
    role_counts = [len(m.role_ids) for uid, m in members.items() if uid != first.bot_user_id]
    assert max(role_counts) <= 6
    assert 2.0 <= statistics.mean(role_counts) <= 3.5
    assert 0.1 < sum(m.global_name is None for m in members.values()) / len(members) < 0.4
    assert 0 < sum(m.bot for m in members.values()) < 100
    assert len({m.username for m in members.values()}) == len(members)
    assert len({m.joined_at for m in members.values()}) > 2_500
    assert len(first.channels(guild_a)) == 3


def test_owner_admin_and_plain_member_have_the_expected_permissions() -> None:
    sb = DiscordSandbox()
    guild_id = sb.create_guild(members=50, seed=1)
    guild = sb.truth.guild(guild_id)

    def perms(user_id: int) -> int:
        return permissions.base_permissions(guild, guild.members[user_id])

    assert perms(sb.owner_id(guild_id)) == permissions.ALL_PERMISSIONS
    assert perms(sb.admin_user_id(guild_id)) & permissions.MANAGE_GUILD
    assert sb.admin_user_id(guild_id) != sb.owner_id(guild_id)
    assert not perms(sb.plain_member_id(guild_id)) & permissions.MANAGE_GUILD


def test_guild_can_be_placed_on_a_shard_or_given_an_id() -> None:
    sb = DiscordSandbox()
    placed = [sb.create_guild(members=5, seed=s, shard=(s % 3, 3)) for s in range(6)]
    chosen = sb.create_guild(members=5, seed=1, guild_id=123 << 22)

    assert [shard_of(g, 3) for g in placed] == [0, 1, 2, 0, 1, 2]
    assert chosen == 123 << 22


def test_chunk_payloads_are_valid_json_with_every_member_once() -> None:
    sb = DiscordSandbox()
    guild_id = sb.create_guild(members=2_345, seed=2)
    members = list(sb.truth.guild(guild_id).members.values())

    chunks = [
        orjson.loads(data)
        for data, _ in chunking.chunk_payloads(
            guild_id, members, nonce='quo"te', not_found=[1, 2], presences=True, stats=SandboxStats()
        )
    ]

    assert [len(c["members"]) for c in chunks] == [1000, 1000, 345]
    assert {c["nonce"] for c in chunks} == {'quo"te'}
    assert chunks[0]["not_found"] == ["1", "2"]
    assert chunks[0]["presences"] == []
    assert sorted(int(m["user"]["id"]) for c in chunks for m in c["members"]) == sorted(sb.members(guild_id))


def test_member_json_cache_follows_changes() -> None:
    sb = DiscordSandbox()
    guild_id = sb.create_guild(members=10, seed=3)
    user_id = sb.plain_member_id(guild_id)
    member = sb.truth.member(guild_id, user_id)
    assert member.wire is not None

    sb.update_member_nowait(guild_id, user_id, nick="cached?", username="new.name")

    wire = orjson.loads(member.wire or b"{}")
    assert (wire["nick"], wire["user"]["username"]) == ("cached?", "new.name")
    assert sb.member(guild_id, user_id).nick == "cached?"
    assert sb.member(guild_id, user_id).username == "new.name"
    with pytest.raises(state.UnknownEntityError):
        sb.update_member_nowait(guild_id, user_id, roles=[42])


def test_command_registry_validates_and_keeps_ids() -> None:
    registry = CommandRegistry(application_id=1, snowflakes=ids.SnowflakeFactory())
    command = {"name": "sync", "description": "Sync", "options": [{"type": 1, "name": "users", "description": "u"}]}

    (first,) = registry.overwrite(7, [command])
    (again,) = registry.overwrite(7, [command])
    (changed,) = registry.overwrite(7, [{**command, "description": "Sync now"}])

    assert first["id"] == again["id"] == changed["id"]
    assert first["version"] == again["version"] != changed["version"]
    assert first["guild_id"] == "7"
    assert first["integration_types"] == [0]
    with pytest.raises(errors.DiscordHTTPError) as caught:
        registry.overwrite(None, [{"name": "Bad Name", "description": "x"}])
    assert caught.value.code == 50035
    assert "name" in (caught.value.errors or {})["0"]
    with pytest.raises(errors.DiscordHTTPError):
        registry.overwrite(None, [{"name": "a", "description": "x"}, {"name": "a", "description": "y"}])
