"""The bot token's shape, checked offline exactly as hikari checks it before connecting."""

from __future__ import annotations

__all__ = ["token_shape_problem"]

import hikari


def token_shape_problem(token: str) -> str | None:
    """Why hikari would refuse this token before any request, or None if it has a bot token's shape.

    hikari reads the bot's user id from the token's first dot-separated part (base64 of the id) when the
    bot is built; a token pasted with a piece missing fails there. Checking with hikari's own function
    keeps the offline check and the real one from ever disagreeing. The message never repeats the token.
    """
    if token != token.strip():
        return "has spaces or a line break around it (copy it again without them)"
    if token.count(".") != 2:
        return f"is not a bot token: it has {token.count('.') + 1} dot-separated parts, a bot token has 3"
    try:
        hikari.applications.get_token_id(token)
    except ValueError:
        return "is not a bot token: its first part is not the base64 of a user id (Unexpected token format)"
    return None
