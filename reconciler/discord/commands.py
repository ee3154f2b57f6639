"""The `/sync` slash commands: admin-only, acknowledged at once, progress while they run, a report at the end.

Every subcommand becomes a request on the same queue the gateway and the scheduler use; the command
only decides what to ask for, checks who asks, and talks to the admin. Replies are ephemeral unless
configured otherwise.
"""

from __future__ import annotations

__all__ = ["SyncCommands", "register_sync_commands"]

import asyncio
import contextlib
import datetime
import logging
import time
import typing

import arc
import hikari

from reconciler.discord.replies import GuildStats, member_embed, progress_text, report_embed, stats_embed
from reconciler.domain import Scope
from reconciler.domain.health import judge
from reconciler.engine.runs import RunKind, SyncRequest, Trigger

if typing.TYPE_CHECKING:
    from reconciler.config import Settings
    from reconciler.discord.cache_reader import CacheReader
    from reconciler.discord.readiness import GuildReadiness
    from reconciler.engine.queries import GuildQueries
    from reconciler.engine.queue import SyncQueue
    from reconciler.engine.runs import RunProgress, RunReport
    from reconciler.observability.metrics import Metrics

_LOGGER: typing.Final = logging.getLogger(__name__)

MIN_DAYS: typing.Final = 1
MAX_DAYS: typing.Final = 3650


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class _ProgressEditor:
    """Edits the deferred reply as a run progresses: every `every` members at most, never faster than
    `min_interval`. Edits go out in the background so a slow edit never slows the run."""

    def __init__(self, ctx: arc.GatewayContext, *, every: int, min_interval: float) -> None:
        self._ctx = ctx
        self._every = every
        self._min_interval = min_interval
        self._last_edit = time.monotonic()
        self._last_done = 0
        self._last_phase = ""
        self._edited = False
        self._in_flight: asyncio.Task[None] | None = None

    async def update(self, progress: RunProgress) -> None:
        now = time.monotonic()
        moved = progress.done - self._last_done >= self._every or progress.phase != self._last_phase
        if not moved or now - self._last_edit < self._min_interval:
            return
        if self._in_flight is not None and not self._in_flight.done():
            return
        self._last_edit, self._last_done, self._last_phase = now, progress.done, progress.phase
        self._edited = True
        self._in_flight = asyncio.create_task(self._edit(progress_text(progress)))

    async def _edit(self, text: str) -> None:
        try:
            await self._ctx.edit_initial_response(text)
        except hikari.HikariError:
            _LOGGER.warning("progress edit failed", exc_info=True)

    async def finish(self, embed: hikari.Embed) -> None:
        """The last edit: the report, after any progress edit in flight and the minimum interval."""
        if self._in_flight is not None:
            with contextlib.suppress(Exception):
                await self._in_flight
        wait = self._min_interval - (time.monotonic() - self._last_edit)
        if wait > 0 and self._edited:
            await asyncio.sleep(wait)
        await self._ctx.edit_initial_response(content=None, embed=embed)


