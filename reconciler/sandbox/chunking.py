"""REQUEST_GUILD_MEMBERS (op 8): which members match, and GUILD_MEMBERS_CHUNK payloads spliced from cached JSON."""

from __future__ import annotations

__all__ = ["CHUNK_SIZE", "MemberRequest", "chunk_payloads", "parse_member_request", "select_members"]

import dataclasses
import logging
import time
import typing

import orjson

from reconciler.sandbox import payloads

if typing.TYPE_CHECKING:
    from reconciler.sandbox import state
    from reconciler.sandbox import stats as stats_

_LOGGER: typing.Final = logging.getLogger(__name__)

CHUNK_SIZE: typing.Final = 1000
"""Discord sends at most 1000 members per chunk."""
_MAX_QUERY_RESULTS: typing.Final = 100
_MAX_USER_IDS: typing.Final = 100
_MAX_NONCE_BYTES: typing.Final = 32


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MemberRequest:
    """One op 8 request, validated."""

    guild_id: int
    query: str | None
    limit: int
    user_ids: tuple[int, ...] | None
    presences: bool
    nonce: str | None

    @property
    def is_full(self) -> bool:
        """A request for every member (`query: ""`, `limit: 0`): the rate-limited kind."""
        return self.user_ids is None and self.query == "" and self.limit == 0


def parse_member_request(data: typing.Mapping[str, typing.Any]) -> MemberRequest:
    """Validate op 8's `d`; raises ValueError for a payload Discord would reject."""
    raw_guild = data.get("guild_id")
    if isinstance(raw_guild, list):
        guild_list = typing.cast("list[typing.Any]", raw_guild)
        if len(guild_list) != 1:
            msg = "one guild_id per request"
            raise ValueError(msg)
        raw_guild = guild_list[0]
    guild_id = int(raw_guild)  # pyright: ignore[reportArgumentType]
    raw_ids = data.get("user_ids")
    user_ids: tuple[int, ...] | None = None
    if raw_ids is not None:
        id_list = typing.cast("list[typing.Any]", raw_ids if isinstance(raw_ids, list) else [raw_ids])
        if len(id_list) > _MAX_USER_IDS:
            msg = "user_ids is limited to 100"
            raise ValueError(msg)
        user_ids = tuple(int(u) for u in id_list)
    query = data.get("query")
    if user_ids is None and query is None:
        msg = "one of query or user_ids is required"
        raise ValueError(msg)
    limit = int(data.get("limit") or 0)
    if limit < 0:
        msg = "limit must be >= 0"
        raise ValueError(msg)
    nonce = data.get("nonce")
    if not isinstance(nonce, str) or len(nonce.encode()) > _MAX_NONCE_BYTES:
        nonce = None  # Discord ignores an invalid nonce and answers without one
    return MemberRequest(
        guild_id=guild_id,
        query=str(query) if query is not None else None,
        limit=limit,
        user_ids=user_ids,
        presences=bool(data.get("presences", False)),
        nonce=nonce,
    )


def select_members(guild: state.Guild, request: MemberRequest) -> tuple[list[state.Member], list[int]]:
    """Members answering the request, and the requested user ids that are not members."""
    if request.user_ids is not None:
        found: list[state.Member] = []
        not_found: list[int] = []
        for user_id in request.user_ids:
            member = guild.members.get(user_id)
            if member is None:
                not_found.append(user_id)
            else:
                found.append(member)
        return found, not_found
    if request.is_full:
        return list(guild.members.values()), []
    cap = min(request.limit or _MAX_QUERY_RESULTS, _MAX_QUERY_RESULTS)
    prefix = (request.query or "").casefold()
    matches: list[state.Member] = []
    for member in guild.members.values():
        if member.user.username.casefold().startswith(prefix) or (
            member.nick is not None and member.nick.casefold().startswith(prefix)
        ):
            matches.append(member)
            if len(matches) >= cap:
                break
    return matches, []


def chunk_payloads(
    guild_id: int,
    members: typing.Sequence[state.Member],
    *,
    nonce: str | None,
    not_found: typing.Sequence[int] | None,
    presences: bool,
    stats: stats_.SandboxStats,
) -> typing.Iterator[tuple[bytes, int]]:
    """Encode GUILD_MEMBERS_CHUNK `d` payloads lazily: (bytes, member count) per chunk, at least one."""
    total = len(members)
    chunk_count = max(1, -(-total // CHUNK_SIZE))
    head = b'{"guild_id":"%d","members":[' % guild_id
    tail_parts: list[bytes] = []
    if not_found is not None:
        tail_parts.append(b',"not_found":' + orjson.dumps([str(u) for u in not_found]))
    if presences:
        tail_parts.append(b',"presences":[]')
    if nonce is not None:
        tail_parts.append(b',"nonce":' + orjson.dumps(nonce))
    tail = b"".join(tail_parts) + b"}"
    wire = payloads.member_wire
    for index in range(chunk_count):
        started = time.thread_time()
        batch = members[index * CHUNK_SIZE : (index + 1) * CHUNK_SIZE]
        body = b",".join([member.wire or wire(member) for member in batch])
        data = b"".join((head, body, b'],"chunk_index":%d,"chunk_count":%d' % (index, chunk_count), tail))
        stats.chunk_encode_seconds += time.thread_time() - started
        stats.members_encoded += len(batch)
        stats.chunks_sent += 1
        yield data, len(batch)
