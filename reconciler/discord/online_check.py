"""``check-config --online``: ask Discord, before the first ``run``, what ``run`` would find out too late.

Three REST calls, made with hikari's own client so that what passes here is what ``run`` meets:
``GET /users/@me`` (the token works), ``GET /oauth2/applications/@me`` (the application's flags say
whether Server Members Intent is enabled: no gateway connection needed) and ``GET /gateway/bot``
(shards recommended, session starts left today).
"""

from __future__ import annotations

__all__ = ["DiscordReport", "ask_discord"]

import typing

import attrs
import hikari

from reconciler.discord.start_failures import PORTAL, explain_start_failure
from reconciler.domain.wording import counted
from reconciler.failures import FailureKind, StartupError

if typing.TYPE_CHECKING:
    import datetime

    from reconciler.config import DiscordSettings

# Discord's names for the application flags (hikari names them VERIFIED_FOR_..._INTENT and ..._INTENT).
_MEMBERS_FLAGS: typing.Final = (
    (hikari.ApplicationFlags.VERIFIED_FOR_GUILD_MEMBERS_INTENT, "GATEWAY_GUILD_MEMBERS"),
    (hikari.ApplicationFlags.GUILD_MEMBERS_INTENT, "GATEWAY_GUILD_MEMBERS_LIMITED"),
)


@attrs.frozen(kw_only=True)
class DiscordReport:
    """What Discord said about this token's bot and application."""

    bot_name: str
    bot_id: int
    application_name: str
    application_id: int
    members_intent_flags: tuple[str, ...]
    """Application flags that enable Server Members Intent; empty when it is off."""
    recommended_shards: int
    sessions_remaining: int
    sessions_total: int
    sessions_reset_after: datetime.timedelta

    @property
    def members_intent(self) -> bool:
        return bool(self.members_intent_flags)

    def lines(self) -> list[str]:
        reset = int(self.sessions_reset_after.total_seconds())
        intent = (
            f"on ({', '.join(self.members_intent_flags)})"
            if self.members_intent
            else "OFF (neither GATEWAY_GUILD_MEMBERS nor GATEWAY_GUILD_MEMBERS_LIMITED is set)"
        )
        return [
            f"discord: token accepted: bot {self.bot_name} (id {self.bot_id}), "
            f"application {self.application_name!r} (id {self.application_id})",
            f"discord: Server Members Intent: {intent}",
            f"discord: gateway: {counted(self.recommended_shards, 'shard')} recommended, "
            f"{self.sessions_remaining:,} of {self.sessions_total:,} session starts left, "
            f"reset in {reset // 3600} h {reset % 3600 // 60:02d} min",
        ]

    def failure(self) -> StartupError | None:
        """The failure ``run`` would meet, if any."""
        if not self.members_intent:
            return StartupError(
                FailureKind.DISCORD_REFUSED,
                "discord: Server Members Intent is not enabled for this application (run would be closed "
                f"with 4014): turn it on in {PORTAL} (your application, Bot, Privileged Gateway Intents)",
            )
        if self.sessions_remaining == 0:
            return StartupError(
                FailureKind.DISCORD_REFUSED,
                "discord: no session starts left for today: wait for the reset shown above",
            )
        return None


async def ask_discord(settings: DiscordSettings) -> DiscordReport:
    """Make the three calls; a refusal or an unreachable API is raised as the same failure ``run`` gives."""
    app = hikari.RESTApp(max_retries=settings.rest_retries, url=settings.rest_url or None)
    await app.start()
    try:
        async with app.acquire(settings.token.get_secret_value(), hikari.TokenType.BOT) as client:
            me = await client.fetch_my_user()
            application = await client.fetch_application()
            gateway = await client.fetch_gateway_bot_info()
    except Exception as exc:
        failure = explain_start_failure(exc, retries=settings.rest_retries)
        if failure is None:
            raise
        raise failure from exc
    finally:
        await app.close()
    limit = gateway.session_start_limit
    return DiscordReport(
        bot_name=me.username,
        bot_id=int(me.id),
        application_name=application.name,
        application_id=int(application.id),
        members_intent_flags=tuple(name for flag, name in _MEMBERS_FLAGS if flag in application.flags),
        recommended_shards=gateway.shard_count,
        sessions_remaining=limit.remaining,
        sessions_total=limit.total,
        sessions_reset_after=limit.reset_after,
    )
