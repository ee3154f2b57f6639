"""Message history as Discord serves it: paging, 403 for a hidden channel, rate limits, threads."""

from __future__ import annotations

import time
import typing

import aiohttp
import hikari
import pytest

if typing.TYPE_CHECKING:
    from sandbox_support import BotFactory, SandboxFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.e2e]

START_MS: typing.Final = 1_760_000_000_000


async def test_pages_before_after_around_newest_first(sandbox_factory: SandboxFactory) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=10, seed=61)
    channel_id = next(iter(sb.channels(guild_id)))
    author = sb.plain_member_id(guild_id)
    ids = sb.seed_history(channel_id, [author], 120, start_ms=START_MS)
    auth = {"Authorization": f"Bot {sb.token}"}

    async def page(**params: str) -> tuple[int, typing.Any]:
        url = f"/api/v10/channels/{channel_id}/messages"
        async with aiohttp.ClientSession(sb.rest_url) as http, http.get(url, params=params, headers=auth) as reply:
            return reply.status, await reply.json()

    status, default = await page()
    assert status == 200
    assert [int(m["id"]) for m in default] == ids[::-1][:50]  # default 50, newest first
    _, after = await page(after=str(ids[9]), limit="5")
    assert [int(m["id"]) for m in after] == ids[10:15][::-1]
    _, before = await page(before=str(ids[9]), limit="100")
    assert [int(m["id"]) for m in before] == ids[:9][::-1]
    _, around = await page(around=str(ids[60]), limit="4")
    assert [int(m["id"]) for m in around] == ids[58:62][::-1]
    assert {m["author"]["id"] for m in default} == {str(author)}
    assert all(m["timestamp"] and m["channel_id"] == str(channel_id) for m in default)
    for bad in ({"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"after": "1", "before": "2"}):
        status, body = await page(**bad)
        assert (status, body["code"]) == (400, 50035), bad
    assert sb.truth.channel(channel_id).last_message_id == ids[-1]


async def test_a_hidden_channel_is_403_and_hikari_reads_history_and_threads(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=10, seed=62)
    visible, hidden, *_ = sb.channels(guild_id)
    author = sb.plain_member_id(guild_id)
    sb.set_channel_readable(hidden, False)
    posted = [await sb.post_message(visible, author, f"m{i}") for i in range(3)]
    thread = sb.create_thread(visible, "talk", author)
    in_thread = await sb.post_message(thread, author, "in the thread")
    bot = await gateway_bot_factory(sb)

    fetched = [m async for m in bot.rest.fetch_messages(visible, after=hikari.Snowflake(0))]
    threads = await bot.rest.fetch_active_threads(guild_id)
    with pytest.raises(hikari.ForbiddenError) as refused:
        await bot.rest.fetch_messages(hidden)
    cached = bot.cache.get_guild_channel(visible)

    assert [int(m.id) for m in fetched] == posted  # hikari turns an `after` page oldest first
    assert [(int(t.id), t.last_message_id) for t in threads] == [(thread, in_thread)]
    assert refused.value.code == 50001
    assert isinstance(cached, hikari.GuildTextChannel)
    assert cached.last_message_id == posted[-1]


async def test_tight_buckets_answer_429_and_hikari_waits_them_out(
    sandbox_factory: SandboxFactory, gateway_bot_factory: BotFactory
) -> None:
    sb = await sandbox_factory()
    guild_id = sb.create_guild(members=10, seed=63)
    channel_id = next(iter(sb.channels(guild_id)))
    sb.seed_history(channel_id, [sb.plain_member_id(guild_id)], 10, start_ms=START_MS)
    bot = await gateway_bot_factory(sb)
    sb.faults.rest_rate_limit = (2, 0.5)
    auth = {"Authorization": f"Bot {sb.token}"}

    async with aiohttp.ClientSession(sb.rest_url) as http:
        replies = []
        for _ in range(3):
            async with http.get(f"/channels/{channel_id}/messages", headers=auth) as reply:
                replies.append((reply.status, dict(reply.headers), await reply.json()))
    started = time.monotonic()
    for _ in range(5):  # hikari reads the headers and waits instead of failing
        await bot.rest.fetch_messages(channel_id).limit(1).collect(list)
    waited = time.monotonic() - started

    assert [status for status, _, _ in replies] == [200, 200, 429]
    _, headers, body = replies[2]
    assert headers["X-RateLimit-Limit"] == "2"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert float(headers["X-RateLimit-Reset-After"]) <= 0.5
    assert headers["X-RateLimit-Scope"] == "user"
    assert set(body) == {"message", "retry_after", "global"}
    assert waited >= 0.5  # five requests through a bucket of two per half second


async def test_without_the_message_content_intent_history_has_no_content(sandbox_factory: SandboxFactory) -> None:
    sb = await sandbox_factory(message_content_intent_enabled=False)
    guild_id = sb.create_guild(members=10, seed=64)
    channel_id = next(iter(sb.channels(guild_id)))
    await sb.post_message(channel_id, sb.plain_member_id(guild_id), "private words")
    auth = {"Authorization": f"Bot {sb.token}"}

    url = f"/channels/{channel_id}/messages"
    async with aiohttp.ClientSession(sb.rest_url) as http, http.get(url, headers=auth) as reply:
        (message,) = await reply.json()

    assert message["content"] == ""
    assert {"id", "author", "timestamp", "channel_id"} <= set(message)
