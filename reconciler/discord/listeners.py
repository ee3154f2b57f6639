"""Gateway events in, reconcile requests and activity counts out.

Listeners carry keys, not state: a member event becomes "look at this user", and the run reads the
user from hikari's cache (already updated when the event is dispatched). Messages only count.
"""

from __future__ import annotations

__all__ = ["GatewayListeners"]

import asyncio
import base64
import contextlib
import logging
import os
import time
import typing

import hikari

from reconciler.domain import Scope
from reconciler.engine.runs import RunKind, SyncRequest, Trigger

if typing.TYPE_CHECKING:
    import prometheus_client

    from reconciler.activity import ActivityBuffer, Backfill
    from reconciler.discord.readiness import GuildReadiness
    from reconciler.engine.guilds import GuildRecords
    from reconciler.engine.queue import SyncQueue
    from reconciler.observability.metrics import Metrics

_LOGGER: typing.Final = logging.getLogger(__name__)

# A chunk request that makes no progress for this long was lost (shard died mid-request): ask again.
_STALL_SECONDS: typing.Final = 60.0


def new_nonce(prefix: str) -> str:
    """Discord allows 32 bytes; hikari's own nonces look alike (shard id, dot, random)."""
    return f"{prefix}.{base64.urlsafe_b64encode(os.urandom(12)).decode()}"[:32]


