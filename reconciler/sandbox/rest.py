"""Discord's REST API (v10), the routes hikari calls for this bot, with auth, errors and rate-limit headers."""

from __future__ import annotations

__all__ = ["RestApi"]

import asyncio
import logging
import re
import typing

import aiohttp
import orjson
from aiohttp import web

from reconciler.sandbox import errors, payloads, ratelimits, state
from reconciler.sandbox.interactions import Upload

if typing.TYPE_CHECKING:
    from reconciler.sandbox.host import RestHost

_LOGGER: typing.Final = logging.getLogger(__name__)

JSON = dict[str, typing.Any]
Handler = typing.Callable[[web.Request], typing.Awaitable[web.StreamResponse]]

API_PREFIXES: typing.Final = ("", "/api/v10", "/api/v9")
_VERSION_PREFIX: typing.Final = re.compile(r"^/api/v\d+")
_NO_AUTH_PREFIXES: typing.Final = ("/interactions/", "/webhooks/", "/gateway")
_MAX_MEMBERS_PAGE: typing.Final = 1000
_MAX_MESSAGES_PAGE: typing.Final = 100


def json_response(body: object, *, status: int = 200) -> web.Response:
    """A JSON reply encoded with orjson."""
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _snowflake(request: web.Request, name: str, kind: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise state.UnknownEntityError(kind, request.match_info[name]) from None


class RestApi:
    """Route handlers; every one of them reads or changes the sandbox's ground truth."""

    def __init__(self, sandbox: RestHost) -> None:
        self._sb = sandbox
        limit, period = sandbox.settings.rest_rate_limit
        self._limiter = ratelimits.RestRateLimiter(limit=limit, period=period)

    # -- wiring --------------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        """Every route under each API prefix (hikari's `rest_url` may carry `/api/v10` or not)."""
        table: list[tuple[str, str, Handler]] = [
            ("GET", "/gateway", self.get_gateway),
            ("GET", "/gateway/bot", self.get_gateway_bot),
            ("GET", "/users/@me", self.get_my_user),
            ("GET", "/users/{user_id}", self.get_user),
            ("GET", "/oauth2/applications/@me", self.get_my_application),
            ("GET", "/applications/@me", self.get_my_application),
            ("GET", "/applications/{application_id}/commands", self.list_commands),
            ("PUT", "/applications/{application_id}/commands", self.overwrite_commands),
            ("POST", "/applications/{application_id}/commands", self.create_command),
            ("GET", "/applications/{application_id}/commands/{command_id}", self.get_command),
            ("PATCH", "/applications/{application_id}/commands/{command_id}", self.edit_command),
            ("DELETE", "/applications/{application_id}/commands/{command_id}", self.delete_command),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self.list_commands),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self.overwrite_commands),
            ("POST", "/applications/{application_id}/guilds/{guild_id}/commands", self.create_command),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}", self.get_command),
            ("PATCH", "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}", self.edit_command),
            ("DELETE", "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}", self.delete_command),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self.interaction_callback),
            ("POST", "/webhooks/{application_id}/{token}", self.execute_webhook),
            ("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", self.get_webhook_message),
            ("PATCH", "/webhooks/{application_id}/{token}/messages/{message_id}", self.edit_webhook_message),
            ("DELETE", "/webhooks/{application_id}/{token}/messages/{message_id}", self.delete_webhook_message),
            ("GET", "/guilds/{guild_id}", self.get_guild),
            ("GET", "/guilds/{guild_id}/roles", self.get_roles),
            ("GET", "/guilds/{guild_id}/roles/member-counts", self.get_role_member_counts),
            ("GET", "/guilds/{guild_id}/channels", self.get_channels),
            ("GET", "/guilds/{guild_id}/threads/active", self.get_active_threads),
            ("GET", "/guilds/{guild_id}/members", self.list_members),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member),
            ("PATCH", "/guilds/{guild_id}/members/{user_id}", self.edit_member),
            ("PUT", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", self.add_member_role),
            ("DELETE", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", self.remove_member_role),
            ("GET", "/channels/{channel_id}", self.get_channel),
            ("POST", "/channels/{channel_id}/messages", self.create_message),
            ("GET", "/channels/{channel_id}/messages", self.get_messages),
        ]
        return [web.route(method, prefix + path, handler) for prefix in API_PREFIXES for method, path, handler in table]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Auth, rate-limit headers and Discord-shaped errors for the REST routes."""
        path = request.path
        if path.startswith("/_sandbox") or path in {"/", "/resume"}:
            return await handler(request)
        route_path = _VERSION_PREFIX.sub("", getattr(request.match_info.route.resource, "canonical", path)) or path
        self._sb.stats.rest_requests[f"{request.method} {route_path}"] += 1
        verdict: ratelimits.RateLimitVerdict | None = None
        try:
            if self._sb.faults.rest_latency_s:
                await asyncio.sleep(self._sb.faults.rest_latency_s)
            needs_auth = not route_path.startswith(_NO_AUTH_PREFIXES) or route_path == "/gateway/bot"
            if needs_auth and request.headers.get("Authorization") != f"Bot {self._sb.token}":
                raise errors.unauthorized()
            if not route_path.endswith("/callback") and route_path != "/gateway":
                major = self._major_parameter(request)
                verdict = self._limiter.hit(
                    f"{request.method} {route_path}", major, override=self._sb.faults.rest_rate_limit
                )
                if verdict.retry_after is not None:
                    self._sb.stats.rest_rate_limited += 1
                    response: web.StreamResponse = json_response(
                        {"message": "You are being rate limited.", "retry_after": verdict.retry_after, "global": False},
                        status=429,
                    )
                    response.headers.update(verdict.headers)
                    return response
            response = await handler(request)
        except errors.DiscordHTTPError as exc:
            response = json_response(exc.body(), status=exc.status)
        except state.UnknownEntityError as exc:
            response = json_response({"message": exc.discord_message, "code": exc.code}, status=404)
        except web.HTTPNotFound:
            response = json_response({"message": "404: Not Found", "code": 0}, status=404)
        except web.HTTPMethodNotAllowed:
            response = json_response({"message": "405: Method Not Allowed", "code": 0}, status=405)
        if verdict is not None:
            response.headers.update(verdict.headers)
        return response

    @staticmethod
    def _major_parameter(request: web.Request) -> str:
        info = request.match_info
        for key in ("guild_id", "channel_id"):
            if key in info:
                return info[key]
        if "token" in info:
            return f"{info.get('application_id')}:{info['token']}"
        return ""

    # -- bodies --------------------------------------------------------------------------------------

    @staticmethod
    async def _body(request: web.Request) -> tuple[typing.Any, list[Upload]]:
        """JSON body, or `payload_json` plus files of a multipart body."""
        if request.content_type.startswith("multipart/"):
            body: typing.Any = {}
            uploads: list[Upload] = []
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, aiohttp.BodyPartReader):
                    continue
                if part.name == "payload_json":
                    raw = await part.read()
                    try:
                        body = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        raise errors.invalid_json() from None
                elif part.filename is not None:
                    data = await part.read()
                    uploads.append(
                        Upload(filename=part.filename, size=len(data), content_type=part.headers.get("Content-Type"))
                    )
            return body, uploads
        raw = await request.read()
        if not raw:
            return {}, []
        try:
            return orjson.loads(raw), []
        except orjson.JSONDecodeError:
            raise errors.invalid_json() from None

    def _check_application(self, request: web.Request) -> None:
        if _snowflake(request, "application_id", "application") != self._sb.application_id:
            raise errors.DiscordHTTPError(403, 50001, "Missing Access")

    def _command_scope(self, request: web.Request) -> int | None:
        self._check_application(request)
        if "guild_id" not in request.match_info:
            return None
        return self._sb.truth.guild(_snowflake(request, "guild_id", "guild")).id

    # -- gateway, users, application ------------------------------------------------------------------

    async def get_gateway(self, request: web.Request) -> web.StreamResponse:
        return json_response({"url": self._sb.gateway_url})

    async def get_gateway_bot(self, request: web.Request) -> web.StreamResponse:
        settings = self._sb.settings
        return json_response(
            {
                "url": self._sb.gateway_url,
                "shards": settings.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": max(0, 1000 - self._sb.stats.identifies),
                    "reset_after": 86_400_000,
                    "max_concurrency": settings.max_concurrency,
                },
            }
        )

    async def get_my_user(self, request: web.Request) -> web.StreamResponse:
        return json_response(payloads.own_user_obj(self._sb.identity.user))

    async def get_user(self, request: web.Request) -> web.StreamResponse:
        return json_response(payloads.user_obj(self._sb.truth.user(_snowflake(request, "user_id", "user"))))

    async def get_my_application(self, request: web.Request) -> web.StreamResponse:
        identity = self._sb.identity
        return json_response(
            payloads.application_obj(
                application_id=identity.application_id,
                name=identity.application_name,
                bot=identity.user,
                owner=identity.owner,
                flags=self._sb.settings.application_flags(),
                verify_key=identity.verify_key,
                guild_count=len(self._sb.truth.guilds),
            )
        )

    # -- application commands ------------------------------------------------------------------------

    async def list_commands(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._sb.command_registry.list(self._command_scope(request)))

    async def overwrite_commands(self, request: web.Request) -> web.StreamResponse:
        scope = self._command_scope(request)
        body, _ = await self._body(request)
        return json_response(self._sb.command_registry.overwrite(scope, body))

    async def create_command(self, request: web.Request) -> web.StreamResponse:
        scope = self._command_scope(request)
        body, _ = await self._body(request)
        command, created = self._sb.command_registry.create(scope, body)
        return json_response(command, status=201 if created else 200)

    async def get_command(self, request: web.Request) -> web.StreamResponse:
        scope = self._command_scope(request)
        return json_response(self._sb.command_registry.get(scope, _snowflake(request, "command_id", "command")))

    async def edit_command(self, request: web.Request) -> web.StreamResponse:
        scope = self._command_scope(request)
        body, _ = await self._body(request)
        command_id = _snowflake(request, "command_id", "command")
        return json_response(self._sb.command_registry.edit(scope, command_id, body))

    async def delete_command(self, request: web.Request) -> web.StreamResponse:
        scope = self._command_scope(request)
        self._sb.command_registry.delete(scope, _snowflake(request, "command_id", "command"))
        return web.Response(status=204)

    # -- interactions and their webhook --------------------------------------------------------------

    async def interaction_callback(self, request: web.Request) -> web.StreamResponse:
        try:
            interaction_id = int(request.match_info["interaction_id"])
        except ValueError:
            raise errors.unknown_interaction() from None
        body, uploads = await self._body(request)
        response = self._sb.interactions.callback(interaction_id, request.match_info["token"], body, uploads)
        if request.query.get("with_response", "false").lower() == "true":
            return json_response(response)
        return web.Response(status=204)

    def _webhook_application(self, request: web.Request) -> int:
        try:
            return int(request.match_info["application_id"])
        except ValueError:
            raise errors.unknown_webhook() from None

    async def execute_webhook(self, request: web.Request) -> web.StreamResponse:
        body, uploads = await self._body(request)
        message = self._sb.interactions.followup(
            self._webhook_application(request), request.match_info["token"], body, uploads
        )
        if request.query.get("wait", "false").lower() == "true":
            return json_response(message)
        return web.Response(status=204)

    async def get_webhook_message(self, request: web.Request) -> web.StreamResponse:
        return json_response(
            self._sb.interactions.get_message(
                self._webhook_application(request), request.match_info["token"], request.match_info["message_id"]
            )
        )

    async def edit_webhook_message(self, request: web.Request) -> web.StreamResponse:
        body, uploads = await self._body(request)
        return json_response(
            self._sb.interactions.edit_message(
                self._webhook_application(request),
                request.match_info["token"],
                request.match_info["message_id"],
                body,
                uploads,
            )
        )

    async def delete_webhook_message(self, request: web.Request) -> web.StreamResponse:
        self._sb.interactions.delete_message(
            self._webhook_application(request), request.match_info["token"], request.match_info["message_id"]
        )
        return web.Response(status=204)

    # -- guilds --------------------------------------------------------------------------------------

    def _guild(self, request: web.Request) -> state.Guild:
        guild_id = _snowflake(request, "guild_id", "guild")
        if guild_id in self._sb.truth.departed_guild_ids:
            raise errors.missing_access()  # the guild exists, the bot is no longer in it
        return self._sb.truth.guild(guild_id)

    async def get_guild(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(request)
        with_counts = request.query.get("with_counts", "false").lower() == "true"
        # Only the bot's presence is modelled: online while it holds a gateway session.
        online = int(self._sb.bot_user_id in guild.members and self._sb.session_count() > 0)
        return json_response(payloads.guild_obj(guild, approximate_counts=with_counts, online=online))

    async def get_role_member_counts(self, request: web.Request) -> web.StreamResponse:
        return json_response(
            {str(role_id): count for role_id, count in self._guild(request).role_member_counts().items()}
        )

    async def get_roles(self, request: web.Request) -> web.StreamResponse:
        return json_response([payloads.role_obj(r) for r in self._guild(request).roles.values()])

    async def get_channels(self, request: web.Request) -> web.StreamResponse:
        return json_response([payloads.channel_obj(c) for c in self._guild(request).channels.values()])

    async def get_active_threads(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(request)
        return json_response({"threads": [payloads.thread_obj(t) for t in guild.threads.values()], "members": []})

    async def list_members(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(request)
        if not self._sb.settings.members_intent_enabled:
            raise errors.missing_access()
        try:
            limit = int(request.query.get("limit", "1"))
            after = int(request.query.get("after", "0"))
        except ValueError:
            raise errors.invalid_form_body(
                {"limit": errors.field_error("NUMBER_TYPE_COERCE", "Value is not int.")}
            ) from None
        if not 1 <= limit <= _MAX_MEMBERS_PAGE:
            raise errors.invalid_form_body(
                {"limit": errors.field_error("NUMBER_TYPE_MAX", "int value should be between 1 and 1000.")}
            )
        members = guild.members
        page = guild.member_ids_after(after, limit)
        body = b"[" + b",".join(payloads.member_wire(members[u]) for u in page) + b"]"
        return web.Response(body=body, content_type="application/json")

    async def get_member(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(request)
        member = self._sb.truth.member(guild.id, _snowflake(request, "user_id", "member"))
        return web.Response(body=payloads.member_wire(member), content_type="application/json")

    async def edit_member(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(request)
        user_id = _snowflake(request, "user_id", "member")
        body, _ = await self._body(request)
        if not isinstance(body, dict):
            raise errors.invalid_form_body(errors.field_error("BASE_TYPE_DICT", "Must be an object."))
        edit = typing.cast("JSON", body)
        changes: dict[str, typing.Any] = {}
        if "nick" in edit:
            changes["nick"] = edit["nick"] or None
        if "roles" in edit:
            changes["roles"] = [int(r) for r in typing.cast("list[str | int]", edit["roles"] or [])]
        self._sb.update_member_nowait(guild.id, user_id, **changes)
        return web.Response(
            body=payloads.member_wire(self._sb.truth.member(guild.id, user_id)), content_type="application/json"
        )

    async def add_member_role(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(request)
        user_id = _snowflake(request, "user_id", "member")
        role_id = self._sb.truth.role(guild.id, _snowflake(request, "role_id", "role")).id
        member = self._sb.truth.member(guild.id, user_id)
        if role_id not in member.roles:
            self._sb.update_member_nowait(guild.id, user_id, roles=[*member.roles, role_id])
        return web.Response(status=204)

    async def remove_member_role(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(request)
        user_id = _snowflake(request, "user_id", "member")
        role_id = self._sb.truth.role(guild.id, _snowflake(request, "role_id", "role")).id
        member = self._sb.truth.member(guild.id, user_id)
        if role_id in member.roles:
            self._sb.update_member_nowait(guild.id, user_id, roles=[r for r in member.roles if r != role_id])
        return web.Response(status=204)

    # -- channels ------------------------------------------------------------------------------------

    async def get_channel(self, request: web.Request) -> web.StreamResponse:
        return json_response(payloads.channel_obj(self._sb.truth.channel(_snowflake(request, "channel_id", "channel"))))

    async def create_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._sb.truth.channel(_snowflake(request, "channel_id", "channel"))
        body, uploads = await self._body(request)
        content = str(typing.cast("JSON", body).get("content") or "") if isinstance(body, dict) else ""
        if not content and not uploads and not (isinstance(body, dict) and body.get("embeds")):  # pyright: ignore[reportUnknownMemberType]
            raise errors.cannot_send_empty()
        message = self._sb.bot_message_nowait(channel.id, typing.cast("JSON", body) if isinstance(body, dict) else {})
        return json_response(message)

    async def get_messages(self, request: web.Request) -> web.StreamResponse:
        channel = self._sb.truth.channel(_snowflake(request, "channel_id", "channel"))
        if not channel.bot_can_read:
            raise errors.missing_access()
        query = request.query
        anchors = [name for name in ("before", "after", "around") if name in query]
        if len(anchors) > 1:
            raise errors.invalid_form_body(
                {anchors[1]: errors.field_error("BASE_TYPE_BAD_COMBINATION", "Use only one of before, after, around.")}
            )
        try:
            limit = int(query.get("limit", "50"))
            anchor = int(query[anchors[0]]) if anchors else None
        except ValueError:
            raise errors.invalid_form_body(
                {"limit": errors.field_error("NUMBER_TYPE_COERCE", "Value is not int.")}
            ) from None
        if not 1 <= limit <= _MAX_MESSAGES_PAGE:
            raise errors.invalid_form_body(
                {"limit": errors.field_error("NUMBER_TYPE_MAX", "int value should be between 1 and 100.")}
            )
        kind = anchors[0] if anchors else "before"
        page = channel.history.page(limit=limit, **{kind: anchor})
        self._sb.stats.history_messages_served += len(page)
        return json_response([self._sb.message_history_obj(channel.id, m) for m in page])
