"""What the demo runs with: its options, the bot's settings against the sandbox, a fresh database, a free port."""

from __future__ import annotations

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_METRICS_ADDRESS",
    "DemoOptions",
    "demo_settings",
    "describe_database",
    "log_path",
    "metrics_address",
    "reset_database",
    "sqlite_path",
]

import dataclasses
import errno
import logging
import pathlib
import socket
import typing

import sqlalchemy as sa

from reconciler.config import settings_from

if typing.TYPE_CHECKING:
    from reconciler.config import Settings

_LOGGER: typing.Final = logging.getLogger(__name__)

DEFAULT_DATABASE_URL: typing.Final = "sqlite+aiosqlite:///data/demo.db"
DEFAULT_METRICS_ADDRESS: typing.Final = "127.0.0.1:9108"
# Long enough to watch a check come round, short enough that a 15 s demo sees it.
DRIFT_CHECK_SECONDS: typing.Final = 3.0
# Not due during a demo (New Year's midnight UTC): the demo asks for its relist on demand.
_YEARLY_CRON: typing.Final = "0 0 1 1 *"
# The count audit would repair the demo's lost events before its relist step shows them: not due during
# a demo (about once in ten years); tests/e2e/test_schedule_count_audit.py shows it at work.
_COUNT_AUDIT_SECONDS: typing.Final = 315_360_000.0
_SQLITE_SIDE_FILES: typing.Final = ("-wal", "-shm", "-journal")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    """`reconciler demo` as the user asked for it."""

    members: int = 5_000
    duration: float = 60.0
    database_url: str = DEFAULT_DATABASE_URL
    metrics_address: str = DEFAULT_METRICS_ADDRESS
    seed: int = 1


def sqlite_path(url: str) -> pathlib.Path | None:
    """The file of a SQLite URL, absolute; None for another backend or an in-memory database."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return pathlib.Path(parsed.database).expanduser().resolve()


def describe_database(url: str) -> str:
    """Where the data is, for the terminal: the file of a SQLite URL, else the URL without its password."""
    path = sqlite_path(url)
    return str(path) if path is not None else sa.make_url(url).render_as_string(hide_password=True)


def reset_database(url: str) -> bool:
    """Delete a SQLite demo database (and its WAL files) so a rerun starts fresh; False for other backends."""
    path = sqlite_path(url)
    if path is None:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in _SQLITE_SIDE_FILES)):
        candidate.unlink(missing_ok=True)
    return True


def log_path(url: str) -> pathlib.Path:
    """Where the bot's full log goes: beside a SQLite database, else `data/demo.log`."""
    path = sqlite_path(url)
    folder = path.parent if path is not None else pathlib.Path("data").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "demo.log"


def metrics_address(wanted: str) -> tuple[str, bool]:
    """`wanted` if its port can be bound now, else the same host on a free port (`HOST:0`); and whether it moved."""
    host, _, port = wanted.rpartition(":")
    if int(port) == 0:
        return wanted, False
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), int(port)))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return f"{host}:0", True
    return wanted, False


def demo_settings(options: DemoOptions, *, token: str, rest_url: str, metrics: str) -> Settings:
    """The production settings model with demo-length intervals; only the REST URL points elsewhere."""
    return settings_from(
        {
            "discord": {"token": token, "rest_url": rest_url},
            "database": {"url": options.database_url},
            "sync": {"activity_flush_seconds": 1.0, "retry_base_seconds": 0.5, "retry_max_seconds": 5.0},
            "schedule": {
                "enabled": True,
                "drift_check_seconds": DRIFT_CHECK_SECONDS,
                "drift_check_jitter_seconds": 0.0,
                "auto_heal": True,
                "relist_cron": _YEARLY_CRON,
                "cleanup_cron": _YEARLY_CRON,
                "count_audit_seconds": _COUNT_AUDIT_SECONDS,
                "misfire_grace_seconds": 5,
            },
            "observability": {"metrics_address": metrics, "log_level": "INFO"},
        }
    )
