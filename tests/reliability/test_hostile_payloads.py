"""Member payloads no sane client would send: stored or refused one member at a time, the run goes on.

The sandbox's generator only makes well-formed members, so the test edits its ground truth directly
(`sandbox.truth`, a public attribute) and, for fields Discord might add tomorrow, the member's cached
wire JSON; live events go out through the gateway's own `dispatch`. No sandbox code was changed.
"""

from __future__ import annotations

import asyncio
import typing

import orjson
import pytest
from reliability_support import BACKENDS, AppFactory, Observed, UrlFactory, ViewFactory, eventually, humans

from reconciler.sandbox import DiscordSandbox, payloads
from reconciler.sandbox.settings import GatewayIntent

if typing.TYPE_CHECKING:
    from reconciler.app import App

LONG_NICK: typing.Final = "N" * 10_000
LONG_USERNAME: typing.Final = "u" * 5_000
UNICODE_NICK: typing.Final = "🦄\u200d🔥 שלום \u202eevil\u202c e\u0301 \u200b 名前 👩\u200d👩\u200d👧 \U0010fffd"
CONTROL_NICK: typing.Final = "tab\tnew\nline\x07bell\x1b[31mred\x7f"
NUL_NICK: typing.Final = "nul\x00inside"
MISSING_ROLE: typing.Final = 4_242_424_242_424_242_424


def _hostile(sandbox: DiscordSandbox, guild_id: int) -> dict[str, int]:
    """Turn some generated members hostile, before the bot first sees them; returns case -> user id."""
    guild = sandbox.truth.guild(guild_id)
    people = humans(sandbox, guild_id)
    special = {sandbox.owner_id(guild_id), sandbox.admin_user_id(guild_id)}
    ids = iter(u for u in people if u not in special)
    cases = {
        name: next(ids)
        for name in ("long", "unicode", "control", "nul", "null_global_name", "unknown_fields", "missing_role")
    }
    real_role = next(r for r in sandbox.roles(guild_id) if r != guild_id)
    edits: dict[str, dict[str, typing.Any]] = {
        "long": {"nick": LONG_NICK, "username": LONG_USERNAME},
        "unicode": {"nick": UNICODE_NICK, "global_name": UNICODE_NICK[::-1]},
        "control": {"nick": CONTROL_NICK},
        "nul": {"nick": NUL_NICK},
        "null_global_name": {"global_name": None, "nick": None},
        "missing_role": {"roles": (real_role, MISSING_ROLE)},
    }
    for name, fields in edits.items():
        member = guild.members[cases[name]]
        for field, value in fields.items():
            if field in {"username", "global_name"}:
                setattr(member.user, field, value)
            elif field == "roles":
                member.roles = value  # past the sandbox's own check: Discord never sends this
            else:
                setattr(member, field, value)
        member.wire = None
    member = guild.members[cases["unknown_fields"]]
    wire = payloads.member_obj(member)
    wire["some_future_field"] = {"nested": [1, None, "x"], "flag": True}
    wire["user"]["another_future_field"] = "🦄"
    member.wire = orjson.dumps(wire)
    return cases


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", BACKENDS)
async def test_hostile_members_are_stored_or_refused_one_by_one(
    sandbox: DiscordSandbox,
    url_factory: UrlFactory,
    app_factory: AppFactory,
    db_view_factory: ViewFactory,
    backend: str,
) -> None:
    observed = Observed(f"hostile payloads ({backend})")
    guild_id = sandbox.create_guild(members=300, roles=6, seed=9501)
    cases = _hostile(sandbox, guild_id)
    truth = sandbox.members(guild_id)
    url = await url_factory(backend)
    app: App = await app_factory(sandbox, url)
    view = db_view_factory(url)

    # Start-up: the hostile members arrived in member chunks.
    rows = await view.members(guild_id)
    links = await view.links(guild_id)
    startup = (await view.runs(guild_id))[-1]
    refused: set[int] = {cases["nul"]} if backend == "postgresql" else set()
    assert set(rows) == set(truth) - refused
    for uid in set(truth) - refused:
        assert (rows[uid]["nickname"], rows[uid]["username"], rows[uid]["global_name"]) == (
            truth[uid].nick,
            truth[uid].username,
            truth[uid].global_name,
        ), uid
    assert len(rows[cases["long"]]["nickname"]) == 10_000
    assert rows[cases["null_global_name"]]["global_name"] is None
    assert {r for u, r in links if u == cases["missing_role"]} == set(truth[cases["missing_role"]].role_ids) - {
        MISSING_ROLE
    }
    if refused:
        # PostgreSQL text cannot hold NUL: that member alone is refused, counted and named.
        assert (startup["outcome"], startup["errors"], startup["created"]) == ("partial", 1, len(truth) - 1)
        assert str(cases["nul"]) in startup["error_sample"]
    else:
        assert (startup["outcome"], startup["errors"], startup["created"]) == ("success", 0, len(truth))
    observed["startup"] = (startup["outcome"], startup["created"], startup["errors"])
    observed["error_sample"] = startup["error_sample"]

    # Live: the same kinds of payload as gateway events, with well-formed changes in the same burst.
    newcomer = sandbox.add_member_nowait(
        guild_id, username=LONG_USERNAME[:4000] + "🦄", global_name=None, nick=UNICODE_NICK + LONG_NICK
    )
    target = cases["missing_role"]
    member = sandbox.truth.member(guild_id, target)
    member.nick = CONTROL_NICK + "-live"
    member.wire = None
    update = payloads.member_obj(member)
    update["roles"] = [*update["roles"], str(MISSING_ROLE + 1)]
    update["guild_id"] = str(guild_id)
    update["some_future_field"] = [{"x": 1}]
    sandbox.gateway.dispatch(guild_id, "GUILD_MEMBER_UPDATE", orjson.dumps(update), intent=GatewayIntent.GUILD_MEMBERS)
    plain = sandbox.plain_member_id(guild_id)
    sandbox.update_member_nowait(guild_id, plain, nick="an ordinary change")
    nul_live = next(u for u in humans(sandbox, guild_id) if u not in cases.values() and u != plain)
    sandbox.update_member_nowait(guild_id, nul_live, nick="live\x00nul")
    await sandbox.flush()

    def landed(rows: dict[int, dict[str, typing.Any]]) -> bool:
        return (
            newcomer in rows
            and rows[plain]["nickname"] == "an ordinary change"
            and rows[target]["nickname"] == CONTROL_NICK + "-live"
        )

    rows = await eventually(lambda: view.members(guild_id), landed, within=20, interval=0.1)
    assert await app.wait_idle(20)
    await asyncio.sleep(0.2)
    rows = await view.members(guild_id)
    assert rows[newcomer]["nickname"] == UNICODE_NICK + LONG_NICK
    assert rows[newcomer]["global_name"] is None
    assert {r for u, r in await view.links(guild_id) if u == target} == set(truth[target].role_ids) - {MISSING_ROLE}
    live_runs = (await view.runs(guild_id))[1:]
    if backend == "postgresql":
        assert rows[nul_live]["nickname"] != "live\x00nul", "PostgreSQL stored a NUL"
        assert sum(r["errors"] for r in live_runs) >= 1
        assert any(str(nul_live) in (r["error_sample"] or "") for r in live_runs)
    else:
        assert rows[nul_live]["nickname"] == "live\x00nul"
    assert all(r["outcome"] in {"success", "partial"} for r in live_runs), live_runs
    observed["live_runs"] = [(r["outcome"], r["created"], r["updated"], r["errors"]) for r in live_runs]
    observed.print()
