"""The scenario API over HTTP (`/_sandbox/...`): what the Python API does, for a standalone sandbox process."""

from __future__ import annotations

__all__ = ["routes"]

import datetime
import logging
import time
import typing

import orjson
from aiohttp import web

from reconciler.sandbox import state
from reconciler.sandbox.state import UNSET, Unset

if typing.TYPE_CHECKING:
    from reconciler.sandbox import views
    from reconciler.sandbox.host import ScenarioHost

_LOGGER: typing.Final = logging.getLogger(__name__)

JSON = dict[str, typing.Any]
Handler = typing.Callable[[web.Request], typing.Awaitable[web.StreamResponse]]


class _BadRequestError(Exception):
    pass


def _reply(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _reply({"error": message}, status)


def _id(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _BadRequestError(f"{what} must be a snowflake (string or integer)")
    try:
        return int(value)
    except ValueError:
        raise _BadRequestError(f"{what} must be a snowflake (string or integer)") from None


def _ids(value: object, what: str) -> list[int]:
    if not isinstance(value, list):
        raise _BadRequestError(f"{what} must be a list of snowflakes")
    return [_id(v, what) for v in typing.cast("list[object]", value)]


async def _json(request: web.Request) -> JSON:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _BadRequestError("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _BadRequestError("body must be a JSON object")
    return typing.cast("JSON", body)


def _member(info: views.MemberInfo) -> JSON:
    return {
        "user_id": str(info.user_id),
        "username": info.username,
        "global_name": info.global_name,
        "avatar": info.avatar,
        "bot": info.bot,
        "nick": info.nick,
        "joined_at": info.joined_at.isoformat(),
        "roles": [str(r) for r in info.role_ids],
        "premium_since": None if info.premium_since is None else info.premium_since.isoformat(),
        "communication_disabled_until": (
            None if info.communication_disabled_until is None else info.communication_disabled_until.isoformat()
        ),
        "pending": info.pending,
        "flags": info.flags,
        "guild_avatar": info.guild_avatar,
    }


def _time_or_unset(body: JSON, key: str) -> datetime.datetime | Unset | None:
    if key not in body:
        return UNSET
    value = body[key]
    if value is None:
        return None
    if not isinstance(value, str):
        raise _BadRequestError(f"{key} must be an ISO 8601 time with a zone, or null")
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise _BadRequestError(f"{key} must be an ISO 8601 time with a zone, or null") from None
    if parsed.tzinfo is None:
        raise _BadRequestError(f"{key} must be an ISO 8601 time with a zone, or null")
    return parsed


def _member_fields(body: JSON) -> state.MemberFields | None:
    keys = ("premium_since", "communication_disabled_until", "pending", "flags", "guild_avatar")
    if not any(key in body for key in keys):
        return None
    pending = body.get("pending", UNSET)
    if not isinstance(pending, bool | Unset):
        raise _BadRequestError("pending must be true or false")
    flags = body.get("flags", UNSET)
    if not isinstance(flags, Unset) and (
        isinstance(flags, bool) or not isinstance(flags, int) or not 0 <= flags < 2**31
    ):
        raise _BadRequestError("flags must be a non-negative 31-bit integer")
    guild_avatar = body.get("guild_avatar", UNSET)
    if not isinstance(guild_avatar, str | Unset) and guild_avatar is not None:
        raise _BadRequestError("guild_avatar must be a string or null")
    return state.MemberFields(
        premium_since=_time_or_unset(body, "premium_since"),
        communication_disabled_until=_time_or_unset(body, "communication_disabled_until"),
        pending=pending,
        flags=flags,
        guild_avatar=guild_avatar,
    )


def _role(info: views.RoleInfo) -> JSON:
    return {
        "id": str(info.id),
        "name": info.name,
        "color": info.color,
        "hoist": info.hoist,
        "position": info.position,
        "permissions": str(info.permissions),
        "managed": info.managed,
        "mentionable": info.mentionable,
    }


def routes(sb: ScenarioHost) -> list[web.RouteDef]:
    """Every `/_sandbox/` route bound to one sandbox. Ids are strings in replies; strings or ints in bodies."""

    def guild_summary(guild_id: int) -> JSON:
        info = sb.guild(guild_id)
        return {
            "id": str(info.id),
            "name": info.name,
            "owner_id": str(info.owner_id),
            "admin_user_id": str(info.admin_user_id) if info.admin_user_id is not None else None,
            "member_count": info.member_count,
            "role_ids": [str(r) for r in info.role_ids],
            "channel_ids": [str(c) for c in info.channel_ids],
            "unavailable": info.unavailable,
        }

    async def get_state(request: web.Request) -> web.StreamResponse:
        return _reply(
            {
                "rest_url": sb.rest_url,
                "gateway_url": sb.gateway_url,
                "token": sb.token,
                "application_id": str(sb.application_id),
                "bot_user_id": str(sb.bot_user_id),
                "guild_ids": [str(g) for g in sb.guild_ids],
                "paused": sb.paused,
                "connected_sessions": sb.session_count(),
            }
        )

    async def get_stats(request: web.Request) -> web.StreamResponse:
        return _reply({**sb.stats.as_json(), "process_cpu_seconds": time.process_time()})

    async def list_guilds(request: web.Request) -> web.StreamResponse:
        return _reply([guild_summary(g) for g in sb.guild_ids])

    async def create_guild(request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        shard = body.get("shard")
        guild_id = sb.create_guild(
            name=body.get("name"),
            members=int(body.get("members", body.get("member_count", 100))),
            roles=int(body.get("roles", body.get("role_count", 12))),
            channels=int(body.get("channels", 3)),
            seed=int(body.get("seed", 0)),
            guild_id=_id(body["guild_id"], "guild_id") if body.get("guild_id") is not None else None,
            shard=(int(shard[0]), int(shard[1])) if shard is not None else None,
        )
        return _reply(guild_summary(guild_id), 201)

    async def get_guild(request: web.Request) -> web.StreamResponse:
        guild_id = _id(request.match_info["guild_id"], "guild id")
        summary = guild_summary(guild_id)
        summary["roles"] = [_role(r) for r in sb.roles(guild_id).values()]
        summary["channels"] = [
            {"id": str(c.id), "name": c.name, "type": c.type, "position": c.position}
            for c in sb.channels(guild_id).values()
        ]
        return _reply(summary)

    async def delete_guild(request: web.Request) -> web.StreamResponse:
        await sb.remove_guild(_id(request.match_info["guild_id"], "guild id"))
        return web.Response(status=204)

    async def list_members(request: web.Request) -> web.StreamResponse:
        guild_id = _id(request.match_info["guild_id"], "guild id")
        guild = sb.truth.guild(guild_id)
        after = int(request.query.get("after", "0"))
        limit = int(request.query.get("limit", "0"))
        ids = guild.member_ids_after(after, limit) if limit > 0 else guild.sorted_member_ids()
        return _reply([_member(sb.member(guild_id, u)) for u in ids])

    async def add_member(request: web.Request) -> web.StreamResponse:
        guild_id = _id(request.match_info["guild_id"], "guild id")
        body = await _json(request)
        user_id = await sb.add_member(
            guild_id,
            user_id=_id(body["user_id"], "user_id") if body.get("user_id") is not None else None,
            username=body.get("username"),
            global_name=body.get("global_name"),
            avatar=body.get("avatar"),
            bot=bool(body.get("bot", False)),
            nick=body.get("nick"),
            roles=_ids(body.get("roles", []), "roles"),
        )
        return _reply(_member(sb.member(guild_id, user_id)), 201)

    async def get_member(request: web.Request) -> web.StreamResponse:
        guild_id = _id(request.match_info["guild_id"], "guild id")
        return _reply(_member(sb.member(guild_id, _id(request.match_info["user_id"], "user id"))))

    async def edit_member(request: web.Request) -> web.StreamResponse:
        guild_id = _id(request.match_info["guild_id"], "guild id")
        user_id = _id(request.match_info["user_id"], "user id")
        body = await _json(request)
        await sb.update_member(
            guild_id,
            user_id,
            nick=body.get("nick", UNSET),
            roles=_ids(body["roles"], "roles") if "roles" in body else UNSET,
            username=body.get("username", UNSET),
            global_name=body.get("global_name", UNSET),
            avatar=body.get("avatar", UNSET),
            fields=_member_fields(body),
        )
        return _reply(_member(sb.member(guild_id, user_id)))

    async def remove_member(request: web.Request) -> web.StreamResponse:
        guild_id = _id(request.match_info["guild_id"], "guild id")
        await sb.remove_member(guild_id, _id(request.match_info["user_id"], "user id"))
        return web.Response(status=204)

    async def list_roles(request: web.Request) -> web.StreamResponse:
        guild_id = _id(request.match_info["guild_id"], "guild id")
        return _reply([_role(r) for r in sb.roles(guild_id).values()])

    async def create_role(request: web.Request) -> web.StreamResponse:
        guild_id = _id(request.match_info["guild_id"], "guild id")
        body = await _json(request)
        role_id = await sb.create_role(
            guild_id,
            name=str(body.get("name", "new role")),
            permissions=int(body.get("permissions", 0)),
            color=int(body.get("color", 0)),
            hoist=bool(body.get("hoist", False)),
            mentionable=bool(body.get("mentionable", False)),
        )
        return _reply(_role(sb.roles(guild_id)[role_id]), 201)

    async def edit_role(request: web.Request) -> web.StreamResponse:
        guild_id = _id(request.match_info["guild_id"], "guild id")
        role_id = _id(request.match_info["role_id"], "role id")
        body = await _json(request)
        await sb.update_role(
            guild_id,
            role_id,
            name=str(body["name"]) if "name" in body else UNSET,
            permissions=int(body["permissions"]) if "permissions" in body else UNSET,
            color=int(body["color"]) if "color" in body else UNSET,
            hoist=bool(body["hoist"]) if "hoist" in body else UNSET,
            mentionable=bool(body["mentionable"]) if "mentionable" in body else UNSET,
            position=int(body["position"]) if "position" in body else UNSET,
        )
        return _reply(_role(sb.roles(guild_id)[role_id]))

    async def delete_role(request: web.Request) -> web.StreamResponse:
        guild_id = _id(request.match_info["guild_id"], "guild id")
        await sb.delete_role(guild_id, _id(request.match_info["role_id"], "role id"))
        return web.Response(status=204)

    async def post_message(request: web.Request) -> web.StreamResponse:
        channel_id = _id(request.match_info["channel_id"], "channel id")
        body = await _json(request)
        message_id = await sb.post_message(
            channel_id, _id(body.get("author_id"), "author_id"), str(body.get("content", ""))
        )
        return _reply({"id": str(message_id)}, 201)

    async def create_thread(request: web.Request) -> web.StreamResponse:
        channel_id = _id(request.match_info["channel_id"], "channel id")
        body = await _json(request)
        thread_id = sb.create_thread(channel_id, str(body.get("name", "thread")), _id(body.get("owner_id"), "owner_id"))
        await sb.flush()
        return _reply({"id": str(thread_id)}, 201)

    async def set_readable(request: web.Request) -> web.StreamResponse:
        channel_id = _id(request.match_info["channel_id"], "channel id")
        body = await _json(request)
        sb.set_channel_readable(channel_id, bool(body.get("readable", True)))
        return web.Response(status=204)

    async def invoke(request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        command = body.get("command")
        if isinstance(command, str):
            command = command.split()
        if not isinstance(command, list) or not command:
            raise _BadRequestError('command must be a list such as ["sync", "users"]')
        options: object = body.get("options") or {}
        if not isinstance(options, dict):
            raise _BadRequestError("options must be an object")
        interaction_id = await sb.invoke_command(
            _id(body.get("guild_id"), "guild_id"),
            _id(body.get("user_id"), "user_id"),
            [str(c) for c in typing.cast("list[object]", command)],
            typing.cast("JSON", options),
            channel_id=_id(body["channel_id"], "channel_id") if body.get("channel_id") is not None else None,
            locale=str(body.get("locale", "en-US")),
            enforce_permissions=bool(body.get("enforce_permissions", True)),
        )
        return _reply({"id": str(interaction_id)}, 201)

    async def get_interaction(request: web.Request) -> web.StreamResponse:
        interaction_id = _id(request.match_info["interaction_id"], "interaction id")
        record = sb.interaction(interaction_id)
        return _reply(
            {
                "id": str(record.id),
                "guild_id": str(record.guild_id),
                "user_id": str(record.user_id),
                "command": list(record.command_path),
                "created_at": record.created_at,
                "responses": record.responses,
            }
        )

    async def list_commands(request: web.Request) -> web.StreamResponse:
        guild = request.query.get("guild_id")
        return _reply(sb.commands(_id(guild, "guild_id") if guild else None))

    async def disconnect(request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        shard_id = body.get("shard_id")
        await sb.disconnect(
            resumable=bool(body.get("resumable", True)), shard_id=int(shard_id) if shard_id is not None else None
        )
        return _reply({"ok": True})

    async def pause(request: web.Request) -> web.StreamResponse:
        await sb.pause()
        return _reply({"paused": True})

    async def resume(request: web.Request) -> web.StreamResponse:
        await sb.resume()
        return _reply({"paused": False})

    async def reconnect(request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        shard_id = body.get("shard_id")
        await sb.reconnect_request(shard_id=int(shard_id) if shard_id is not None else None)
        return _reply({"ok": True})

    table: list[tuple[str, str, Handler]] = [
        ("GET", "", get_state),
        ("GET", "/stats", get_stats),
        ("GET", "/guilds", list_guilds),
        ("POST", "/guilds", create_guild),
        ("GET", "/guilds/{guild_id}", get_guild),
        ("DELETE", "/guilds/{guild_id}", delete_guild),
        ("GET", "/guilds/{guild_id}/members", list_members),
        ("POST", "/guilds/{guild_id}/members", add_member),
        ("GET", "/guilds/{guild_id}/members/{user_id}", get_member),
        ("PATCH", "/guilds/{guild_id}/members/{user_id}", edit_member),
        ("DELETE", "/guilds/{guild_id}/members/{user_id}", remove_member),
        ("GET", "/guilds/{guild_id}/roles", list_roles),
        ("POST", "/guilds/{guild_id}/roles", create_role),
        ("PATCH", "/guilds/{guild_id}/roles/{role_id}", edit_role),
        ("DELETE", "/guilds/{guild_id}/roles/{role_id}", delete_role),
        ("POST", "/channels/{channel_id}/messages", post_message),
        ("POST", "/channels/{channel_id}/threads", create_thread),
        ("PUT", "/channels/{channel_id}/readable", set_readable),
        ("POST", "/interactions", invoke),
        ("GET", "/interactions/{interaction_id}", get_interaction),
        ("GET", "/commands", list_commands),
        ("POST", "/gateway/disconnect", disconnect),
        ("POST", "/gateway/pause", pause),
        ("POST", "/gateway/resume", resume),
        ("POST", "/gateway/reconnect", reconnect),
    ]

    def guarded(handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except _BadRequestError as exc:
                return _error(400, str(exc))
            except state.UnknownEntityError as exc:
                return _error(404, str(exc))
            except PermissionError as exc:
                return _error(403, str(exc))
            except (LookupError, ValueError, TypeError) as exc:
                return _error(400, str(exc))

        return run

    return [web.route(method, "/_sandbox" + path, guarded(handler)) for method, path, handler in table]
