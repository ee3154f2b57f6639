"""Life on the demo server: members join, leave, change roles and nicknames, and post messages.

Every change goes through the sandbox's scenario API, so it reaches the bot as the gateway events Discord
would send (or, while the sandbox is paused, is lost on the way). The same seed plays the same server.
"""

from __future__ import annotations

__all__ = ["MEMBER_CHANGES", "Traffic", "TrafficCounts"]

import asyncio
import dataclasses
import logging
import time
import typing

from reconciler.domain.wording import counted
from reconciler.sandbox import permissions

if typing.TYPE_CHECKING:
    import random
    from collections.abc import Awaitable, Callable, Collection

    from reconciler.sandbox import DiscordSandbox

_LOGGER: typing.Final = logging.getLogger(__name__)

_PHRASES: typing.Final = (
    "gm everyone",
    "has anyone tried the new build?",
    "lol",
    "see you at the event tonight",
    "thanks for the help!",
    "screenshot in #showcase",
    "brb",
    "what time is the meeting?",
)
_NICKNAMES: typing.Final = ("Captain", "Pixel", "Nova", "Echo", "Sparrow", "Maple", "Orbit", "Quill")
# One event of each kind per this many: mostly chatter, then role and nickname changes, joins, leaves.
_MIX: typing.Final = (
    ("message", 45),
    ("roles", 18),
    ("nick", 12),
    ("join", 13),
    ("leave", 10),
    ("role", 2),
)
MEMBER_CHANGES: typing.Final = frozenset({"roles", "nick", "join", "leave"})
"""The kinds that change members (what a relist of the member list can recover)."""


@dataclasses.dataclass(slots=True)
class TrafficCounts:
    """Changes made on the server, by kind."""

    joins: int = 0
    leaves: int = 0
    role_changes: int = 0
    renames: int = 0
    messages: int = 0
    role_edits: int = 0

    @property
    def total(self) -> int:
        return self.joins + self.leaves + self.role_changes + self.renames + self.messages + self.role_edits

    def compact(self) -> str:
        """For a status line: joins and leaves, member role changes, nicknames, messages."""
        return (
            f"+{self.joins:,} -{self.leaves:,} members · {counted(self.role_changes, 'role')} · "
            f"{counted(self.renames, 'nick')} · {counted(self.messages, 'msg')}"
        )

    def describe(self) -> str:
        return (
            f"{self.joins:,} joined · {self.leaves:,} left · {counted(self.role_changes, 'role change')} · "
            f"{counted(self.renames, 'nickname')} · {counted(self.messages, 'message')}"
            + (f" · {counted(self.role_edits, 'role edit')}" if self.role_edits else "")
        )


class Traffic:
    """Random but reproducible changes to one guild; never touches its owner, its admin or the bot."""

    def __init__(self, sandbox: DiscordSandbox, guild_id: int, rng: random.Random) -> None:
        self._sandbox = sandbox
        self._guild_id = guild_id
        self._rng = rng
        protected = {sandbox.owner_id(guild_id), sandbox.admin_user_id(guild_id), sandbox.bot_user_id}
        self.protected: frozenset[int] = frozenset(protected)
        self._people = sorted(uid for uid, m in sandbox.members(guild_id).items() if not m.bot and uid not in protected)
        roles = sandbox.roles(guild_id).values()
        # Roles anyone may be given: not @everyone, not a bot's managed role, nothing that grants /sync.
        self._grantable = sorted(
            r.id
            for r in roles
            if r.id != guild_id
            and not r.managed
            and not r.permissions & (permissions.MANAGE_GUILD | permissions.ADMINISTRATOR)
        )
        self._channels = sorted(c.id for c in sandbox.channels(guild_id).values() if c.type == 0)
        self._joined = 0
        self.counts = TrafficCounts()

    def _someone(self) -> int:
        return self._people[self._rng.randrange(len(self._people))]

    def _some_roles(self) -> tuple[int, ...]:
        return tuple(self._rng.sample(self._grantable, self._rng.choice((0, 1, 1, 2, 2, 3))))

    def change(self, kind: str, step: TrafficCounts | None = None) -> None:
        """One change of `kind` ('message', 'roles', 'nick', 'join', 'leave' or 'role'), counted in
        `self.counts` and in `step` if given."""
        counted = self._make(kind)
        if counted:
            for counts in (self.counts, step):
                if counts is not None:
                    setattr(counts, counted, getattr(counts, counted) + 1)

    def _make(self, kind: str) -> str | None:
        sandbox, guild_id, rng = self._sandbox, self._guild_id, self._rng
        if kind == "message" and self._channels:
            sandbox.post_message_nowait(rng.choice(self._channels), self._someone(), rng.choice(_PHRASES))
            return "messages"
        if kind == "roles" and self._grantable:
            sandbox.update_member_nowait(guild_id, self._someone(), roles=self._some_roles())
            return "role_changes"
        if kind == "nick":
            nick = f"{rng.choice(_NICKNAMES)} {rng.randrange(100)}" if rng.random() < 0.8 else None
            sandbox.update_member_nowait(guild_id, self._someone(), nick=nick)
            return "renames"
        if kind == "join":
            self._joined += 1
            user_id = sandbox.add_member_nowait(
                guild_id, username=f"newcomer{self._joined}", global_name=f"Newcomer {self._joined}"
            )
            if self._grantable and rng.random() < 0.5:
                sandbox.update_member_nowait(guild_id, user_id, roles=self._some_roles())
            self._people.append(user_id)
            return "joins"
        if kind == "leave" and len(self._people) > 1:
            user_id = self._people.pop(rng.randrange(len(self._people)))
            sandbox.remove_member_nowait(guild_id, user_id)
            return "leaves"
        if kind == "role" and self._grantable:
            sandbox.update_role_nowait(guild_id, rng.choice(self._grantable), color=rng.randrange(0x1000000))
            return "role_edits"
        return None

    def random_changes(
        self, count: int, step: TrafficCounts | None = None, *, kinds: Collection[str] | None = None
    ) -> None:
        """`count` changes drawn from the usual mix (restricted to `kinds` if given)."""
        mix = [(kind, weight) for kind, weight in _MIX if kinds is None or kind in kinds]
        kinds = [kind for kind, _ in mix]
        weights = [weight for _, weight in mix]
        for kind in self._rng.choices(kinds, weights, k=count):
            self.change(kind, step)

    async def play(
        self,
        seconds: float,
        *,
        rate: float,
        on_tick: Callable[[float], Awaitable[None]] | None = None,
        tick: float = 1.0,
        step: TrafficCounts | None = None,
    ) -> None:
        """About `rate` changes a second for `seconds`, in small bursts; `on_tick(elapsed)` every `tick` s."""
        started = time.monotonic()
        next_tick = started + tick
        burst_every = 0.1
        done = 0
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) - done
            if due > 0:
                self.random_changes(due, step)
                done += due
            if on_tick is not None and time.monotonic() >= next_tick:
                next_tick += tick
                await on_tick(time.monotonic() - started)
            await asyncio.sleep(burst_every)
        await self._sandbox.flush()