class SyncCommands:
    """The handlers behind `/sync`; each part it needs comes in typed, wired once in app.py."""

    def __init__(
        self,
        *,
        queue: SyncQueue,
        reader: CacheReader,
        readiness: GuildReadiness,
        queries: GuildQueries,
        metrics: Metrics,
        settings: Settings,
        clock: typing.Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        self._queue = queue
        self._reader = reader
        self._readiness = readiness
        self._queries = queries
        self._metrics = metrics
        self._settings = settings
        self._clock = clock
        self._required = hikari.Permissions[settings.discord.admin_permission]
        self._flags = hikari.MessageFlag.EPHEMERAL if settings.discord.ephemeral_reports else hikari.MessageFlag.NONE
        self._commands_running: set[int] = set()

    # -- the subcommands ---------------------------------------------------------------------------

    async def users(self, ctx: arc.GatewayContext, *, force: bool) -> None:
        request = self._request(ctx, RunKind.USERS, Scope.everything(), force=force)
        await self._run(ctx, request, "Sync users" + (" (forced)" if force else ""))

    async def roles(self, ctx: arc.GatewayContext, *, user: hikari.User | None) -> None:
        scope = Scope.everything() if user is None else Scope.of_users((int(user.id),), roles=True)
        title = "Sync roles" if user is None else f"Sync roles of {user.username}"
        await self._run(ctx, self._request(ctx, RunKind.ROLES, scope), title)

    async def cleanup(self, ctx: arc.GatewayContext, *, days: int | None) -> None:
        if days is not None and not MIN_DAYS <= days <= MAX_DAYS:
            await self._refuse(ctx, f"`days` must be between {MIN_DAYS} and {MAX_DAYS}; got {days}.")
            return
        days = days or self._settings.sync.inactive_days
        request = self._request(ctx, RunKind.CLEANUP, Scope.everything(), cleanup_days=days)
        await self._run(ctx, request, f"Cleanup ({days} days)")

    async def full(self, ctx: arc.GatewayContext, *, confirm: bool) -> None:
        if not confirm:
            await self._refuse(
                ctx,
                "`/sync full` rewrites the whole replica and may mark many members as left at once. "
                "Run it with `confirm:true` if that is what you want.",
            )
            return
        request = self._request(
            ctx,
            RunKind.FULL,
            Scope.everything(),
            cleanup_days=self._settings.sync.inactive_days,
            allow_departures=True,
        )
        await self._run(ctx, request, "Full sync")

    async def stats(self, ctx: arc.GatewayContext, *, user: hikari.User | None = None) -> None:
        guild_id = await self._admitted_guild(ctx)
        if guild_id is None:
            return
        await ctx.defer(flags=self._flags)
        now = self._clock()
        if user is not None:
            record = await self._queries.member_record(guild_id, int(user.id), now=now)
            if record is None:
                await ctx.edit_initial_response(f"No record of <@{int(user.id)}> in this server's database yet.")
                return
            await ctx.edit_initial_response(content=None, embed=member_embed(record, now=now))
            return
        stats = await self._gather_stats(guild_id, now)
        await ctx.edit_initial_response(content=None, embed=stats_embed(stats, now=now))

    # -- shared steps ------------------------------------------------------------------------------

    def _request(
        self,
        ctx: arc.GatewayContext,
        kind: RunKind,
        scope: Scope,
        *,
        force: bool = False,
        cleanup_days: int | None = None,
        allow_departures: bool = False,
    ) -> SyncRequest:
        return SyncRequest(
            guild_id=int(ctx.guild_id or 0),
            scope=scope,
            trigger=Trigger.COMMAND,
            kind=kind,
            requested_by=int(ctx.author.id),
            force=force,
            verify=True,
            cleanup_days=cleanup_days,
            allow_departures=allow_departures,
        )

    async def _refuse(self, ctx: arc.GatewayContext, text: str) -> None:
        self._metrics.errors.labels(stage="command").inc()
        await ctx.respond(f"⛔ {text}", flags=hikari.MessageFlag.EPHEMERAL)

    async def _admitted_guild(self, ctx: arc.GatewayContext) -> int | None:
        """The guild, if the invoker may run `/sync` there; otherwise refuse and return None.

        Discord hides the command from non-admins by `default_member_permissions`, but a server can
        override that per role or channel: the permissions in the interaction are checked again here.
        """
        if ctx.guild_id is None or ctx.member is None:
            await self._refuse(ctx, "`/sync` works in a server, not in direct messages.")
            return None
        permissions = ctx.member.permissions
        if not (permissions & hikari.Permissions.ADMINISTRATOR or permissions & self._required == self._required):
            _LOGGER.warning(
                "sync refused: missing permission",
                extra={"guild_id": int(ctx.guild_id), "user_id": int(ctx.author.id)},
            )
            await self._refuse(ctx, f"You need the {self._required.name} permission to use `/sync`.")
            return None
        return int(ctx.guild_id)

    async def _run(self, ctx: arc.GatewayContext, request: SyncRequest, title: str) -> None:
        guild_id = await self._admitted_guild(ctx)
        if guild_id is None:
            return
        busy = self._busy_text(guild_id)
        if busy is not None:
            await ctx.respond(busy, flags=hikari.MessageFlag.EPHEMERAL)
            return
        if not self._reader.is_ready(guild_id):
            progress = self._readiness.progress(guild_id)
            detail = progress.describe() if progress else "waiting for Discord to send the server"
            await ctx.respond(
                f"⏳ This server's member list is still loading ({detail}); nothing was started. Try again shortly.",
                flags=hikari.MessageFlag.EPHEMERAL,
            )
            return
        # Claimed before the first await: a second /sync arriving now sees it.
        self._commands_running.add(guild_id)
        try:
            await ctx.defer(flags=self._flags)
            editor = _ProgressEditor(
                ctx,
                every=self._settings.sync.progress_every,
                min_interval=self._settings.sync.progress_min_interval_seconds,
            )
            report = await self._queue.submit(request, progress=editor.update)
            await editor.finish(report_embed(report, title=title))
            self._log_report(report, request)
        finally:
            self._commands_running.discard(guild_id)

    def _busy_text(self, guild_id: int) -> str | None:
        """Busy means a deliberate run (a command, start-up, the scheduler); a gateway run takes
        milliseconds and a busy server always has one, so the command simply queues behind it."""
        running = self._queue.running(guild_id)
        if running is not None and running.trigger is not Trigger.GATEWAY:
            who = f" (asked by <@{running.requested_by}>)" if running.requested_by else f" ({running.trigger.value})"
            return f"🔁 A sync is already running{who}: {running.describe()}. Nothing new was started."
        if guild_id in self._commands_running:
            return "🔁 A sync is already queued for this server. Nothing new was started."
        return None

    def _log_report(self, report: RunReport, request: SyncRequest) -> None:
        _LOGGER.info(
            "sync command finished",
            extra={
                "guild_id": request.guild_id,
                "user_id": request.requested_by,
                "kind": request.kind.value,
                "outcome": report.outcome.value,
            },
        )

    async def _gather_stats(self, guild_id: int, now: datetime.datetime) -> GuildStats:
        """Drift as the drift check measures it (every row compared), so the command and the gauges agree."""
        report = await self._queries.drift(guild_id, now=now)
        stored = report.stored if report is not None else await self._queries.stats(guild_id, now=now)
        last_runs = await self._queries.last_runs(guild_id)
        progress = self._readiness.progress(guild_id)
        verdict, reason = judge(
            ready=report is not None,
            readiness_detail=progress.describe() if progress else "guild not received from Discord yet",
            drift=None if report is None else report.drift,
            last_reconciled_at=stored.last_reconciled_at,
            now=now,
        )
        return GuildStats(
            discord_members=self._reader.member_count(guild_id),
            stored=stored,
            drift=None if report is None else report.drift,
            coverage=None if report is None else report.coverage,
            last_runs=last_runs,
            verdict=verdict,
            reason=reason,
            top_channels=await self._queries.top_channels(guild_id, now=now),
            activity_status=self._queries.activity_status(guild_id),
        )


def register_sync_commands(client: arc.GatewayClient, handlers: SyncCommands, settings: Settings) -> None:
    """Declare the `/sync` group on the arc client (per guild when configured, else global)."""
    guilds = settings.discord.command_guild_ids or hikari.UNDEFINED
    group = client.include_slash_group(
        "sync",
        "Reconcile this server's member database",
        guilds=guilds,
        default_permissions=hikari.Permissions[settings.discord.admin_permission],
        invocation_contexts=[hikari.ApplicationContextType.GUILD],
        autodefer=False,
    )

    @group.include
    @arc.slash_subcommand("users", "Reconcile every member now")
    async def sync_users(  # pyright: ignore[reportUnusedFunction]
        ctx: arc.GatewayContext,
        force: arc.Option[bool, arc.BoolParams("Rewrite members that look unchanged too")] = False,
    ) -> None:
        await handlers.users(ctx, force=force)

    @group.include
    @arc.slash_subcommand("roles", "Reconcile roles and role memberships")
    async def sync_roles(  # pyright: ignore[reportUnusedFunction]
        ctx: arc.GatewayContext,
        user: arc.Option[hikari.User | None, arc.UserParams("Only this member")] = None,
    ) -> None:
        await handlers.roles(ctx, user=user)

    @group.include
    @arc.slash_subcommand("cleanup", "Mark inactive members and members who left")
    async def sync_cleanup(  # pyright: ignore[reportUnusedFunction]
        ctx: arc.GatewayContext,
        days: arc.Option[
            int | None,
            arc.IntParams(
                f"Days without a message before a member is inactive ({MIN_DAYS}-{MAX_DAYS})",
                min=MIN_DAYS,
                max=MAX_DAYS,
            ),
        ] = None,
    ) -> None:
        await handlers.cleanup(ctx, days=days)

    @group.include
    @arc.slash_subcommand("stats", "Discord vs database, drift, activity and health")
    async def sync_stats(  # pyright: ignore[reportUnusedFunction]
        ctx: arc.GatewayContext,
        user: arc.Option[hikari.User | None, arc.UserParams("Show this member's record and history")] = None,
    ) -> None:
        await handlers.stats(ctx, user=user)

    @group.include
    @arc.slash_subcommand("full", "Users, roles and cleanup in one run")
    async def sync_full(  # pyright: ignore[reportUnusedFunction]
        ctx: arc.GatewayContext,
        confirm: arc.Option[bool, arc.BoolParams("Yes, rewrite everything (may mark many members as left)")],
    ) -> None:
        await handlers.full(ctx, confirm=confirm)
