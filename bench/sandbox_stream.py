"""Benchmark: stream a 1,000,000-member guild from the sandbox to a real hikari client.

The sandbox runs in its own process (`python -m reconciler.sandbox.standalone`), each hikari client in
another, so both sides are measured side by side in CPU seconds:

- sandbox encode rate: members per second spent splicing cached member JSON into GUILD_MEMBERS_CHUNK
  payloads and compressing them (its own counters, `GET /_sandbox/stats`);
- sandbox CPU rate: members per CPU-second of the whole sandbox process while streaming (sockets included);
- hikari parse rate: members per CPU-second of the bot process from READY to the last chunk (decompress,
  JSON, entity factory, cache), once with Python's default GC and once GC-tuned (`gc.freeze()` + raised
  thresholds, the tuning DESIGN.md measured).

The sandbox must never be the bottleneck: its encode rate must be at least 5x hikari's parse rate.

    .venv/bin/python bench/sandbox_stream.py [--members 1000000] [--compress zstd-stream|zlib-stream|plain]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys
import time
import typing

import aiohttp

_REQUIRED_RATIO = 5.0


# -- the hikari client (child process) --------------------------------------------------------------


async def _run_bot(rest_url: str, token: str, guild_id: int, gc_mode: str, compress: str) -> dict[str, float]:
    import hikari
    from hikari.api import shard as shard_api
    from hikari.impl import shard as shard_impl

    modes = {
        "zstd-stream": shard_api.GatewayCompression.TRANSPORT_ZSTD_STREAM,
        "zlib-stream": shard_api.GatewayCompression.TRANSPORT_ZLIB_STREAM,
        "plain": None,
    }
    defaults = dict(shard_impl.GatewayShardImpl.__init__.__kwdefaults__ or {})
    defaults["compression"] = modes[compress]
    shard_impl.GatewayShardImpl.__init__.__kwdefaults__ = defaults
    if gc_mode == "tuned":
        gc.freeze()
        gc.set_threshold(100_000, 50, 1000)

    bot = hikari.GatewayBot(
        token,
        rest_url=rest_url,
        intents=hikari.Intents.GUILDS | hikari.Intents.GUILD_MEMBERS,
        banner=None,
        logs=None,
        suppress_optimization_warning=True,
    )
    done = asyncio.Event()
    received = 0
    finished: dict[str, float] = {}

    async def on_chunk(event: hikari.MemberChunkEvent) -> None:
        nonlocal received
        received += len(event.members)
        if event.chunk_index == event.chunk_count - 1 and event.guild_id == guild_id:
            finished["cpu"] = time.process_time()
            finished["wall"] = time.perf_counter()
            done.set()

    bot.subscribe(hikari.MemberChunkEvent, on_chunk)
    await bot.start(check_for_updates=False)
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    await asyncio.wait_for(done.wait(), 3600)
    cached = len(bot.cache.get_members_view_for_guild(guild_id))
    await bot.close()
    return {
        "members": float(received),
        "cached": float(cached),
        "cpu_seconds": finished["cpu"] - cpu_start,
        "wall_seconds": finished["wall"] - wall_start,
    }


# -- orchestration ---------------------------------------------------------------------------------


async def _stats(http: aiohttp.ClientSession, scenario_url: str) -> dict[str, typing.Any]:
    async with http.get(f"{scenario_url}/stats") as reply:
        return typing.cast("dict[str, typing.Any]", await reply.json())


async def _bot_in_child(line: dict[str, typing.Any], gc_mode: str, compress: str) -> dict[str, float]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--bot",
        json.dumps({"rest_url": line["rest_url"], "token": line["token"], "guild_id": line["guild_ids"][0]}),
        "--gc",
        gc_mode,
        "--compress",
        compress,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    if child.returncode != 0:
        msg = f"bot process failed with code {child.returncode}"
        raise RuntimeError(msg)
    return typing.cast("dict[str, float]", json.loads(out.decode().strip().splitlines()[-1]))


async def _orchestrate(members: int, compress: str, gc_modes: list[str]) -> int:
    started = time.perf_counter()
    sandbox = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reconciler.sandbox.standalone",
        "--members",
        str(members),
        "--guilds",
        "1",
        "--seed",
        "1",
        stdout=asyncio.subprocess.PIPE,
    )
    assert sandbox.stdout is not None
    line = json.loads(await asyncio.wait_for(sandbox.stdout.readline(), 900))
    print(f"sandbox ready: {members:,} members generated and pre-encoded in {time.perf_counter() - started:.1f}s")
    rows: list[tuple[str, float, float, float, float, float]] = []
    try:
        async with aiohttp.ClientSession() as http:
            for gc_mode in gc_modes:
                before = await _stats(http, line["scenario_url"])
                bot = await _bot_in_child(line, gc_mode, compress)
                after = await _stats(http, line["scenario_url"])
                encoded = after["members_encoded"] - before["members_encoded"]
                encode_s = (after["chunk_encode_seconds"] - before["chunk_encode_seconds"]) + (
                    after["chunk_compress_seconds"] - before["chunk_compress_seconds"]
                )
                sandbox_cpu = after["process_cpu_seconds"] - before["process_cpu_seconds"]
                assert int(bot["cached"]) == members, f"hikari cached {bot['cached']} of {members} members"
                rows.append(
                    (
                        gc_mode,
                        encoded / encode_s,
                        encoded / sandbox_cpu,
                        bot["members"] / bot["cpu_seconds"],
                        bot["wall_seconds"],
                        sandbox_cpu,
                    )
                )
    finally:
        sandbox.send_signal(signal.SIGTERM)
        await sandbox.wait()

    print(f"\nstreaming {members:,} members over {compress} (2 processes, CPU-seconds measured in each)\n")
    header = (
        f"{'hikari GC':<10} {'sandbox encode/s':>17} {'sandbox CPU/s':>14} {'hikari parse/s':>15} "
        f"{'stream wall s':>14} {'encode ratio':>13} {'CPU ratio':>10}"
    )
    print(header)
    print("-" * len(header))
    worst = float("inf")
    for gc_mode, encode_rate, cpu_rate, parse_rate, wall, _ in rows:
        ratio = encode_rate / parse_rate
        worst = min(worst, ratio)
        print(
            f"{gc_mode:<10} {encode_rate:>17,.0f} {cpu_rate:>14,.0f} {parse_rate:>15,.0f} "
            f"{wall:>14.1f} {ratio:>12.1f}x {cpu_rate / parse_rate:>9.1f}x"
        )
    verdict = "OK" if worst >= _REQUIRED_RATIO else "TOO SLOW"
    print(f"\nworst encode ratio {worst:.1f}x (required >= {_REQUIRED_RATIO:.0f}x): {verdict}")
    return 0 if worst >= _REQUIRED_RATIO else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--compress", choices=["zstd-stream", "zlib-stream", "plain"], default="zstd-stream")
    parser.add_argument("--gc", default="default,tuned", help="hikari GC modes to run: default, tuned")
    parser.add_argument("--bot", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bot:
        target = json.loads(args.bot)
        result = asyncio.run(
            _run_bot(target["rest_url"], target["token"], int(target["guild_id"]), args.gc, args.compress)
        )
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    os.environ.setdefault("PYTHONHASHSEED", "0")
    return asyncio.run(_orchestrate(args.members, args.compress, args.gc.split(",")))


if __name__ == "__main__":
    raise SystemExit(main())