class GatewayListeners:
    """Subscribes to the events the replica follows; `close` stops intake before the queue drains."""

    def __init__(
        self,
        *,
        bot: hikari.GatewayBot,
        readiness: GuildReadiness,
        queue: SyncQueue,
        activity: ActivityBuffer,
        guilds: GuildRecords,
        metrics: Metrics,
        backfill: Backfill | None = None,
    ) -> None:
        self._bot = bot
        self._readiness = readiness
        self._queue = queue
        self._activity = activity
        self._backfill = backfill
        self._guilds = guilds
        self._metrics = metrics
        self._open = True
        self._counters: dict[str, prometheus_client.Counter] = {}
        self._ready_once: set[int] = set()
        self._left_while_chunking: dict[int, set[int]] = {}
        """Per guild still chunking: members whose departure arrived; a later chunk may bring them back."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self.chunk_listeners: list[typing.Callable[[hikari.MemberChunkEvent], None]] = []
        """Extra consumers of member chunks (the relist), called before readiness bookkeeping."""
        self._subscriptions: list[
            tuple[type[hikari.Event], typing.Callable[[typing.Any], typing.Coroutine[typing.Any, typing.Any, None]]]
        ] = [
            (hikari.GuildAvailableEvent, self._on_guild_available),
            (hikari.GuildJoinEvent, self._on_guild_available),
            (hikari.GuildLeaveEvent, self._on_guild_leave),
            (hikari.GuildUnavailableEvent, self._on_guild_unavailable),
            (hikari.MemberChunkEvent, self._on_member_chunk),
            (hikari.events.RequestGuildMembersRateLimitedEvent, self._on_chunk_rate_limited),
            (hikari.MemberCreateEvent, self._on_member_change),
            (hikari.MemberUpdateEvent, self._on_member_change),
            (hikari.MemberDeleteEvent, self._on_member_delete),
            (hikari.RoleCreateEvent, self._on_role_change),
            (hikari.RoleUpdateEvent, self._on_role_change),
            (hikari.RoleDeleteEvent, self._on_role_delete),
            (hikari.GuildMessageCreateEvent, self._on_message),
            (hikari.ShardConnectedEvent, self._on_shard_up),
            (hikari.ShardResumedEvent, self._on_shard_up),
            (hikari.ShardDisconnectedEvent, self._on_shard_down),
        ]

    def subscribe(self) -> None:
        for event_type, callback in self._subscriptions:
            self._bot.event_manager.subscribe(event_type, callback)
        self._watchdog = asyncio.create_task(self._watch_chunking(), name="chunk-watchdog")

    def close(self) -> None:
        """Stop turning events into work (shutdown); the cache stays for the runs still queued."""
        self._open = False
        if self._watchdog is not None:
            self._watchdog.cancel()
        for event_type, callback in self._subscriptions:
            with contextlib.suppress(LookupError, ValueError):
                self._bot.event_manager.unsubscribe(event_type, callback)

    def _count(self, kind: str) -> None:
        # Once per event, 10,000 times a second in a burst: the labelled child is looked up once.
        counter = self._counters.get(kind)
        if counter is None:
            counter = self._counters[kind] = self._metrics.gateway_events.labels(type=kind)
        counter.inc()

    def _spawn(self, coro: typing.Coroutine[typing.Any, typing.Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _submit(self, request: SyncRequest) -> None:
        if self._open:
            self._queue.enqueue(request)

    async def _on_guild_available(self, event: hikari.GuildAvailableEvent | hikari.GuildJoinEvent) -> None:
        self._count("guild_available")
        guild_id = int(event.guild_id)
        self._metrics.guild_ready.labels(guild=str(guild_id)).set(0)
        self._metrics.chunking_progress.labels(guild=str(guild_id)).set(0)
        # The cache was just emptied; its new member list is taken after any earlier departure.
        self._left_while_chunking[guild_id] = set()
        # A fresh session: messages sent while there was none are fetched from the history.
        self._activity.session_restarted(guild_id)
        if self._backfill is not None and self._open:
            self._backfill.guild_ready(guild_id)
        if event.chunk_nonce is None:
            # hikari did not chunk (small guild with presences): GUILD_CREATE carried every member.
            self._readiness.guild_available(guild_id, None)
            self._readiness.chunk_received(guild_id, None, 0, 1)
        else:
            self._readiness.guild_available(guild_id, event.chunk_nonce)
        self._spawn(self._record_guild(event.guild), f"upsert-guild-{guild_id}")

    async def _record_guild(self, guild: hikari.GatewayGuild) -> None:
        await self._guilds.arrived(int(guild.id), name=guild.name, member_count=guild.member_count)

    async def _on_guild_leave(self, event: hikari.GuildLeaveEvent) -> None:
        self._count("guild_leave")
        guild_id = int(event.guild_id)
        self._readiness.guild_gone(guild_id)
        self._left_while_chunking.pop(guild_id, None)
        if self._backfill is not None:
            self._backfill.guild_gone(guild_id)
        self._metrics.guild_ready.labels(guild=str(guild_id)).set(0)
        await self._guilds.removed(guild_id)

    async def _on_guild_unavailable(self, event: hikari.GuildUnavailableEvent) -> None:
        self._count("guild_unavailable")
        guild_id = int(event.guild_id)
        # An outage on Discord's side: keep the rows, stop reconciling until GUILD_CREATE returns.
        self._readiness.guild_available(guild_id, None)
        self._metrics.guild_ready.labels(guild=str(guild_id)).set(0)

    async def _on_member_chunk(self, event: hikari.MemberChunkEvent) -> None:
        self._count("member_chunk")
        for listener in self.chunk_listeners:
            listener(event)
        guild_id = int(event.guild_id)
        completed = self._readiness.chunk_received(guild_id, event.nonce, event.chunk_index, event.chunk_count)
        progress = self._readiness.progress(guild_id)
        if progress is not None:
            self._metrics.chunking_progress.labels(guild=str(guild_id)).set(progress.ratio)
        if completed:
            self._forget_departed(guild_id)
            self._metrics.guild_ready.labels(guild=str(guild_id)).set(1)
            first = guild_id not in self._ready_once
            self._ready_once.add(guild_id)
            self._submit(
                SyncRequest(
                    guild_id=guild_id,
                    scope=Scope.everything(),
                    trigger=Trigger.STARTUP if first else Trigger.GATEWAY,
                    kind=RunKind.USERS,
                )
            )
            self._queue.notify_ready(guild_id)

    def _forget_departed(self, guild_id: int) -> None:
        """Delete from the cache the members who left while the guild was chunking.

        Chunks are built when the request is made (Discord's as well as the sandbox's): a member who left
        after that comes back with a later chunk, and the cache, the drift check and every run would then
        hold a ghost until the next relist. The relist prunes such members the same way.
        """
        departed = self._left_while_chunking.pop(guild_id, set())
        cache = self._bot.cache
        if not departed or not isinstance(cache, hikari.api.MutableCache):
            return
        removed = [uid for uid in departed if cache.delete_member(guild_id, uid) is not None]
        if removed:
            _LOGGER.info(
                "members who left during chunking removed from the cache",
                extra={"guild_id": guild_id, "members": len(removed)},
            )

    async def _on_chunk_rate_limited(self, event: hikari.events.RequestGuildMembersRateLimitedEvent) -> None:
        self._count("chunk_rate_limited")
        guild_id = int(event.guild_id)
        if event.nonce is None or event.nonce != self._readiness.pending_nonce(guild_id):
            return  # another request's (the relist handles its own); not the readiness gate's concern
        self._metrics.errors.labels(stage="chunking").inc()
        _LOGGER.warning(
            "member request rate limited; retrying",
            extra={"guild_id": guild_id, "retry_after_s": event.retry_after},
        )
        await asyncio.sleep(event.retry_after)
        await self._rerequest(guild_id)

    async def _rerequest(self, guild_id: int) -> None:
        if not self._open or self._readiness.is_ready(guild_id) or not self._readiness.is_known(guild_id):
            return
        nonce = new_nonce(f"r{guild_id % 1000}")
        self._readiness.chunk_requested(guild_id, nonce)
        self._readiness.touch(guild_id)
        try:
            await self._bot.request_guild_members(guild_id, nonce=nonce)
        except (hikari.ComponentStateConflictError, RuntimeError):
            _LOGGER.warning("member request not sent: shard not connected", extra={"guild_id": guild_id})

    async def _watch_chunking(self) -> None:
        while True:
            await asyncio.sleep(_STALL_SECONDS / 4)
            for guild_id in self._readiness.stalled(older_than=_STALL_SECONDS):
                _LOGGER.warning("member chunking stalled; asking again", extra={"guild_id": guild_id})
                await self._rerequest(guild_id)

    async def _on_member_change(self, event: hikari.MemberCreateEvent | hikari.MemberUpdateEvent) -> None:
        self._count("member_add" if isinstance(event, hikari.MemberCreateEvent) else "member_update")
        if isinstance(event, hikari.MemberCreateEvent):
            self._left_while_chunking.get(int(event.guild_id), set()).discard(int(event.user_id))
        self._submit(
            SyncRequest(
                guild_id=int(event.guild_id),
                scope=Scope.of_users((int(event.user_id),)),
                trigger=Trigger.GATEWAY,
                event_times=(time.monotonic(),),
            )
        )

    async def _on_member_delete(self, event: hikari.MemberDeleteEvent) -> None:
        self._count("member_remove")
        user_id = int(event.user_id)
        guild_id = int(event.guild_id)
        if self._readiness.is_known(guild_id) and not self._readiness.is_ready(guild_id):
            self._left_while_chunking.setdefault(guild_id, set()).add(user_id)
        self._submit(
            SyncRequest(
                guild_id=int(event.guild_id),
                scope=Scope.of_users((user_id,)),
                trigger=Trigger.GATEWAY,
                confirmed_departures=frozenset((user_id,)),
                event_times=(time.monotonic(),),
            )
        )

    async def _on_role_change(self, event: hikari.RoleCreateEvent | hikari.RoleUpdateEvent) -> None:
        self._count("role_create" if isinstance(event, hikari.RoleCreateEvent) else "role_update")
        self._submit(
            SyncRequest(
                guild_id=int(event.guild_id),
                scope=Scope.roles_only(),
                trigger=Trigger.GATEWAY,
                kind=RunKind.ROLES,
                event_times=(time.monotonic(),),
            )
        )

    async def _on_role_delete(self, event: hikari.RoleDeleteEvent) -> None:
        self._count("role_delete")
        # Discord sends no member updates for a deleted role: every holder's links change, so look at all
        # (fingerprints make the untouched members cheap).
        self._submit(
            SyncRequest(
                guild_id=int(event.guild_id),
                scope=Scope.everything(),
                trigger=Trigger.GATEWAY,
                kind=RunKind.ROLES,
                event_times=(time.monotonic(),),
            )
        )

    async def _on_message(self, event: hikari.GuildMessageCreateEvent) -> None:
        self._count("message_create")
        if not self._open:
            return
        # Webhook messages (interaction replies included) are settled but not counted, as in the backfill.
        message = event.message
        self._activity.record(
            int(event.guild_id),
            int(message.channel_id),
            int(message.id),
            int(message.author.id),
            message.timestamp,
            counts=message.webhook_id is None,
        )

    async def _on_shard_up(self, event: hikari.ShardConnectedEvent | hikari.ShardResumedEvent) -> None:
        self._count("shard_connected" if isinstance(event, hikari.ShardConnectedEvent) else "shard_resumed")
        self._metrics.gateway_connected.labels(shard=str(event.shard.id)).set(1)

    async def _on_shard_down(self, event: hikari.ShardDisconnectedEvent) -> None:
        self._count("shard_disconnected")
        self._metrics.gateway_connected.labels(shard=str(event.shard.id)).set(0)
