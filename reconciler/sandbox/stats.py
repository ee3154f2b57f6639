"""Counters the sandbox keeps about what it did, for tests and benchmarks to read."""

from __future__ import annotations

__all__ = ["SandboxStats"]

import collections
import dataclasses
import logging
import typing

_LOGGER: typing.Final = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True, kw_only=True)
class SandboxStats:
    """Mutable counters; read them, never write them from outside the sandbox."""

    identifies: int = 0
    resumes: int = 0
    failed_resumes: int = 0
    invalid_sessions: int = 0
    connections: int = 0
    connected_sessions: int = 0
    member_requests: int = 0
    full_member_requests: int = 0
    rate_limited_member_requests: int = 0
    chunks_sent: int = 0
    members_encoded: int = 0
    chunk_encode_seconds: float = 0.0
    """CPU seconds (thread time) spent building GUILD_MEMBERS_CHUNK payloads from cached member JSON."""
    chunk_compress_seconds: float = 0.0
    """CPU seconds spent compressing those payloads for the wire."""
    compress_seconds: float = 0.0
    """CPU seconds spent compressing every payload."""
    bytes_sent: int = 0
    frames_sent: int = 0
    dropped_dispatches: int = 0
    dispatches: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter[str])
    rest_requests: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter[str])
    rest_rate_limited: int = 0
    history_messages_served: int = 0
    """Messages returned by `GET /channels/{id}/messages`."""
    client_close_codes: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter[int])

    def as_json(self) -> dict[str, typing.Any]:
        """Plain JSON-able dict of every counter."""
        payload: dict[str, typing.Any] = {}
        for field in dataclasses.fields(self):
            value: object = getattr(self, field.name)
            if isinstance(value, collections.Counter):
                counter = typing.cast("collections.Counter[object]", value)
                payload[field.name] = {str(k): v for k, v in counter.items()}
            else:
                payload[field.name] = value
        return payload
