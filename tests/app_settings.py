"""Settings for an app under test: the sandbox's token and URL, a given database, fast timers."""

from __future__ import annotations

__all__ = ["app_settings"]

import typing

from reconciler.config import settings_from

if typing.TYPE_CHECKING:
    from reconciler.config import Settings
    from reconciler.sandbox import DiscordSandbox


COUNT_AUDIT_OUT_OF_THE_WAY: typing.Final = 315_360_000.0


def app_settings(sandbox: DiscordSandbox, url: str, **sections: dict[str, typing.Any]) -> Settings:
    values: dict[str, dict[str, typing.Any]] = {
        "discord": {"token": sandbox.token, "rest_url": sandbox.rest_url},
        "database": {"url": url, "batch_size": 500},
        "sync": {"activity_flush_seconds": 0.2, "retry_base_seconds": 0.2},
        # With the scheduler on, the count audit stays out of the way (about once in ten years) unless a test
        # asks for it: it would repair events a test loses on purpose before the job under test runs.
        "schedule": {"enabled": False, "count_audit_seconds": COUNT_AUDIT_OUT_OF_THE_WAY},
        "observability": {"metrics_address": "127.0.0.1:0"},
    }
    for name, overrides in sections.items():
        values.setdefault(name, {}).update(overrides)
    return settings_from(values)
