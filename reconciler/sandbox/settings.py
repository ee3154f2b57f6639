"""Knobs of the sandbox: fixed settings, the bot's identity, and fault injection switches tests can flip."""

from __future__ import annotations

__all__ = ["BotIdentity", "Faults", "GatewayIntent", "SandboxSettings"]

import dataclasses
import enum
import logging
import typing

if typing.TYPE_CHECKING:
    from reconciler.sandbox import state

_LOGGER: typing.Final = logging.getLogger(__name__)


class GatewayIntent(enum.IntFlag):
    """Gateway intent bits the sandbox routes events by."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_MODERATION = 1 << 2
    GUILD_EXPRESSIONS = 1 << 3
    GUILD_INTEGRATIONS = 1 << 4
    GUILD_WEBHOOKS = 1 << 5
    GUILD_INVITES = 1 << 6
    GUILD_VOICE_STATES = 1 << 7
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    GUILD_MESSAGE_TYPING = 1 << 11
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    DIRECT_MESSAGE_TYPING = 1 << 14
    MESSAGE_CONTENT = 1 << 15
    GUILD_SCHEDULED_EVENTS = 1 << 16
    AUTO_MODERATION_CONFIGURATION = 1 << 20
    AUTO_MODERATION_EXECUTION = 1 << 21
    GUILD_MESSAGE_POLLS = 1 << 24
    DIRECT_MESSAGE_POLLS = 1 << 25


ALL_INTENTS: typing.Final = sum(int(i) for i in GatewayIntent)

# Application flags Discord sets when a privileged intent is enabled in the developer portal; the
# `_LIMITED` ones are those of an unverified bot (fewer than 100 guilds), which a sandbox bot is.
APPLICATION_GATEWAY_PRESENCE_LIMITED: typing.Final = 1 << 13
APPLICATION_GATEWAY_GUILD_MEMBERS_LIMITED: typing.Final = 1 << 15
APPLICATION_GATEWAY_MESSAGE_CONTENT_LIMITED: typing.Final = 1 << 19
APPLICATION_COMMAND_BADGE: typing.Final = 1 << 23


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SandboxSettings:
    """Fixed for the life of a sandbox."""

    heartbeat_interval_ms: int = 41_250
    members_intent_enabled: bool = True
    presences_intent_enabled: bool = True
    message_content_intent_enabled: bool = True
    recommended_shards: int = 1
    max_concurrency: int = 16
    session_buffer_bytes: int = 64 * 1024 * 1024
    """Events kept per session for RESUME; a resume from further back gets INVALID_SESSION."""
    session_ttl_s: float = 180.0
    """How long a disconnected session stays resumable."""
    gateway_send_limit: tuple[int, float] = (120, 60.0)
    """Payloads a client may send per window before Discord closes with 4008."""
    zlib_level: int = 1
    zstd_level: int = 1
    interaction_ack_s: float = 3.0
    """Time to send the initial response to an interaction."""
    interaction_token_s: float = 15 * 60.0
    """Lifetime of an interaction's webhook token (edits and follow-ups)."""
    rest_rate_limit: tuple[int, float] = (50, 1.0)
    """Requests per bucket and major parameter, and the window in seconds."""

    def application_flags(self) -> int:
        """Application flags as READY and the application object report them."""
        flags = APPLICATION_COMMAND_BADGE
        if self.members_intent_enabled:
            flags |= APPLICATION_GATEWAY_GUILD_MEMBERS_LIMITED
        if self.presences_intent_enabled:
            flags |= APPLICATION_GATEWAY_PRESENCE_LIMITED
        if self.message_content_intent_enabled:
            flags |= APPLICATION_GATEWAY_MESSAGE_CONTENT_LIMITED
        return flags

    def disallowed_intents(self, intents: int) -> int:
        """Privileged intents asked for but not enabled for the application."""
        missing = 0
        if intents & GatewayIntent.GUILD_MEMBERS and not self.members_intent_enabled:
            missing |= GatewayIntent.GUILD_MEMBERS
        if intents & GatewayIntent.GUILD_PRESENCES and not self.presences_intent_enabled:
            missing |= GatewayIntent.GUILD_PRESENCES
        if intents & GatewayIntent.MESSAGE_CONTENT and not self.message_content_intent_enabled:
            missing |= GatewayIntent.MESSAGE_CONTENT
        return missing


@dataclasses.dataclass(slots=True, kw_only=True)
class Faults:
    """Switches for fault injection; tests may change them at any time."""

    member_request_window_s: float = 30.0
    """Discord allows one full member request per guild per session in this window."""
    rate_limit_member_requests: bool = False
    """Answer every member request with RATE_LIMITED."""
    chunk_delay_s: float = 0.0
    """Pause before each GUILD_MEMBERS_CHUNK."""
    ignore_heartbeats: bool = False
    """Stop acknowledging heartbeats (the client sees a zombie connection)."""
    rest_latency_s: float = 0.0
    """Delay added to every REST reply."""
    resume_replay_overlap: int = 0
    """A RESUME also replays this many events the client had already received (duplicates to survive)."""
    rest_rate_limit: tuple[int, float] | None = None
    """Tighter REST buckets than `SandboxSettings.rest_rate_limit` (requests, seconds): 429s in a test."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BotIdentity:
    """The bot user, its token and its application."""

    token: str
    user: state.User
    application_id: int
    application_name: str
    owner: state.User
    verify_key: str
