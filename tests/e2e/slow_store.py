"""A store made slow on purpose: every call waits first, and every committed batch waits again."""

from __future__ import annotations

__all__ = ["SlowStore"]

import asyncio
import typing

if typing.TYPE_CHECKING:
    from collections.abc import AsyncIterable

    from reconciler.domain import ChangeSet
    from reconciler.store.api import ApplyResult, ProgressCallback, Store


class SlowStore:
    """Wraps a real store: `delay` before each call (or only the calls named in `only`), and
    `batch_delay` after each committed batch of `apply` and `apply_stream`."""

    def __init__(
        self, inner: Store, *, delay: float = 0.0, batch_delay: float = 0.0, only: frozenset[str] | None = None
    ) -> None:
        self._inner = inner
        self.delay = delay
        self.batch_delay = batch_delay
        self.only = only

    def _delay_for(self, name: str) -> float:
        return self.delay if self.only is None or name in self.only else 0.0

    def __getattr__(self, name: str) -> typing.Any:
        attribute = getattr(self._inner, name)
        if name in {"guild_lock", "close"} or not asyncio.iscoroutinefunction(attribute):
            return attribute

        async def slowed(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
            await asyncio.sleep(self._delay_for(name))
            return await attribute(*args, **kwargs)

        return slowed

    def _slowed_progress(self, on_progress: ProgressCallback | None) -> ProgressCallback:
        async def slow_progress(done: int, total: int) -> None:
            await asyncio.sleep(self.batch_delay)
            if on_progress is not None:
                result = on_progress(done, total)
                if result is not None:
                    await result

        return slow_progress

    async def apply(
        self,
        guild_id: int,
        change_set: ChangeSet,
        *,
        on_progress: ProgressCallback | None = None,
        **options: typing.Any,
    ) -> ApplyResult:
        await asyncio.sleep(self._delay_for("apply"))
        return await self._inner.apply(guild_id, change_set, on_progress=self._slowed_progress(on_progress), **options)

    async def apply_stream(
        self,
        guild_id: int,
        parts: AsyncIterable[ChangeSet],
        *,
        on_progress: ProgressCallback | None = None,
        **options: typing.Any,
    ) -> ApplyResult:
        await asyncio.sleep(self._delay_for("apply_stream"))
        return await self._inner.apply_stream(
            guild_id, parts, on_progress=self._slowed_progress(on_progress), **options
        )
