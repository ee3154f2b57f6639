"""Start-up failures an operator can fix: each is one line naming cause and fix, with an exit code of its own.

A first deploy fails in a handful of ways (the token, the portal's intent switch, the network, a port,
the database). A traceback tells the operator none of them; a line and a distinct exit code tell a
person and a supervisor (systemd, Kubernetes) what to fix. The codes are documented in the README's
troubleshooting table and must not change meaning.
"""

from __future__ import annotations

__all__ = ["FailureKind", "StartupError"]

import enum
import typing


class FailureKind(enum.IntEnum):
    """What failed; the value is the process exit code."""

    UNEXPECTED = 1
    """Not one of the causes below: a bug or an unforeseen environment (the traceback is in the log at DEBUG)."""
    CONFIG = 2
    """A setting is wrong (raised as :class:`reconciler.config.ConfigError`, listed here for the table)."""
    DISCORD_REFUSED = 3
    """Discord answered and said no: token refused (401, 4004) or a privileged intent not enabled (4014)."""
    DISCORD_UNREACHABLE = 4
    """Discord (or ``discord.rest_url``) did not answer within hikari's retry budget."""
    METRICS_ADDRESS = 5
    """``observability.metrics_address`` cannot be bound (in use, not an address of this machine, privileged)."""
    DATABASE = 6
    """The database cannot be reached, created or written."""


class StartupError(Exception):
    """A failure with a known cause; ``str()`` is the one line shown to the operator."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind: typing.Final = kind

    @property
    def exit_code(self) -> int:
        return int(self.kind)
