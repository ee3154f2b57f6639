"""Slash command invocations and everything the bot answers to them: callback, original message, follow-ups."""

from __future__ import annotations

__all__ = ["InteractionRecord", "Interactions", "ResponseKind", "Upload"]

import asyncio
import dataclasses
import logging
import secrets
import time
import typing

from reconciler.sandbox import errors, payloads, permissions, state
from reconciler.sandbox.commands import OptionType

if typing.TYPE_CHECKING:
    from reconciler.sandbox import commands, ids
    from reconciler.sandbox import settings as settings_

_LOGGER: typing.Final = logging.getLogger(__name__)

JSON = dict[str, typing.Any]
ResponseKind = typing.Literal[
    "callback", "edit_original", "delete_original", "followup", "edit_followup", "delete_followup"
]
MessageHook = typing.Callable[[str, int, JSON], None]
"""Called with (event name, guild id, message) for every message the bot's responses create or change."""

_APPLICATION_COMMAND: typing.Final = 2
_CHAT_INPUT_COMMAND_MESSAGE: typing.Final = 20
_EPHEMERAL: typing.Final = 1 << 6
_LOADING: typing.Final = 1 << 7
_SUPPRESS_EMBEDS: typing.Final = 1 << 2
_SETTABLE_FLAGS: typing.Final = _EPHEMERAL | _SUPPRESS_EMBEDS | (1 << 12) | (1 << 15)
_CHANNEL_MESSAGE: typing.Final = 4
_DEFERRED_CHANNEL_MESSAGE: typing.Final = 5
_MODAL: typing.Final = 9
_ATTACHMENT_SIZE_LIMIT: typing.Final = 10 * 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Upload:
    """A file sent with a multipart message body."""

    filename: str
    size: int
    content_type: str | None


@dataclasses.dataclass(slots=True, kw_only=True)
class InteractionRecord:
    """One invocation and every response the bot made to it, in order."""

    id: int
    token: str
    guild_id: int
    channel_id: int
    user_id: int
    command_name: str
    command_path: tuple[str, ...]
    created_at: float
    payload: JSON
    acknowledged: bool = False
    original: JSON | None = None
    original_deleted: bool = False
    followups: dict[int, JSON] = dataclasses.field(default_factory=dict[int, JSON])
    responses: list[JSON] = dataclasses.field(default_factory=list[JSON])
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


def _number_components(components: list[typing.Any]) -> list[typing.Any]:
    """Give every component the numeric `id` Discord assigns (depth first, from 1) when it has none."""
    counter = 0

    def walk(node: typing.Any) -> typing.Any:
        nonlocal counter
        if isinstance(node, dict):
            item = dict(typing.cast("JSON", node))
            if "type" in item:
                counter += 1
                item.setdefault("id", counter)
            for key in ("components", "items"):
                if isinstance(item.get(key), list):
                    item[key] = [walk(child) for child in item[key]]
            if isinstance(item.get("accessory"), dict):
                item["accessory"] = walk(item["accessory"])
            return item
        return node

    return [walk(c) for c in components]


