"""Shared pieces of the fault tests: polling, settings, ground truth and what the database holds."""

from __future__ import annotations

__all__ = [
    "BACKENDS",
    "AppFactory",
    "BotFactory",
    "Observed",
    "UrlFactory",
    "ViewFactory",
    "app_settings",
    "eventually",
    "humans",
    "listening_addresses",
    "truth_links",
]

import typing

import psutil
import pytest
from app_settings import app_settings
from waiting import eventually

if typing.TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from database_view import DatabaseView

    from reconciler.app import App
    from reconciler.harness import BotProcess
    from reconciler.sandbox import DiscordSandbox

UrlFactory: typing.TypeAlias = "Callable[[str], Awaitable[str]]"
"""`await make("sqlite")` or `await make("postgresql")`: the URL of an empty database."""
ViewFactory: typing.TypeAlias = "Callable[[str], DatabaseView]"
AppFactory: typing.TypeAlias = "Callable[..., Awaitable[App]]"
BotFactory: typing.TypeAlias = "Callable[..., Awaitable[BotProcess]]"

T = typing.TypeVar("T")

BACKENDS: typing.Final = [
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("sqlite", id="sqlite"),
]


def humans(sandbox: DiscordSandbox, guild_id: int) -> list[int]:
    """Member ids of the guild that are not bots, in id order."""
    return sorted(uid for uid, m in sandbox.members(guild_id).items() if not m.bot)


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(ip, port) of every TCP socket the process listens on."""
    connections = psutil.Process(pid).net_connections(kind="tcp")
    return {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}


def truth_links(sandbox: DiscordSandbox, guild_id: int) -> set[tuple[int, int]]:
    """(user, role) links as Discord has them (no @everyone)."""
    return {(uid, rid) for uid, m in sandbox.members(guild_id).items() for rid in m.role_ids}


class Observed:
    """Figures a test measured, printed at the end (`pytest -s`) so docs/reliability.md can quote them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.figures: dict[str, object] = {}

    def __setitem__(self, key: str, value: object) -> None:
        self.figures[key] = round(value, 2) if isinstance(value, float) else value

    def print(self) -> None:
        print(f"\n[observed] {self.name}: " + ", ".join(f"{k}={v}" for k, v in self.figures.items()))
