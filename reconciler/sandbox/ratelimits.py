"""REST rate-limit buckets with Discord's `X-RateLimit-*` headers and 429 replies."""

from __future__ import annotations

__all__ = ["RateLimitVerdict", "RestRateLimiter"]

import dataclasses
import hashlib
import logging
import math
import time
import typing

_LOGGER: typing.Final = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitVerdict:
    """Headers for a reply, and how long to wait when the request is over the limit (None: allowed)."""

    headers: dict[str, str]
    retry_after: float | None


@dataclasses.dataclass(slots=True, kw_only=True)
class _Window:
    reset_at: float
    used: int


class RestRateLimiter:
    """A fixed window per (route, major parameter), like Discord's per-route buckets."""

    def __init__(self, *, limit: int, period: float) -> None:
        self._limit = limit
        self._period = period
        self._windows: dict[tuple[str, str], _Window] = {}

    def hit(self, route: str, major: str, *, override: tuple[int, float] | None = None) -> RateLimitVerdict:
        """Count one request against its bucket (`override`: tighter limit and window, a fault switch)."""
        limit, period = override if override is not None else (self._limit, self._period)
        now = time.monotonic()
        key = (route, major)
        window = self._windows.get(key)
        if window is None or now >= window.reset_at:
            window = self._windows[key] = _Window(reset_at=now + period, used=0)
        reset_after = max(0.0, window.reset_at - now)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": hashlib.sha1(route.encode(), usedforsecurity=False).hexdigest()[:32],
        }
        if window.used >= limit:
            headers["X-RateLimit-Remaining"] = "0"
            headers["X-RateLimit-Scope"] = "user"
            headers["Retry-After"] = str(max(1, math.ceil(reset_after)))
            return RateLimitVerdict(headers=headers, retry_after=round(reset_after, 3))
        window.used += 1
        headers["X-RateLimit-Remaining"] = str(limit - window.used)
        return RateLimitVerdict(headers=headers, retry_after=None)
