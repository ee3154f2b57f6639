"""``reconciler demo``: the real bot, a simulated Discord server and a fresh database, for anyone without a token.

`reconciler.demo.run.run_demo` plays it; `reconciler.demo.cli` registers the subcommand (and imports the
rest only when the demo actually runs, so `reconciler --help` stays fast).
"""

from __future__ import annotations

__all__: list[str] = []
