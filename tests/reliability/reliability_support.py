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
    "truth_links",
]

import asyncio
import time
import typing

import pytest

from reconciler.config import settings_from

if typing.TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from bot_process import BotProcess
    from database_view import DatabaseView

    from reconciler.app import App
    from reconciler.config import Settings
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


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], *, within: float, interval: float = 0.05
) -> T:
    """Call `probe` until `accept` holds for its value; fail with the last value after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            msg = f"not reached within {within}s; last value: {value!r}"[:2000]
            raise AssertionError(msg)
        await asyncio.sleep(interval)


def app_settings(sandbox: DiscordSandbox, url: str, **sections: dict[str, typing.Any]) -> Settings:
    """Settings for an in-process app against the sandbox: small batches, fast timers, no scheduler."""
    values: dict[str, dict[str, typing.Any]] = {
        "discord": {"token": sandbox.token, "rest_url": sandbox.rest_url},
        "database": {"url": url, "batch_size": 500},
        "sync": {"activity_flush_seconds": 0.2, "retry_base_seconds": 0.2},
        "schedule": {"enabled": False},
        "observability": {"metrics_address": "127.0.0.1:0"},
    }
    for name, overrides in sections.items():
        values.setdefault(name, {}).update(overrides)
    return settings_from(values)


def humans(sandbox: DiscordSandbox, guild_id: int) -> list[int]:
    """Member ids of the guild that are not bots, in id order."""
    return sorted(uid for uid, m in sandbox.members(guild_id).items() if not m.bot)


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
