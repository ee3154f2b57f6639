"""Benchmark: the activity backfill, 100,000 messages of history across 20 channels, through the sandbox.

The sandbox runs in a child process (its CPU is not the bot's) holding the history and enforcing
Discord-style REST buckets (per route and channel, `--rate-limit` requests per window). This process
runs the whole app (`running_app`, SQLite by default) on its first start with
`activity.import_history_days = 1`, so every message of the history is fetched and counted. Printed:
messages/s from the start of the guild's backfill to its end, the requests made, the ceiling the
rate limit allows (concurrency x requests per window x 100 messages a page), and whether the
database counted exactly the messages posted.

    .venv/bin/python bench/backfill.py [--messages 100000] [--channels 20] [--concurrency 4]
        [--rate-limit 50/1.0] [--database URL]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import pathlib
import sys
import tempfile
import time
import typing

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from reconciler.app import running_app  # noqa: E402
from reconciler.config import settings_from  # noqa: E402
from reconciler.sandbox import DiscordSandbox  # noqa: E402
from reconciler.sandbox.settings import SandboxSettings  # noqa: E402
from reconciler.store.connect import create_engine  # noqa: E402

PAGE: typing.Final = 100


def _sandbox_main(conn: multiprocessing.connection.Connection, args: dict[str, typing.Any]) -> None:
    asyncio.run(_sandbox_serve(conn, args))


async def _sandbox_serve(conn: multiprocessing.connection.Connection, args: dict[str, typing.Any]) -> None:
    loop = asyncio.get_running_loop()
    settings = SandboxSettings(rest_rate_limit=args["rate_limit"])
    async with DiscordSandbox(settings=settings) as sb:
        guild_id = sb.create_guild(name="Backfill", members=1000, channels=args["channels"], seed=77)
        humans = [uid for uid, m in sb.members(guild_id).items() if not m.bot]
        per_channel = args["messages"] // args["channels"]
        start_ms = int(time.time() * 1000) - 3_600_000  # an hour ago: within a day's import
        for index, channel_id in enumerate(sb.channels(guild_id)):
            sb.seed_history(channel_id, humans[index::7] or humans, per_channel, start_ms=start_ms, step_ms=1)
        conn.send({"rest_url": sb.rest_url, "token": sb.token, "guild_id": guild_id})
        await loop.run_in_executor(None, conn.recv)  # "stop"
        conn.send(
            {
                "requests": sb.stats.rest_requests["GET /channels/{channel_id}/messages"],
                "rate_limited": sb.stats.rest_rate_limited,
                "served": sb.stats.history_messages_served,
            }
        )


async def run(args: argparse.Namespace, url: str) -> dict[str, typing.Any]:
    limit, period = args.rate_limit
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_sandbox_main,
        args=(child, {"messages": args.messages, "channels": args.channels, "rate_limit": (limit, period)}),
        daemon=True,
    )
    process.start()
    try:
        info = parent.recv()
        settings = settings_from(
            {
                "discord": {"token": info["token"], "rest_url": info["rest_url"]},
                "database": {"url": url},
                "schedule": {"enabled": False},
                "observability": {"metrics_address": "127.0.0.1:0"},
                "activity": {"import_history_days": 1, "backfill_concurrency": args.concurrency},
            }
        )
        guild_id = info["guild_id"]
        async with running_app(settings, serve_metrics=False) as app:
            assert app.backfill is not None
            deadline = time.monotonic() + 600
            while True:
                progress = app.backfill.progress(guild_id)
                if progress is not None and not progress.running:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("backfill did not finish within 600 s")
                await asyncio.sleep(0.05)
            await app.activity.flush()
            seconds = (progress.finished_at or 0.0) - progress.started_at
            counted_in_run = progress.messages
        engine = create_engine(url)
        async with engine.connect() as conn:
            counted = (await conn.execute(sa.text("SELECT SUM(messages) FROM message_activity"))).scalar()
        await engine.dispose()
        parent.send("stop")
        served = parent.recv()
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    ceiling = min(args.concurrency, args.channels) * limit / period * PAGE
    return {
        "messages": args.messages,
        "channels": args.channels,
        "concurrency": args.concurrency,
        "seconds": seconds,
        "messages_per_s": counted_in_run / seconds if seconds else float("nan"),
        "rate_limit": f"{limit} requests / {period:g} s per channel",
        "ceiling_per_s": ceiling,
        "requests": served["requests"],
        "rate_limited_429": served["rate_limited"],
        "counted_in_database": int(counted or 0),
        "exact": int(counted or 0) == args.messages,
    }


def _rate(text: str) -> tuple[int, float]:
    requests, _, period = text.partition("/")
    return int(requests), float(period or 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4, help="activity.backfill_concurrency")
    parser.add_argument("--rate-limit", type=_rate, default=(50, 1.0), help="sandbox bucket: REQUESTS/SECONDS")
    parser.add_argument("--database", default=None, help="database URL (default: SQLite in a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database or f"sqlite+aiosqlite:///{pathlib.Path(tmp) / 'backfill.db'}"
        result = asyncio.run(run(args, url))
    print(
        f"backfill: {result['messages']:,} messages in {result['channels']} channels, concurrency "
        f"{result['concurrency']}: {result['seconds']:.2f} s = {result['messages_per_s']:,.0f} messages/s "
        f"(rate limit {result['rate_limit']}: ceiling {result['ceiling_per_s']:,.0f} messages/s, "
        f"{result['messages_per_s'] / result['ceiling_per_s']:.0%} of it); {result['requests']:,} requests, "
        f"{result['rate_limited_429']} answered 429; counted in the database {result['counted_in_database']:,} "
        f"({'exact' if result['exact'] else 'NOT EXACT'})"
    )
    if not result["exact"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
