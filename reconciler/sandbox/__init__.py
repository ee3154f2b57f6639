"""A Discord emulator speaking the real gateway and REST protocol, for tests, the demo and benchmarks."""

from __future__ import annotations

__all__ = [
    "UNSET",
    "ChannelInfo",
    "DiscordSandbox",
    "Faults",
    "GuildInfo",
    "MemberInfo",
    "RoleInfo",
    "SandboxSettings",
    "SandboxStats",
    "UnknownEntityError",
    "shard_of",
]

from reconciler.sandbox.ids import shard_of
from reconciler.sandbox.sandbox import DiscordSandbox
from reconciler.sandbox.settings import Faults, SandboxSettings
from reconciler.sandbox.state import UNSET, UnknownEntityError
from reconciler.sandbox.stats import SandboxStats
from reconciler.sandbox.views import ChannelInfo, GuildInfo, MemberInfo, RoleInfo
