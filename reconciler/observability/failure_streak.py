"""One failure that repeats on a timer, logged as a streak: its start, a reminder now and then, its end.

A writer that retries every few seconds (the activity flush) fails once per attempt while the database
is away. Logging each attempt with its traceback buries the operator under identical lines, hundreds
for a 20-minute outage, and hides whatever else went wrong meanwhile. The first failure is what they
need in full; after that, how long it has lasted and how many attempts failed, and finally that it is
over. Metrics still count every attempt.
"""

from __future__ import annotations

__all__ = ["FailureStreak"]

import sys
import time
import typing

if typing.TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Mapping


class FailureStreak:
    """Logs the first failure with its traceback, then at most one reminder per `remind_seconds`, then the end."""

    def __init__(
        self,
        logger: logging.Logger,
        event: str,
        *,
        remind_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._event = event
        self._remind_seconds = remind_seconds
        self._clock = clock
        self._failures = 0
        self._started = 0.0
        self._reminded = 0.0

    @property
    def failures(self) -> int:
        """Failed attempts in the current streak (0: none running)."""
        return self._failures

    def failed(self, extra: Mapping[str, object] | None = None) -> None:
        """Record one failed attempt; call it from the `except` block that caught the error."""
        now = self._clock()
        self._failures += 1
        if self._failures == 1:
            self._started = self._reminded = now
            self._logger.exception(self._event, extra=extra)
            return
        if now - self._reminded < self._remind_seconds:
            return
        self._reminded = now
        error = sys.exc_info()[1]
        self._logger.warning(
            f"{self._event}: still failing",
            extra={
                **(extra or {}),
                "failures": self._failures,
                "seconds": round(now - self._started, 1),
                "last_error": f"{type(error).__name__}: {error}" if error is not None else None,
            },
        )

    def succeeded(self) -> None:
        """Record a successful attempt: ends a streak (logged once) or does nothing."""
        if self._failures == 0:
            return
        self._logger.warning(
            f"{self._event}: recovered",
            extra={"failures": self._failures, "seconds": round(self._clock() - self._started, 1)},
        )
        self._failures = 0
