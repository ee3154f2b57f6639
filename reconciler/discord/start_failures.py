"""hikari's start-up errors, turned into the one line that names the cause and the fix."""

from __future__ import annotations

__all__ = ["PORTAL", "explain_start_failure"]

import typing

import hikari

from reconciler.failures import FailureKind, StartupError

PORTAL: typing.Final = "https://discord.com/developers/applications"

# Close codes after which hikari does not reconnect, and what the operator should do about each.
_CLOSE_CODES: typing.Final[dict[int, str]] = {
    4004: f"the token was refused (close code 4004): copy the bot token again from {PORTAL} (Bot, Reset Token)",
    4010: "the shard id was refused (close code 4010): check discord.shard_ids against discord.shard_count",
    4011: "Discord requires more shards for this bot (close code 4011): set discord.shard_count to 0 (Discord's recommendation)",
    4012: "the gateway version was refused (close code 4012): hikari is too old for Discord",
    4013: "the intents were refused (close code 4013): check discord.intents",
    4014: (
        "Server Members Intent is not enabled for this application (close code 4014): turn it on in "
        f"{PORTAL} (your application, Bot, Privileged Gateway Intents) and start again"
    ),
}


def explain_start_failure(exc: BaseException, *, retries: int) -> StartupError | None:
    """The failure ``GatewayBot.start`` ended with, if it is one an operator can fix; None otherwise.

    ``retries`` is hikari's budget of retries for a request that could not connect, quoted in the line.
    """
    if isinstance(exc, hikari.UnauthorizedError):
        return StartupError(
            FailureKind.DISCORD_REFUSED,
            f"discord.token: Discord refused the token (401 Unauthorized): copy the bot token again from "
            f"{PORTAL} (your application, Bot, Reset Token) into RECONCILER_DISCORD__TOKEN",
        )
    if isinstance(exc, hikari.ForbiddenError):
        return StartupError(FailureKind.DISCORD_REFUSED, f"Discord refused the request (403): {exc.message}")
    if isinstance(exc, hikari.GatewayServerClosedConnectionError) and not exc.can_reconnect:
        code = int(exc.code) if exc.code is not None else 0
        reason = _CLOSE_CODES.get(code, f"Discord closed the gateway with close code {code} ({exc.reason})")
        return StartupError(FailureKind.DISCORD_REFUSED, f"discord: {reason}")
    if isinstance(exc, hikari.InternalServerError):
        return StartupError(
            FailureKind.DISCORD_UNREACHABLE,
            f"discord.rest_url: Discord answered {exc.status} after {_retries(retries)} ({exc.url}): "
            "an outage; start again later (https://discordstatus.com)",
        )
    if isinstance(exc, hikari.HTTPError) and not isinstance(exc, hikari.HTTPResponseError):
        return StartupError(
            FailureKind.DISCORD_UNREACHABLE,
            f"discord.rest_url: cannot reach Discord after {_retries(retries)}: {exc.message}: "
            "check discord.rest_url (empty means Discord itself), DNS, the firewall or the proxy",
        )
    if isinstance(exc, RuntimeError) and "more sessions than were allowed" in str(exc):
        return StartupError(
            FailureKind.DISCORD_REFUSED,
            "discord: no session starts left for today (GET /gateway/bot session_start_limit): "
            "wait for the reset `reconciler check-config --online` shows; restarting in a loop burns them",
        )
    return None


def _retries(count: int) -> str:
    return f"{count} {'retry' if count == 1 else 'retries'} (discord.rest_retries)"
