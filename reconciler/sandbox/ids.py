"""Snowflakes, shard routing and bot tokens shaped exactly as Discord makes them."""

from __future__ import annotations

__all__ = [
    "DISCORD_EPOCH_MS",
    "SnowflakeFactory",
    "make_token",
    "shard_of",
    "snowflake",
    "snowflake_ms",
    "user_id_from_token",
]

import base64
import binascii
import logging
import secrets
import time
import typing

_LOGGER: typing.Final = logging.getLogger(__name__)

DISCORD_EPOCH_MS: typing.Final = 1_420_070_400_000
_INCREMENT_BITS: typing.Final = 12
_MAX_INCREMENT: typing.Final = (1 << _INCREMENT_BITS) - 1


def snowflake(unix_ms: int, *, worker: int = 0, process: int = 0, increment: int = 0) -> int:
    """Build a snowflake for a Unix time in milliseconds (Discord's layout: 42/5/5/12 bits)."""
    return (
        ((unix_ms - DISCORD_EPOCH_MS) << 22)
        | ((worker & 31) << 17)
        | ((process & 31) << 12)
        | (increment & _MAX_INCREMENT)
    )


def snowflake_ms(value: int) -> int:
    """Unix time in milliseconds encoded in a snowflake."""
    return (value >> 22) + DISCORD_EPOCH_MS


def shard_of(guild_id: int, shard_count: int) -> int:
    """Shard that receives a guild's events: `(guild_id >> 22) % shard_count`."""
    return (guild_id >> 22) % shard_count


class SnowflakeFactory:
    """Unique, increasing snowflakes; wall-clock based unless a fixed start is given."""

    __slots__ = ("_increment", "_last_ms", "_process", "_worker")

    def __init__(self, *, worker: int = 1, process: int = 1) -> None:
        self._last_ms = 0
        self._increment = 0
        self._worker = worker
        self._process = process

    def next(self, *, unix_ms: int | None = None) -> int:
        """Return a new snowflake; never the same twice, never smaller than the previous one."""
        now = int(time.time() * 1000) if unix_ms is None else unix_ms
        if now <= self._last_ms:
            now = self._last_ms
            self._increment += 1
            if self._increment > _MAX_INCREMENT:
                now += 1
                self._increment = 0
        else:
            self._increment = 0
        self._last_ms = now
        return snowflake(now, worker=self._worker, process=self._process, increment=self._increment)

    def next_on_shard(self, shard_id: int, shard_count: int) -> int:
        """Return a new snowflake `s` with `shard_of(s, shard_count) == shard_id`."""
        candidate = self.next()
        offset = (shard_id - shard_of(candidate, shard_count)) % shard_count
        if offset == 0:
            return candidate
        return self.next(unix_ms=snowflake_ms(candidate) + offset)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def make_token(user_id: int, *, secret: str | None = None) -> str:
    """Build a bot token: base64(user id) . base64(timestamp) . secret, as Discord issues them."""
    timestamp = int(time.time()).to_bytes(4, "big")
    return f"{_b64(str(user_id).encode())}.{_b64(timestamp)}.{secret or secrets.token_urlsafe(20)}"


def user_id_from_token(token: str) -> int | None:
    """The user id in a token's first part, or None when it is not one."""
    head = token.split(".", 1)[0]
    try:
        return int(base64.b64decode(head + "=" * (-len(head) % 4), validate=True))
    except (ValueError, binascii.Error):
        return None
