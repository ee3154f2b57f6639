"""Builds the hikari GatewayBot from settings: the same object against Discord, a proxy or the sandbox."""

from __future__ import annotations

__all__ = ["build_bot", "intents_from_names", "start_bot"]

import logging
import typing

import hikari

from reconciler.discord.start_failures import explain_start_failure

if typing.TYPE_CHECKING:
    from collections.abc import Iterable

    from reconciler.config import DiscordSettings

_LOGGER: typing.Final = logging.getLogger(__name__)

# What the replica reads: guilds and their roles, members (chunked), our own user, and the guild channels
# (their `last_message_id` tells the activity backfill where history ends). Nothing else is kept, which
# keeps the cache at about 1.2 KB a member.
_CACHE_COMPONENTS: typing.Final = (
    hikari.api.CacheComponents.GUILDS
    | hikari.api.CacheComponents.MEMBERS
    | hikari.api.CacheComponents.ROLES
    | hikari.api.CacheComponents.ME
    | hikari.api.CacheComponents.GUILD_CHANNELS
)


def intents_from_names(names: Iterable[str]) -> hikari.Intents:
    intents = hikari.Intents.NONE
    for name in names:
        intents |= hikari.Intents[name]
    return intents


def build_bot(settings: DiscordSettings, *, rest_url: str | None = None) -> hikari.GatewayBot:
    """A GatewayBot whose logging is ours (no banner, no handler of its own)."""
    return hikari.GatewayBot(
        settings.token.get_secret_value(),
        intents=intents_from_names(settings.intents),
        rest_url=rest_url or settings.rest_url or None,
        max_retries=settings.rest_retries,
        cache_settings=hikari.impl.CacheSettings(components=_CACHE_COMPONENTS),
        banner=None,
        logs=None,
        suppress_optimization_warning=True,
    )


async def start_bot(bot: hikari.GatewayBot, settings: DiscordSettings) -> None:
    """Connect the shards this process owns; returns once they are up.

    A failure an operator can fix (token, intent, network) is raised as a
    :class:`~reconciler.failures.StartupError`, the original kept as its cause for the DEBUG log.
    """
    try:
        await bot.start(
            check_for_updates=False,
            shard_ids=settings.shard_ids or None,
            shard_count=settings.shard_count or None,
        )
    except Exception as exc:
        failure = explain_start_failure(exc, retries=settings.rest_retries)
        if failure is None:
            raise
        raise failure from exc
    _LOGGER.info("gateway connected", extra={"shards": sorted(bot.shards), "shard_count": bot.shard_count})
