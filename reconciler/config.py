"""Settings, loaded from ``config.toml`` and ``RECONCILER_*`` environment variables, validated up front.

A bad setting must stop the process before anything starts, with one line that names the file, the key
and the reason: an operator should never learn at 3 a.m. that the cleanup cron did not parse.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ActivitySettings",
    "ConfigError",
    "DatabaseSettings",
    "DiscordSettings",
    "ObservabilitySettings",
    "RetentionSettings",
    "ScheduleSettings",
    "Settings",
    "SyncSettings",
    "load_settings",
    "resolve_config_path",
    "settings_from",
]

import contextvars
import ipaddress
import json
import os
import pathlib
import re
import tomllib
import typing
import zoneinfo

import pydantic
import pydantic_settings

DEFAULT_CONFIG_PATH: typing.Final = pathlib.Path("config.toml")
_ENV_PREFIX: typing.Final = "RECONCILER_"
_ENV_DELIMITER: typing.Final = "__"

# The TOML source needs the path chosen on the command line; pydantic-settings builds sources inside
# the class, so the path travels through a context variable rather than a class attribute.
_config_path: contextvars.ContextVar[pathlib.Path] = contextvars.ContextVar(
    "reconciler_config_path", default=DEFAULT_CONFIG_PATH
)

_KNOWN_INTENTS: typing.Final = frozenset(
    {"GUILDS", "GUILD_MEMBERS", "GUILD_MESSAGES", "GUILD_PRESENCES", "MESSAGE_CONTENT", "GUILD_VOICE_STATES"}
)
_KNOWN_PERMISSIONS: typing.Final = frozenset({"ADMINISTRATOR", "MANAGE_GUILD", "MANAGE_ROLES"})


class ConfigError(Exception):
    """A setting is wrong; ``str()`` is the one line shown to the operator."""


class _Section(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


def _split_list(value: object) -> object:
    """A list from the environment may be JSON (``[0, 1]``) or comma-separated (``0,1``), as people write it.

    TOML lists arrive as lists and pass through. Only a value that starts with ``[`` is read as JSON, so
    a malformed JSON list is reported as such instead of being split into nonsense.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON list ({exc.msg} at character {exc.pos}); or write it as a,b,c") from None
    return [part.strip() for part in text.split(",") if part.strip()]


# Lists accepted from TOML, JSON or comma-separated text. NoDecode keeps pydantic-settings from JSON-decoding
# environment values itself, which fails with a traceback-shaped SettingsError instead of naming the key.
_IntList = typing.Annotated[list[int], pydantic_settings.NoDecode, pydantic.BeforeValidator(_split_list)]
_StrList = typing.Annotated[list[str], pydantic_settings.NoDecode, pydantic.BeforeValidator(_split_list)]


class DiscordSettings(_Section):
    token: pydantic.SecretStr = pydantic.SecretStr("")
    rest_url: str = ""
    rest_retries: int = pydantic.Field(default=3, ge=0, le=5)
    shard_ids: _IntList = pydantic.Field(default_factory=list[int])
    shard_count: int = pydantic.Field(default=0, ge=0)
    intents: _StrList = pydantic.Field(default_factory=lambda: ["GUILDS", "GUILD_MEMBERS", "GUILD_MESSAGES"])
    command_guild_ids: _IntList = pydantic.Field(default_factory=list[int])
    admin_permission: str = "MANAGE_GUILD"
    ephemeral_reports: bool = True

    @pydantic.field_validator("intents")
    @classmethod
    def _known_intents(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - _KNOWN_INTENTS)
        if unknown:
            raise ValueError(f"unknown intent(s) {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN_INTENTS))}")
        if "GUILD_MEMBERS" not in value:
            raise ValueError("GUILD_MEMBERS is required: without it Discord sends no member list to reconcile")
        return value

    @pydantic.field_validator("admin_permission")
    @classmethod
    def _known_permission(cls, value: str) -> str:
        if value not in _KNOWN_PERMISSIONS:
            raise ValueError(f"must be one of {', '.join(sorted(_KNOWN_PERMISSIONS))}")
        return value

    @pydantic.field_validator("rest_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @pydantic.model_validator(mode="after")
    def _shards_fit(self) -> DiscordSettings:
        if self.shard_ids:
            if not self.shard_count:
                raise ValueError("shard_ids needs shard_count")
            bad = [s for s in self.shard_ids if not 0 <= s < self.shard_count]
            if bad:
                raise ValueError(f"shard_ids {bad} outside 0..{self.shard_count - 1}")
        return self


class DatabaseSettings(_Section):
    url: str = "sqlite+aiosqlite:///data/reconciler.db"
    batch_size: int = pydantic.Field(default=5000, ge=1, le=100_000)
    connect_timeout_seconds: float = pydantic.Field(default=10.0, gt=0)

    @pydantic.field_validator("url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must use an async driver: sqlite+aiosqlite:///PATH or postgresql+asyncpg://...")
        return value


class SyncSettings(_Section):
    progress_every: int = pydantic.Field(default=25, ge=1)
    progress_min_interval_seconds: float = pydantic.Field(default=1.0, ge=1.0)
    inactive_days: int = pydantic.Field(default=30, ge=1, le=3650)
    max_departure_ratio: float = pydantic.Field(default=0.10, gt=0, le=1)
    activity_flush_seconds: float = pydantic.Field(default=0.5, gt=0, le=300)
    retry_base_seconds: float = pydantic.Field(default=1.0, gt=0)
    retry_max_seconds: float = pydantic.Field(default=60.0, gt=0)
    max_attempts: int = pydantic.Field(default=8, ge=1)
    gateway_runs_interval_seconds: float = pydantic.Field(default=3600.0, gt=0, le=86_400)


class ActivitySettings(_Section):
    backfill_enabled: bool = True
    backfill_max_age_days: float = pydantic.Field(default=7.0, gt=0, le=3650)
    backfill_concurrency: int = pydantic.Field(default=4, ge=1, le=50)
    import_history_days: float = pydantic.Field(default=0.0, ge=0, le=3650)


class ScheduleSettings(_Section):
    enabled: bool = True
    drift_check_seconds: float = pydantic.Field(default=900.0, gt=0)
    drift_check_jitter_seconds: float = pydantic.Field(default=30.0, ge=0)
    auto_heal: bool = True
    relist_cron: str = "30 4 * * *"
    cleanup_cron: str = "0 3 * * *"
    timezone: str = "UTC"
    misfire_grace_seconds: int = pydantic.Field(default=300, ge=1)
    count_audit_seconds: float = pydantic.Field(default=600.0, gt=0)
    count_audit_jitter_seconds: float = pydantic.Field(default=30.0, ge=0)

    @pydantic.field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @pydantic.field_validator("relist_cron", "cleanup_cron")
    @classmethod
    def _parses(cls, value: str) -> str:
        # Imported here: APScheduler is heavy and only needed when a cron is validated. The scheduler's
        # own parser, so what passes here is exactly what runs (weekdays numbered as cron numbers them).
        from reconciler.cron import crontab_trigger  # noqa: PLC0415

        try:
            crontab_trigger(value, "UTC")
        except ValueError as exc:
            raise ValueError(f"cron {value!r} does not parse: {exc}") from None
        return value

    @pydantic.model_validator(mode="after")
    def _jitter_below_interval(self) -> ScheduleSettings:
        # A fire is recognised across processes by its scheduled time; jitter past the next one would blur it.
        if self.drift_check_jitter_seconds >= self.drift_check_seconds:
            raise ValueError("drift_check_jitter_seconds must be shorter than drift_check_seconds")
        return self

    @pydantic.model_validator(mode="after")
    def _count_audit_jitter_below_interval(self) -> ScheduleSettings:
        if self.count_audit_jitter_seconds >= self.count_audit_seconds:
            raise ValueError("count_audit_jitter_seconds must be shorter than count_audit_seconds")
        return self


class RetentionSettings(_Section):
    """What the nightly cleanup deletes or erases by age (days; fractions allowed, so tests can use minutes).

    Bookkeeping (`sync_runs`, `scheduler_slots`) always has an age; member history and the names of
    long-departed members only when the operator sets one (0 keeps them forever): member data is never
    pruned silently, and member, user, role, link and activity rows are never deleted here.
    """

    sync_runs_days: float = pydantic.Field(default=90.0, gt=0)
    scheduler_slots_days: float = pydantic.Field(default=14.0, gt=0)
    member_events_days: float = pydantic.Field(default=0.0, ge=0, le=36_500)
    left_member_days: float = pydantic.Field(default=0.0, ge=0, le=36_500)


class ObservabilitySettings(_Section):
    metrics_address: str = "127.0.0.1:9108"
    log_level: typing.Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: typing.Literal["logfmt", "json"] = "logfmt"

    @pydantic.field_validator("metrics_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9108")
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            if host != "localhost":
                raise ValueError(f"host {host!r} is not an IP address or localhost") from None
        return value

    @property
    def metrics_host(self) -> str:
        return self.metrics_address.rpartition(":")[0].strip("[]")

    @property
    def metrics_port(self) -> int:
        return int(self.metrics_address.rpartition(":")[2])


class Settings(pydantic_settings.BaseSettings):
    """Every setting; ``config.toml`` documents each one with its default."""

    model_config = pydantic_settings.SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix=_ENV_PREFIX,
        env_nested_delimiter=_ENV_DELIMITER,
        nested_model_default_partial_update=True,
    )

    discord: DiscordSettings = pydantic.Field(default_factory=DiscordSettings)
    database: DatabaseSettings = pydantic.Field(default_factory=DatabaseSettings)
    sync: SyncSettings = pydantic.Field(default_factory=SyncSettings)
    activity: ActivitySettings = pydantic.Field(default_factory=ActivitySettings)
    schedule: ScheduleSettings = pydantic.Field(default_factory=ScheduleSettings)
    observability: ObservabilitySettings = pydantic.Field(default_factory=ObservabilitySettings)
    retention: RetentionSettings = pydantic.Field(default_factory=RetentionSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[pydantic_settings.BaseSettings],
        init_settings: pydantic_settings.PydanticBaseSettingsSource,
        env_settings: pydantic_settings.PydanticBaseSettingsSource,
        dotenv_settings: pydantic_settings.PydanticBaseSettingsSource,
        file_secret_settings: pydantic_settings.PydanticBaseSettingsSource,
    ) -> tuple[pydantic_settings.PydanticBaseSettingsSource, ...]:
        # `toml_file` in model_config alone is ignored: the TOML source has to be listed here.
        toml = pydantic_settings.TomlConfigSettingsSource(settings_cls, toml_file=_config_path.get())
        return (init_settings, env_settings, toml)


def _env_name(loc: tuple[str | int, ...]) -> str:
    return _ENV_PREFIX + _ENV_DELIMITER.join(str(part).upper() for part in loc)


def _describe(error: typing.Any, path: pathlib.Path) -> str:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    key = ".".join(str(part) for part in loc) or "(top level)"
    # The variable that set this key or the list it is in (discord.shard_ids.1 comes from ..._SHARD_IDS).
    variables = [_env_name(loc[:end]) for end in range(len(loc), 0, -1) if _env_name(loc[:end]) in os.environ]
    # A check across keys (discord: shard_ids needs shard_count) names the variables of that section too.
    inside = sorted(name for name in os.environ if loc and name.startswith(_env_name(loc) + _ENV_DELIMITER))
    if variables:
        source = variables[0]
    elif inside:
        source = " + ".join(([str(path)] if path.is_file() else []) + inside)
    else:
        source = str(path)
    kind = error["type"]
    if kind == "extra_forbidden":
        reason = "unknown key"
    elif kind == "missing":
        reason = "required"
    else:
        reason = str(error["msg"]).removeprefix("Value error, ")
        if "input" in error and kind not in {"value_error", "assertion_error"} and loc[-1:] != ("token",):
            reason += f" (got {error['input']!r})"
    return f"{source}: {key}: {reason}"


def resolve_config_path(path: pathlib.Path | None = None) -> tuple[pathlib.Path, bool]:
    """The file to read and whether it was named (``--config`` or ``RECONCILER_CONFIG``).

    Only the default ``config.toml`` may be absent: a file the operator named and that is missing is a
    typo, and running on defaults instead would hide it.
    """
    if path is not None:
        return path, True
    named = os.environ.get(f"{_ENV_PREFIX}CONFIG", "")
    if named:
        return pathlib.Path(named), True
    return DEFAULT_CONFIG_PATH, False


def load_settings(path: pathlib.Path | None = None) -> Settings:
    """Load and validate; raise :class:`ConfigError` with one line naming file, key and reason."""
    path, explicit = resolve_config_path(path)
    if path.is_file():
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
    elif path.exists():
        raise ConfigError(f"{path}: not a file")
    elif explicit:
        source = "RECONCILER_CONFIG" if os.environ.get(f"{_ENV_PREFIX}CONFIG") == str(path) else "--config"
        raise ConfigError(f"{path}: file not found (named by {source})")
    token = _config_path.set(path)
    try:
        return Settings()
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        more = exc.error_count() - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise ConfigError(_describe(first, path) + suffix) from None
    except pydantic_settings.SettingsError as exc:
        # What pydantic-settings cannot decode before validation: a whole section given as JSON in one
        # variable (RECONCILER_DISCORD='{...'). Its message names the field; name the variable instead.
        field = re.search(r'field "(\w+)"', str(exc))
        name = _env_name((field.group(1),)) if field else ""
        shown = name if name in os.environ else str(path)
        raise ConfigError(f"{shown}: not valid JSON for a whole section; set RECONCILER_SECTION__KEY instead") from None
    finally:
        _config_path.reset(token)


def settings_from(values: typing.Mapping[str, typing.Any]) -> Settings:
    """Settings from explicit values and defaults only, no file (the demo and tests build them so)."""
    token = _config_path.set(pathlib.Path(os.devnull))
    try:
        return Settings(**values)
    finally:
        _config_path.reset(token)
