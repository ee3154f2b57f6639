"""The relist: ask Discord for a guild's whole member list again, so the cache loses what it missed.

The drift check can only compare the database with hikari's cache; if a gateway event never arrived,
the cache is wrong too and nothing else notices. Kubernetes controllers periodically relist for the
same reason. Member chunks already refresh the cache (hikari sets each member before dispatching the
chunk); what they cannot do is remove a member whose departure was missed, so once the last chunk has
arrived, members the cache holds but Discord did not list are deleted from the cache. The relist uses
a nonce of its own, so the readiness gate (which only counts its own nonce's chunks) never notices it.
"""

from __future__ import annotations

__all__ = ["RelistReport", "Relister"]

import asyncio
import contextlib
import functools
import logging
import time
import typing

import attrs
import hikari

from reconciler.discord.listeners import new_nonce
from reconciler.engine.planning import GuildNotReadyError

if typing.TYPE_CHECKING:
    from reconciler.discord.listeners import GatewayListeners
    from reconciler.discord.readiness import GuildReadiness
    from reconciler.observability.metrics import Metrics

_LOGGER: typing.Final = logging.getLogger(__name__)

# Discord allows 120 gateway sends per minute per shard, heartbeats included; one member request a
# second leaves half of that to everything else.
_REQUEST_SPACING_SECONDS: typing.Final = 1.0
# A request whose chunks stop coming for this long was lost (the shard reconnected): give up this time.
_STALL_SECONDS: typing.Final = 30.0
# RATE_LIMITED answers tolerated per guild and relist (Discord allows one full request per 30 s).
_MAX_ATTEMPTS: typing.Final = 4
# Longest RATE_LIMITED wait honoured; a longer one means something is wrong: try again next time.
_MAX_RETRY_AFTER_SECONDS: typing.Final = 60.0


@attrs.define(frozen=True, kw_only=True, slots=True)
class RelistReport:
    """What one guild's relist did to the cache."""

    guild_id: int
    completed: bool
    """Every chunk arrived and the cache now holds exactly what Discord listed (plus later live changes)."""
    listed: int = 0
    """Members Discord returned."""
    pruned: int = 0
    """Members deleted from the cache: gone on Discord, their departure never received."""
    rate_limited: int = 0
    """RATE_LIMITED answers waited out."""
    roles_repaired: int = 0
    """Roles the cache had wrong (a role event lost on the way): added, updated or deleted."""
    reason: str | None = None
    """Why the relist did not complete."""


@attrs.define(kw_only=True)
class _Request:
    """One member request in flight and the chunks that answered it."""

    guild_id: int
    nonce: str
    received: set[int] = attrs.field(factory=set[int])
    chunk_count: int | None = None
    retry_after: float | None = None
    last_progress: float = attrs.field(factory=time.monotonic)
    done: asyncio.Event = attrs.field(factory=asyncio.Event)


@attrs.define(kw_only=True)
class _Watch:
    """What happened to one guild's members while its relist ran."""

    listed: set[int] = attrs.field(factory=set[int])
    """Users in any member chunk of the guild since the relist started."""
    live: dict[int, bool] = attrs.field(factory=dict[int, bool])
    """Users a live event touched since the relist started: True if the last one said present."""