class Interactions:
    """Builds INTERACTION_CREATE from registered commands and serves the interaction and webhook routes."""

    def __init__(
        self,
        *,
        truth: state.GroundTruth,
        identity: settings_.BotIdentity,
        settings: settings_.SandboxSettings,
        registry: commands.CommandRegistry,
        snowflakes: ids.SnowflakeFactory,
        on_message: MessageHook,
    ) -> None:
        self._truth = truth
        self._identity = identity
        self._settings = settings
        self._registry = registry
        self._snowflakes = snowflakes
        self._on_message = on_message
        self._records: dict[int, InteractionRecord] = {}
        self._by_token: dict[str, InteractionRecord] = {}

    # -- invocation ----------------------------------------------------------------------------------

    def invoke(
        self,
        guild_id: int,
        user_id: int,
        path: typing.Sequence[str],
        options: typing.Mapping[str, typing.Any] | None = None,
        *,
        channel_id: int | None = None,
        locale: str = "en-US",
        enforce_permissions: bool = True,
    ) -> InteractionRecord:
        """Build an invocation of a registered chat-input command by a guild member."""
        if not path:
            msg = "the command path needs at least the command name"
            raise ValueError(msg)
        guild = self._truth.guild(guild_id)
        member = self._truth.member(guild_id, user_id)
        command = self._registry.find(guild_id, path[0])
        if channel_id is None:
            channel_id = next((c.id for c in guild.channels.values() if c.type == 0), None)
            if channel_id is None:
                msg = f"guild {guild_id} has no text channel to invoke a command in"
                raise ValueError(msg)
        channel = self._truth.channel(channel_id)
        if channel.guild_id != guild_id:
            msg = f"channel {channel_id} is not in guild {guild_id}"
            raise ValueError(msg)
        member_permissions = permissions.base_permissions(guild, member)
        if enforce_permissions:
            self._check_allowed(command, member_permissions)
        resolved: JSON = {}
        data_options = self._options(command, list(path[1:]), dict(options or {}), guild, resolved)
        interaction_id = self._snowflakes.next()
        token = f"aW50ZXJhY3Rpb246{interaction_id}:{secrets.token_urlsafe(48)}"
        data: JSON = {"id": command["id"], "name": command["name"], "type": command["type"]}
        if data_options:
            data["options"] = data_options
        if resolved:
            data["resolved"] = resolved
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        member_payload = payloads.member_obj(member)
        member_payload["permissions"] = str(member_permissions)
        member_payload["unusual_dm_activity_until"] = None
        bot_member = guild.members.get(self._identity.user.id)
        app_permissions = permissions.base_permissions(guild, bot_member) if bot_member is not None else 0
        channel_payload = payloads.channel_obj(channel)
        channel_payload["permissions"] = str(member_permissions)
        payload: JSON = {
            "app_permissions": str(app_permissions),
            "application_id": str(self._identity.application_id),
            "attachment_size_limit": _ATTACHMENT_SIZE_LIMIT,
            "authorizing_integration_owners": {"0": str(guild_id)},
            "channel": channel_payload,
            "channel_id": str(channel_id),
            "context": 0,
            "data": data,
            "entitlement_sku_ids": [],
            "entitlements": [],
            "guild": {"id": str(guild_id), "locale": guild.preferred_locale, "features": list(guild.features)},
            "guild_id": str(guild_id),
            "guild_locale": guild.preferred_locale,
            "id": str(interaction_id),
            "locale": locale,
            "member": member_payload,
            "token": token,
            "type": _APPLICATION_COMMAND,
            "version": 1,
        }
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            command_name=str(command["name"]),
            command_path=tuple(path),
            created_at=time.monotonic(),
            payload=payload,
        )
        self._records[interaction_id] = record
        self._by_token[token] = record
        return record

    def _check_allowed(self, command: JSON, member_permissions: int) -> None:
        required = command.get("default_member_permissions")
        if required is None:
            return
        needed = int(required) or permissions.ADMINISTRATOR
        if member_permissions & needed != needed:
            msg = (
                f"the Discord client would not offer /{command['name']} to this member "
                f"(default_member_permissions={required}); pass enforce_permissions=False to invoke it anyway"
            )
            raise PermissionError(msg)

    def _options(
        self,
        command: JSON,
        path: list[str],
        given: dict[str, typing.Any],
        guild: state.Guild,
        resolved: JSON,
    ) -> list[JSON]:
        declared = typing.cast("list[JSON]", command.get("options") or [])
        if path:
            name = path[0]
            for option in declared:
                if option["name"] == name and option["type"] in {
                    OptionType.SUB_COMMAND,
                    OptionType.SUB_COMMAND_GROUP,
                }:
                    nested = self._options(option, path[1:], given, guild, resolved)
                    entry: JSON = {"name": name, "type": option["type"]}
                    if nested or option["type"] == OptionType.SUB_COMMAND_GROUP:
                        entry["options"] = nested
                    return [entry]
            names = [o["name"] for o in declared if o["type"] in {OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP}]
            msg = f"{command['name']!r} has no subcommand {name!r} (it has {names})"
            raise ValueError(msg)
        if any(o["type"] in {OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP} for o in declared):
            names = [o["name"] for o in declared]
            msg = f"{command['name']!r} needs a subcommand: one of {names}"
            raise ValueError(msg)
        by_name = {str(o["name"]): o for o in declared}
        unknown = set(given) - set(by_name)
        if unknown:
            msg = f"{command['name']!r} has no option(s) {sorted(unknown)} (it has {sorted(by_name)})"
            raise ValueError(msg)
        result: list[JSON] = []
        for name, option in by_name.items():
            if name not in given:
                if option.get("required"):
                    msg = f"option {name!r} of {command['name']!r} is required"
                    raise ValueError(msg)
                continue
            result.append(
                {"name": name, "type": option["type"], "value": self._value(option, given[name], guild, resolved)}
            )
        return result

    def _value(self, option: JSON, value: typing.Any, guild: state.Guild, resolved: JSON) -> typing.Any:
        option_type = OptionType(option["type"])
        name = option["name"]
        if option_type is OptionType.STRING:
            if not isinstance(value, str):
                msg = f"option {name!r} takes a string"
                raise TypeError(msg)
        elif option_type is OptionType.INTEGER:
            if isinstance(value, bool) or not isinstance(value, int):
                msg = f"option {name!r} takes an integer"
                raise TypeError(msg)
        elif option_type is OptionType.NUMBER:
            if isinstance(value, bool) or not isinstance(value, int | float):
                msg = f"option {name!r} takes a number"
                raise TypeError(msg)
        elif option_type is OptionType.BOOLEAN:
            if not isinstance(value, bool):
                msg = f"option {name!r} takes a boolean"
                raise TypeError(msg)
        elif option_type in {OptionType.USER, OptionType.MENTIONABLE, OptionType.ROLE, OptionType.CHANNEL}:
            return self._resolve(option_type, name, int(value), guild, resolved)
        else:
            msg = f"option type {option_type.name} is not supported by the sandbox"
            raise ValueError(msg)
        choices = typing.cast("list[JSON] | None", option.get("choices"))
        if choices and value not in [c["value"] for c in choices]:
            msg = f"option {name!r} must be one of {[c['value'] for c in choices]}"
            raise ValueError(msg)
        return value

    def _resolve(self, option_type: OptionType, name: str, target: int, guild: state.Guild, resolved: JSON) -> str:
        if option_type in {OptionType.USER, OptionType.MENTIONABLE} and target in self._truth.users:
            user = self._truth.users[target]
            resolved.setdefault("users", {})[str(target)] = payloads.user_obj(user)
            member = guild.members.get(target)
            if member is not None:
                member_payload = payloads.member_obj(member, with_user=False)
                member_payload["permissions"] = str(permissions.base_permissions(guild, member))
                resolved.setdefault("members", {})[str(target)] = member_payload
            return str(target)
        if option_type in {OptionType.ROLE, OptionType.MENTIONABLE} and target in guild.roles:
            resolved.setdefault("roles", {})[str(target)] = payloads.role_obj(guild.roles[target])
            return str(target)
        if option_type is OptionType.CHANNEL and target in guild.channels:
            channel = guild.channels[target]
            resolved.setdefault("channels", {})[str(target)] = {
                "id": str(channel.id),
                "name": channel.name,
                "type": channel.type,
                "parent_id": str(channel.parent_id) if channel.parent_id is not None else None,
                "permissions": str(permissions.ALL_PERMISSIONS),
                "guild_id": str(guild.id),
            }
            return str(target)
        msg = f"option {name!r}: {target} is not a {option_type.name.lower()} of guild {guild.id}"
        raise ValueError(msg)

    # -- records -------------------------------------------------------------------------------------

    def record(self, interaction_id: int) -> InteractionRecord:
        """The record of an invocation, or UnknownEntityError."""
        try:
            return self._records[interaction_id]
        except KeyError:
            raise state.UnknownEntityError("interaction", interaction_id) from None

    def responses(self, interaction_id: int) -> list[JSON]:
        """Every response so far, in order: `{"kind", "at", "elapsed", "body", "message"}`."""
        return list(self.record(interaction_id).responses)

    async def wait_for_responses(self, interaction_id: int, count: int, timeout: float) -> list[JSON]:
        """Wait until at least `count` responses were made; TimeoutError otherwise."""
        record = self.record(interaction_id)
        deadline = time.monotonic() + timeout
        while len(record.responses) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                msg = f"interaction {interaction_id}: {len(record.responses)} of {count} responses after {timeout}s"
                raise TimeoutError(msg)
            record.changed.clear()
            try:
                await asyncio.wait_for(record.changed.wait(), remaining)
            except TimeoutError:
                continue
        return list(record.responses)

    def _log(
        self, record: InteractionRecord, kind: ResponseKind, body: JSON, message: JSON | None, **extra: object
    ) -> None:
        now = time.monotonic()
        entry: JSON = {"kind": kind, "at": now, "elapsed": now - record.created_at, "body": body, "message": message}
        entry.update(extra)
        record.responses.append(entry)
        record.changed.set()

    # -- REST: callback ------------------------------------------------------------------------------

    def callback(self, interaction_id: int, token: str, body: typing.Any, uploads: list[Upload]) -> JSON:
        """`POST /interactions/{id}/{token}/callback`: returns the `with_response` body."""
        record = self._records.get(interaction_id)
        if record is None or record.token != token:
            raise errors.unknown_interaction()
        if record.acknowledged:
            raise errors.already_acknowledged()
        if time.monotonic() - record.created_at > self._settings.interaction_ack_s:
            raise errors.unknown_interaction()
        if not isinstance(body, dict):
            raise errors.invalid_form_body(errors.field_error("BASE_TYPE_DICT", "Must be an object."))
        callback = typing.cast("JSON", body)
        callback_type = callback.get("type")
        data = typing.cast("JSON", callback.get("data") or {})
        message: JSON | None = None
        if callback_type == _CHANNEL_MESSAGE:
            message = self._new_message(record, data, uploads, loading=False)
            record.original = message
        elif callback_type == _DEFERRED_CHANNEL_MESSAGE:
            message = self._new_message(record, {"flags": data.get("flags", 0)}, [], loading=True)
            record.original = message
        elif callback_type != _MODAL:
            raise errors.invalid_form_body(
                {"type": errors.field_error("INTERACTION_RESPONSE_TYPE_INVALID", "Invalid response type")}
            )
        record.acknowledged = True
        self._log(record, "callback", callback, message)
        if message is not None and not int(message["flags"]) & _EPHEMERAL:
            self._on_message("MESSAGE_CREATE", record.guild_id, message)
        interaction: JSON = {"id": str(record.id), "type": _APPLICATION_COMMAND}
        resource: JSON = {"type": callback_type}
        if message is not None:
            interaction["response_message_id"] = message["id"]
            interaction["response_message_loading"] = callback_type == _DEFERRED_CHANNEL_MESSAGE
            interaction["response_message_ephemeral"] = bool(int(message["flags"]) & _EPHEMERAL)
            resource["message"] = message
        return {"interaction": interaction, "resource": resource}

    # -- REST: webhook messages ----------------------------------------------------------------------

    def _webhook_record(self, application_id: int, token: str) -> InteractionRecord:
        record = self._by_token.get(token)
        if record is None or application_id != self._identity.application_id:
            raise errors.unknown_webhook()
        if time.monotonic() - record.created_at > self._settings.interaction_token_s:
            raise errors.invalid_webhook_token()
        return record

    def _message(self, record: InteractionRecord, message_id: str) -> JSON:
        if message_id == "@original":
            if record.original is None or record.original_deleted:
                raise errors.unknown_message()
            return record.original
        try:
            return record.followups[int(message_id)]
        except (KeyError, ValueError):
            raise errors.unknown_message() from None

    def get_message(self, application_id: int, token: str, message_id: str) -> JSON:
        """`GET /webhooks/{app}/{token}/messages/{id|@original}`."""
        return self._message(self._webhook_record(application_id, token), message_id)

    def edit_message(
        self, application_id: int, token: str, message_id: str, body: typing.Any, uploads: list[Upload]
    ) -> JSON:
        """`PATCH /webhooks/{app}/{token}/messages/{id|@original}`."""
        record = self._webhook_record(application_id, token)
        message = self._message(record, message_id)
        if not isinstance(body, dict):
            raise errors.invalid_form_body(errors.field_error("BASE_TYPE_DICT", "Must be an object."))
        edit = typing.cast("JSON", body)
        self._apply_edit(record, message, edit, uploads)
        kind: ResponseKind = "edit_original" if message_id == "@original" else "edit_followup"
        self._log(record, kind, edit, message)
        if not int(message["flags"]) & _EPHEMERAL:
            self._on_message("MESSAGE_UPDATE", record.guild_id, message)
        return message

    def delete_message(self, application_id: int, token: str, message_id: str) -> None:
        """`DELETE /webhooks/{app}/{token}/messages/{id|@original}`."""
        record = self._webhook_record(application_id, token)
        message = self._message(record, message_id)
        if message_id == "@original":
            record.original_deleted = True
            self._log(record, "delete_original", {}, message)
        else:
            del record.followups[int(message_id)]
            self._log(record, "delete_followup", {}, message)
        if not int(message["flags"]) & _EPHEMERAL:
            self._on_message("MESSAGE_DELETE", record.guild_id, message)

    def followup(self, application_id: int, token: str, body: typing.Any, uploads: list[Upload]) -> JSON:
        """`POST /webhooks/{app}/{token}`: a follow-up, or (right after a deferral) the deferred message."""
        record = self._webhook_record(application_id, token)
        if not record.acknowledged:
            raise errors.unknown_webhook()
        if not isinstance(body, dict):
            raise errors.invalid_form_body(errors.field_error("BASE_TYPE_DICT", "Must be an object."))
        data = typing.cast("JSON", body)
        original = record.original
        if original is not None and not record.original_deleted and int(original["flags"]) & _LOADING:
            # Discord: a follow-up right after a deferral edits the loading message instead.
            self._apply_edit(record, original, {k: v for k, v in data.items() if k != "flags"}, uploads)
            self._log(record, "followup", data, original, edits_original=True)
            if not int(original["flags"]) & _EPHEMERAL:
                self._on_message("MESSAGE_UPDATE", record.guild_id, original)
            return original
        message = self._new_message(record, data, uploads, loading=False)
        record.followups[int(message["id"])] = message
        self._log(record, "followup", data, message, edits_original=False)
        if not int(message["flags"]) & _EPHEMERAL:
            self._on_message("MESSAGE_CREATE", record.guild_id, message)
        return message

    # -- message building ----------------------------------------------------------------------------

    def _new_message(self, record: InteractionRecord, data: JSON, uploads: list[Upload], *, loading: bool) -> JSON:
        content = str(data.get("content") or "")
        embeds = [dict(e, type=e.get("type", "rich")) for e in typing.cast("list[JSON]", data.get("embeds") or [])]
        components = _number_components(typing.cast("list[typing.Any]", data.get("components") or []))
        message_id = self._snowflakes.next()
        attachments = self._attachments(record.channel_id, uploads)
        if not loading and not (content or embeds or components or attachments or data.get("poll")):
            raise errors.cannot_send_empty()
        flags = int(data.get("flags") or 0) & _SETTABLE_FLAGS
        if loading:
            flags |= _LOADING
        user = self._truth.users.get(record.user_id)
        metadata: JSON = {
            "id": str(record.id),
            "type": _APPLICATION_COMMAND,
            "user": payloads.user_obj(user) if user is not None else None,
            "authorizing_integration_owners": {"0": str(record.guild_id)},
            "name": record.command_name,
            "command_type": 1,
        }
        message = payloads.message_obj(
            message_id=message_id,
            channel_id=record.channel_id,
            author=self._identity.user,
            content=content,
            timestamp=payloads.iso_timestamp(int(time.time() * 1000)),
            message_type=_CHAT_INPUT_COMMAND_MESSAGE,
            flags=flags,
            embeds=embeds,
            components=components,
            attachments=attachments,
            webhook_id=self._identity.application_id,
            application_id=self._identity.application_id,
            interaction_metadata=metadata,
            tts=bool(data.get("tts", False)),
        )
        if user is not None:
            message["interaction"] = {
                "id": str(record.id),
                "type": _APPLICATION_COMMAND,
                "name": record.command_name,
                "user": payloads.user_obj(user),
            }
        return message

    def _apply_edit(self, record: InteractionRecord, message: JSON, edit: JSON, uploads: list[Upload]) -> None:
        updated = dict(message)
        if "content" in edit:
            updated["content"] = str(edit["content"] or "")
        if "embeds" in edit:
            updated["embeds"] = [
                dict(e, type=e.get("type", "rich")) for e in typing.cast("list[JSON]", edit["embeds"] or [])
            ]
        if "components" in edit:
            updated["components"] = _number_components(typing.cast("list[typing.Any]", edit["components"] or []))
        if uploads:
            updated["attachments"] = [*updated["attachments"], *self._attachments(record.channel_id, uploads)]
        elif "attachments" in edit and not edit["attachments"]:
            updated["attachments"] = []
        flags = int(updated["flags"])
        if "flags" in edit and edit["flags"] is not None:
            flags = (flags & _EPHEMERAL) | (int(edit["flags"]) & _SUPPRESS_EMBEDS)
        updated["flags"] = flags & ~_LOADING
        updated["edited_timestamp"] = payloads.iso_timestamp(int(time.time() * 1000))
        if not (updated["content"] or updated["embeds"] or updated["components"] or updated["attachments"]):
            raise errors.cannot_send_empty()
        message.update(updated)

    def _attachments(self, channel_id: int, uploads: list[Upload]) -> list[JSON]:
        result: list[JSON] = []
        for upload in uploads:
            attachment_id = self._snowflakes.next()
            url = f"https://cdn.discordapp.com/attachments/{channel_id}/{attachment_id}/{upload.filename}"
            item: JSON = {
                "id": str(attachment_id),
                "filename": upload.filename,
                "size": upload.size,
                "url": url,
                "proxy_url": url.replace("cdn.discordapp.com", "media.discordapp.net"),
            }
            if upload.content_type:
                item["content_type"] = upload.content_type
            result.append(item)
        return result
