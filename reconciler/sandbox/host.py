"""What the REST routes and the scenario API need of the sandbox, so neither imports `sandbox.py` back.

`DiscordSandbox` builds both and hands itself over; typing them against these protocols instead of the
class keeps the import graph free of cycles (type-only ones included). A route that needs more of the
sandbox adds it here; pyright checks at `RestApi(self)` and `scenario_http.routes(self)` that the
sandbox still provides all of it.
"""

from __future__ import annotations

__all__ = ["RestHost", "ScenarioHost"]

import logging
import typing

if typing.TYPE_CHECKING:
    from reconciler.sandbox.commands import CommandRegistry
    from reconciler.sandbox.history import StoredMessage
    from reconciler.sandbox.interactions import InteractionRecord, Interactions
    from reconciler.sandbox.settings import BotIdentity, Faults, SandboxSettings
    from reconciler.sandbox.state import GroundTruth, MemberFields, Unset
    from reconciler.sandbox.stats import SandboxStats
    from reconciler.sandbox.views import ChannelInfo, GuildInfo, MemberInfo, RoleInfo

_LOGGER: typing.Final = logging.getLogger(__name__)

JSON = dict[str, typing.Any]


class RestHost(typing.Protocol):
    """The sandbox as Discord's REST routes (`rest.RestApi`) see it."""

    @property
    def settings(self) -> SandboxSettings: ...
    @property
    def faults(self) -> Faults: ...
    @property
    def stats(self) -> SandboxStats: ...
    @property
    def truth(self) -> GroundTruth: ...
    @property
    def identity(self) -> BotIdentity: ...
    @property
    def command_registry(self) -> CommandRegistry: ...
    @property
    def interactions(self) -> Interactions: ...
    @property
    def token(self) -> str: ...
    @property
    def gateway_url(self) -> str: ...
    @property
    def application_id(self) -> int: ...
    @property
    def bot_user_id(self) -> int: ...

    def session_count(self) -> int: ...

    def update_member_nowait(
        self,
        guild_id: int,
        user_id: int,
        *,
        nick: str | Unset | None = ...,
        roles: typing.Iterable[int] | Unset = ...,
        username: str | Unset = ...,
        global_name: str | Unset | None = ...,
        avatar: str | Unset | None = ...,
    ) -> None: ...

    def bot_message_nowait(self, channel_id: int, body: JSON) -> JSON: ...
    def message_history_obj(self, channel_id: int, message: StoredMessage) -> JSON: ...


class ScenarioHost(typing.Protocol):
    """The sandbox as the scenario API over HTTP (`scenario_http.routes`) sees it."""

    @property
    def stats(self) -> SandboxStats: ...
    @property
    def truth(self) -> GroundTruth: ...
    @property
    def rest_url(self) -> str: ...
    @property
    def gateway_url(self) -> str: ...
    @property
    def token(self) -> str: ...
    @property
    def application_id(self) -> int: ...
    @property
    def bot_user_id(self) -> int: ...
    @property
    def guild_ids(self) -> list[int]: ...
    @property
    def paused(self) -> bool: ...

    def session_count(self) -> int: ...
    def guild(self, guild_id: int) -> GuildInfo: ...
    def member(self, guild_id: int, user_id: int) -> MemberInfo: ...
    def roles(self, guild_id: int) -> dict[int, RoleInfo]: ...
    def channels(self, guild_id: int) -> dict[int, ChannelInfo]: ...
    def commands(self, guild_id: int | None = None) -> list[JSON]: ...
    def interaction(self, interaction_id: int) -> InteractionRecord: ...

    def create_guild(
        self,
        name: str | None = None,
        members: int = 100,
        roles: int = 12,
        channels: int = 3,
        seed: int = 0,
        *,
        guild_id: int | None = None,
        shard: tuple[int, int] | None = None,
        prewarm: bool = True,
    ) -> int: ...

    async def remove_guild(self, guild_id: int) -> None: ...

    async def add_member(
        self,
        guild_id: int,
        *,
        user_id: int | None = None,
        username: str | None = None,
        global_name: str | None = None,
        avatar: str | None = None,
        bot: bool = False,
        nick: str | None = None,
        roles: typing.Iterable[int] = (),
    ) -> int: ...

    async def update_member(
        self,
        guild_id: int,
        user_id: int,
        *,
        nick: str | Unset | None = ...,
        roles: typing.Iterable[int] | Unset = ...,
        username: str | Unset = ...,
        global_name: str | Unset | None = ...,
        avatar: str | Unset | None = ...,
        fields: MemberFields | None = ...,
    ) -> None: ...

    async def remove_member(self, guild_id: int, user_id: int) -> None: ...

    async def create_role(
        self,
        guild_id: int,
        *,
        name: str = "new role",
        permissions: int = 0,
        color: int = 0,
        hoist: bool = False,
        mentionable: bool = False,
    ) -> int: ...

    async def update_role(
        self,
        guild_id: int,
        role_id: int,
        *,
        name: str | Unset = ...,
        permissions: int | Unset = ...,
        color: int | Unset = ...,
        hoist: bool | Unset = ...,
        mentionable: bool | Unset = ...,
        position: int | Unset = ...,
    ) -> None: ...

    async def delete_role(self, guild_id: int, role_id: int) -> None: ...
    async def post_message(self, channel_id: int, author_id: int, content: str) -> int: ...

    async def invoke_command(
        self,
        guild_id: int,
        user_id: int,
        path: typing.Sequence[str],
        options: typing.Mapping[str, typing.Any] | None = None,
        *,
        channel_id: int | None = None,
        locale: str = "en-US",
        enforce_permissions: bool = True,
    ) -> int: ...

    async def disconnect(self, resumable: bool = True, *, code: int = ..., shard_id: int | None = None) -> None: ...
    async def pause(self) -> None: ...
    async def flush(self, timeout: float = ...) -> None: ...
    def create_thread(self, parent_id: int, name: str, owner_id: int) -> int: ...
    def set_channel_readable(self, channel_id: int, readable: bool) -> None: ...
    async def resume(self) -> None: ...
    async def reconnect_request(self, *, shard_id: int | None = None) -> None: ...