class Relister:
    """Re-requests member lists, one guild at a time per shard, paced under Discord's gateway limits."""

    def __init__(
        self,
        *,
        bot: hikari.GatewayBot,
        readiness: GuildReadiness,
        metrics: Metrics,
        request_spacing: float = _REQUEST_SPACING_SECONDS,
        stall_seconds: float = _STALL_SECONDS,
    ) -> None:
        self._bot = bot
        self._readiness = readiness
        self._metrics = metrics
        self._spacing = request_spacing
        self._stall = stall_seconds
        self._requests: dict[str, _Request] = {}
        self._watches: dict[int, _Watch] = {}
        self._running: dict[int, asyncio.Task[RelistReport]] = {}
        self._shard_locks: dict[int, asyncio.Lock] = {}
        self._last_send: dict[int, float] = {}
        self._listeners: GatewayListeners | None = None
        self._closed = False
        self._subscriptions: list[
            tuple[type[hikari.Event], typing.Callable[[typing.Any], typing.Coroutine[typing.Any, typing.Any, None]]]
        ] = [
            (hikari.events.RequestGuildMembersRateLimitedEvent, self._on_rate_limited),
            (hikari.MemberCreateEvent, self._on_member_event),
            (hikari.MemberUpdateEvent, self._on_member_event),
            (hikari.MemberDeleteEvent, self._on_member_event),
        ]

    def attach(self, listeners: GatewayListeners) -> None:
        """Start seeing member chunks (through the listeners) and the events that race a relist."""
        listeners.chunk_listeners.append(self._on_chunk)
        self._listeners = listeners
        for event_type, callback in self._subscriptions:
            self._bot.event_manager.subscribe(event_type, callback)

    def close(self) -> None:
        """Abandon relists in flight (shutdown): the cache is left as it is, nothing is pruned."""
        self._closed = True
        for task in self._running.values():
            task.cancel()
        if self._listeners is not None:
            with contextlib.suppress(ValueError):
                self._listeners.chunk_listeners.remove(self._on_chunk)
        for event_type, callback in self._subscriptions:
            with contextlib.suppress(LookupError, ValueError):
                self._bot.event_manager.unsubscribe(event_type, callback)

    async def relist(self, guild_id: int) -> RelistReport:
        """Refresh the guild's members in the cache from Discord's full list.

        Raises `GuildNotReadyError` if the guild is not ready, or was reloaded meanwhile (a reload
        refills the cache from Discord's list anyway). A second call for a guild being relisted
        waits for the first one's report.
        """
        running = self._running.get(guild_id)
        if running is None:
            running = asyncio.create_task(self._relist(guild_id), name=f"relist-{guild_id}")
            self._running[guild_id] = running
            running.add_done_callback(functools.partial(self._forget, guild_id))
        return await asyncio.shield(running)

    def _forget(self, guild_id: int, task: asyncio.Task[RelistReport]) -> None:
        if self._running.get(guild_id) is task:
            del self._running[guild_id]
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every caller was cancelled

    async def _relist(self, guild_id: int) -> RelistReport:
        if self._closed:
            return RelistReport(guild_id=guild_id, completed=False, reason="shutting down")
        if not self._readiness.is_ready(guild_id):
            raise GuildNotReadyError(guild_id)
        generation = self._readiness.generation(guild_id)
        watch = self._watches[guild_id] = _Watch()
        try:
            report = await self._request_until_listed(guild_id)
            if not report.completed:
                return report
            # Member events received with the last chunk run their listeners first: let them.
            for _ in range(3):
                await asyncio.sleep(0)
            if not self._readiness.is_ready(guild_id) or self._readiness.generation(guild_id) != generation:
                raise GuildNotReadyError(guild_id)
            pruned = self._prune(guild_id, watch)
        finally:
            del self._watches[guild_id]
        roles_repaired = await self._refresh_roles(guild_id)
        report = attrs.evolve(report, listed=len(watch.listed), pruned=pruned, roles_repaired=roles_repaired)
        _LOGGER.info(
            "relist finished",
            extra={
                "guild_id": guild_id,
                "listed": report.listed,
                "pruned": report.pruned,
                "roles_repaired": report.roles_repaired,
                "rate_limited": report.rate_limited,
            },
        )
        return report

    async def _request_until_listed(self, guild_id: int) -> RelistReport:
        # One guild's list at a time per shard: the sends stay paced and the chunks do not interleave.
        shard_id = (guild_id >> 22) % max(self._bot.shard_count, 1)
        lock = self._shard_locks.setdefault(shard_id, asyncio.Lock())
        rate_limited = 0
        for _ in range(_MAX_ATTEMPTS):
            request = _Request(guild_id=guild_id, nonce=new_nonce(f"l{guild_id % 1000}"))
            self._requests[request.nonce] = request
            try:
                async with lock:
                    await self._pace(shard_id)
                    request.last_progress = time.monotonic()
                    await self._bot.request_guild_members(guild_id, nonce=request.nonce)
                    finished = await self._wait(request)
            except (hikari.ComponentStateConflictError, RuntimeError) as exc:
                return self._failed(guild_id, f"shard not connected: {exc}", rate_limited)
            finally:
                del self._requests[request.nonce]
            if self._closed:
                return self._failed(guild_id, "shutting down", rate_limited)
            if not finished:
                return self._failed(guild_id, f"no member chunk for {self._stall:.0f} s", rate_limited)
            if request.retry_after is None:
                return RelistReport(guild_id=guild_id, completed=True, rate_limited=rate_limited)
            rate_limited += 1
            if request.retry_after > _MAX_RETRY_AFTER_SECONDS:
                break
            _LOGGER.info(
                "relist rate limited; waiting", extra={"guild_id": guild_id, "retry_after_s": request.retry_after}
            )
            await asyncio.sleep(request.retry_after)  # outside the lock: other guilds of the shard go on
        return self._failed(guild_id, f"rate limited {rate_limited} time(s)", rate_limited)

    def _failed(self, guild_id: int, reason: str, rate_limited: int) -> RelistReport:
        self._metrics.errors.labels(stage="chunking").inc()
        _LOGGER.warning("relist incomplete", extra={"guild_id": guild_id, "reason": reason})
        return RelistReport(guild_id=guild_id, completed=False, rate_limited=rate_limited, reason=reason)

    async def _pace(self, shard_id: int) -> None:
        last = self._last_send.get(shard_id)
        if last is not None:
            wait = last + self._spacing - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        self._last_send[shard_id] = time.monotonic()

    async def _wait(self, request: _Request) -> bool:
        """Wait for the last chunk (or RATE_LIMITED); False if the chunks stalled."""
        while not request.done.is_set():
            remaining = request.last_progress + self._stall - time.monotonic()
            if remaining <= 0 or self._closed:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await request.done.wait()
        return True

    async def _refresh_roles(self, guild_id: int) -> int:
        """Member chunks carry no roles: fetch them over REST and repair the cache's copy.

        Roles deleted by a live event while the request was in flight are not brought back, and roles
        created meanwhile are not removed: only what the cache held before the request is judged.
        """
        cache = self._bot.cache
        if not isinstance(cache, hikari.api.MutableCache):
            return 0
        before = {int(r): role for r, role in cache.get_roles_view_for_guild(guild_id).items()}
        try:
            fetched = await self._bot.rest.fetch_roles(guild_id)
        except hikari.HikariError as exc:
            self._metrics.errors.labels(stage="gateway").inc()
            _LOGGER.warning("relist could not fetch roles", extra={"guild_id": guild_id, "error": str(exc)})
            return 0
        now = {int(r) for r in cache.get_roles_view_for_guild(guild_id)}
        listed = {int(role.id) for role in fetched}
        repaired = 0
        for role in fetched:
            role_id = int(role.id)
            if role_id in before and role_id not in now:
                continue  # deleted by a live event after Discord answered
            known = before.get(role_id)
            if known is None or (known.name, known.color, known.position, known.permissions, known.is_managed) != (
                role.name,
                role.color,
                role.position,
                role.permissions,
                role.is_managed,
            ):
                cache.set_role(role)
                repaired += 1
        for role_id in (before.keys() & now) - listed:
            cache.delete_role(role_id)
            repaired += 1
        return repaired

    def _prune(self, guild_id: int, watch: _Watch) -> int:
        cache = self._bot.cache
        if not isinstance(cache, hikari.api.MutableCache):
            _LOGGER.warning("cache is read-only; relist cannot prune", extra={"guild_id": guild_id})
            return 0
        pruned = 0
        for user_id in list(cache.get_members_view_for_guild(guild_id)):
            present = watch.live.get(int(user_id))
            if present is True:
                continue  # joined or changed after Discord's list was taken
            # Not listed and not seen since, or left since (a chunk may have re-added them afterwards).
            if present is False or int(user_id) not in watch.listed:
                cache.delete_member(guild_id, user_id)
                pruned += 1
        return pruned

    def _on_chunk(self, event: hikari.MemberChunkEvent) -> None:
        watch = self._watches.get(int(event.guild_id))
        if watch is not None:
            # Any chunk counts, whatever its nonce: its members were on Discord after the relist began.
            watch.listed.update(int(user_id) for user_id in event.members)
        if event.nonce is None:
            return
        request = self._requests.get(event.nonce)
        if request is None:
            return
        request.received.add(event.chunk_index)
        request.chunk_count = event.chunk_count
        request.last_progress = time.monotonic()
        if len(request.received) >= event.chunk_count:
            request.done.set()

    async def _on_rate_limited(self, event: hikari.events.RequestGuildMembersRateLimitedEvent) -> None:
        request = self._requests.get(event.nonce) if event.nonce is not None else None
        if request is not None:
            request.retry_after = event.retry_after
            request.done.set()

    async def _on_member_event(
        self, event: hikari.MemberCreateEvent | hikari.MemberUpdateEvent | hikari.MemberDeleteEvent
    ) -> None:
        watch = self._watches.get(int(event.guild_id))
        if watch is not None:
            watch.live[int(event.user_id)] = not isinstance(event, hikari.MemberDeleteEvent)
