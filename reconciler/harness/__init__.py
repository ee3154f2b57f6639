"""Running and breaking the real bot from outside: shared by the reliability tests and the soak benchmark.

Nothing in the bot imports this package: it starts `reconciler run` as a child process, reads its
endpoints, and cuts its database connection, exactly as an operator's tooling would.
"""

from __future__ import annotations

__all__ = ["BotProcess", "Scrape", "TcpProxy", "bot_environment"]

from reconciler.harness.bot_process import BotProcess, Scrape, bot_environment
from reconciler.harness.tcp_proxy import TcpProxy
