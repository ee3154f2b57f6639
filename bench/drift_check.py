"""Drift check benchmark: `measure_drift` over a synced guild, optionally side by side with another version.

Usage:
    .venv/bin/python bench/drift_check.py --members 1000000 --backend sqlite --rounds 3
    git show REV:reconciler/engine/drift.py > /tmp/drift_before.py
    .venv/bin/python bench/drift_check.py --members 1000000 --baseline /tmp/drift_before.py

The scheduled drift check reads every member's full row and compares it with the cache (every 15
minutes by default, every few seconds in the soak), so its time and its peak memory at 1M members
matter on their own. The guild is bench/reconcile.py's synthetic one, synced by the engine, then
drifted by 1% changed, 1% left and 1% joined so that the check's locked recheck has work too.

`--baseline` loads another version of `reconciler/engine/drift.py` (it must import what this checkout
has) and alternates it with this one round by round, so that the machine's drift over the run falls
on both alike. "Peak" is the RSS rise above the start of each check and the rise of CPython's live
blocks (bench/reconcile.py's `PeakRss`): once a check has run, the RSS hardly rises for the next one
(its freed arenas are reused), the blocks show each check's transient footprint all the same.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import importlib.util
import pathlib
import statistics
import sys
import tempfile
import typing

import reconcile as synthetic  # bench/reconcile.py: the synthetic guild, databases and RSS sampling

from reconciler.engine import drift as current
from reconciler.store import SqlStore

if typing.TYPE_CHECKING:
    import types
    from collections.abc import AsyncIterator


def _load(path: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("drift_baseline", path)
    if spec is None or spec.loader is None:
        msg = f"{path}: not a Python module"
        raise SystemExit(msg)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.asynccontextmanager
async def _no_contention(guild_id: int) -> AsyncIterator[None]:
    """The guild lock as the bot hands it over; nothing else runs here, so it is always free."""
    yield


async def run(args: argparse.Namespace) -> int:
    versions: dict[str, types.ModuleType] = {"this checkout": current}
    if args.baseline:
        versions["baseline"] = _load(args.baseline)
    with tempfile.TemporaryDirectory() as workdir:
        databases = synthetic.Databases(args.backend, pathlib.Path(workdir))
        url = await databases.fresh()
        store = await SqlStore.open(url)
        try:
            guild = synthetic.PrebuiltGuild()
            raw = synthetic.generate(args.members)
            guild.current = synthetic.snapshot(raw)
            print(f"== {args.backend}, {args.members:,} members: syncing", flush=True)
            await synthetic.reconcile(synthetic.engine(store, guild))
            guild.current = synthetic.snapshot(synthetic.drift(raw, 0))
            del raw
            gc.collect()
            results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in versions}
            totals: dict[str, int] = {}
            for round_index in range(args.rounds):
                order = list(versions.items())
                if round_index % 2:
                    order.reverse()
                for name, module in order:

                    async def check(module: types.ModuleType = module) -> typing.Any:
                        return await module.measure_drift(
                            synthetic.GUILD,
                            desired=guild,
                            store=store,
                            guild_lock=_no_contention,
                            now=datetime.datetime.now(datetime.UTC),
                        )

                    seconds, peaks, report = await synthetic.timed_peaks(f"{name} #{round_index + 1}", check)
                    results[name].append((seconds, peaks.peak_mb, peaks.peak_blocks))
                    totals[name] = report.drift.total
        finally:
            await store.close()
            await databases.drop(url)
    if len(set(totals.values())) != 1:
        print(f"the versions disagree on the drift: {totals}")
        return 1
    print(f"\ndrift found: {next(iter(totals.values())):,} members (every version)")
    print("| version | best s | median s | median peak MB | median peak blocks |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in results.items():
        seconds = [s for s, _, _ in runs]
        peaks = [p for _, p, _ in runs]
        blocks = [b for _, _, b in runs]
        print(
            f"| {name} | {min(seconds):.2f} | {statistics.median(seconds):.2f} | {statistics.median(peaks):.0f} "
            f"| {statistics.median(blocks) / 1000:,.0f}k |"
        )
    if args.baseline:
        ours, base = results["this checkout"], results["baseline"]
        best = min(s for s, _, _ in ours) / min(s for s, _, _ in base)
        median = statistics.median(s for s, _, _ in ours) / statistics.median(s for s, _, _ in base)
        blocks = statistics.median(b for _, _, b in ours) / max(1, statistics.median(b for _, _, b in base))
        print(f"this checkout / baseline: best {best:.2f}x, median {median:.2f}x, peak blocks {blocks:.2f}x")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=3, help="checks of each version, alternating")
    parser.add_argument("--baseline", default=None, help="another drift.py to alternate with this one")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
