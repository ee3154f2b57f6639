"""config.toml and the settings model cannot drift apart, and bad settings are named precisely."""

from __future__ import annotations

import os
import pathlib
import tomllib
import typing

import pydantic
import pytest

from reconciler.config import ConfigError, Settings, load_settings

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config.toml"


def _defaults(model: type[pydantic.BaseModel]) -> dict[str, typing.Any]:
    instance = model()
    out: dict[str, typing.Any] = {}
    for name in type(instance).model_fields:
        value = getattr(instance, name)
        out[name] = _defaults(type(value)) if isinstance(value, pydantic.BaseModel) else value
    return out


def _plain(value: typing.Any) -> typing.Any:
    return value.get_secret_value() if isinstance(value, pydantic.SecretStr) else value


def test_every_setting_is_in_config_toml_with_its_default() -> None:
    document = tomllib.loads(CONFIG.read_text())
    defaults = _defaults(Settings)
    assert set(document) == set(defaults)
    for section, fields in defaults.items():
        assert set(document[section]) == set(fields), section
        for key, default in fields.items():
            assert document[section][key] == _plain(default), f"{section}.{key}"


def test_every_setting_has_a_comment_line_above_it() -> None:
    lines = CONFIG.read_text().splitlines()
    for index, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[index - 1].startswith("# "), f"no comment above: {line}"


def test_shipped_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
    settings = load_settings(CONFIG)
    assert settings.sync.progress_every == 25
    assert settings.database.url == "sqlite+aiosqlite:///data/reconciler.db"
    assert settings.observability.metrics_address == "127.0.0.1:9108"


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_DISCORD__TOKEN", "from-env-token")
    monkeypatch.setenv("RECONCILER_SYNC__INACTIVE_DAYS", "7")
    settings = load_settings(CONFIG)
    assert settings.discord.token.get_secret_value() == "from-env-token"
    assert settings.sync.inactive_days == 7
    assert settings.sync.progress_every == 25


def test_token_is_secret_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_DISCORD__TOKEN", "Tz.visible.token.value")
    settings = load_settings(CONFIG)
    assert "visible" not in repr(settings)
    assert "visible" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[discord]\ntokn = 'x'\n", "discord.tokn: unknown key"),
        ("[sync]\nprogress_every = 'many'\n", "sync.progress_every"),
        ("[schedule]\ncleanup_cron = '61 3 * * *'\n", "schedule.cleanup_cron: cron '61 3 * * *' does not parse"),
        ("[schedule]\ntimezone = 'Mars/Olympus'\n", "schedule.timezone: unknown time zone"),
        ("[database]\nurl = 'sqlite:///x.db'\n", "database.url: must use an async driver"),
        ("[sync]\nmax_departure_ratio = 1.5\n", "sync.max_departure_ratio"),
        ("[discord]\nshard_ids = [3]\nshard_count = 2\n", "discord: shard_ids [3] outside 0..1"),
        ("[discord]\nintents = ['GUILDS']\n", "discord.intents: GUILD_MEMBERS is required"),
        ("[observability]\nmetrics_address = 'nowhere'\n", "observability.metrics_address: must be HOST:PORT"),
        ("[unknown]\nx = 1\n", "unknown: unknown key"),
        ("[retention]\nsync_runs_days = 0\n", "retention.sync_runs_days: Input should be greater than 0"),
        ("[retention]\nscheduler_slots_days = 'forever'\n", "retention.scheduler_slots_days"),
        ("[retention]\nsync_run_days = 30\n", "retention.sync_run_days: unknown key"),
        ("[sync]\ngateway_runs_interval_seconds = -5\n", "sync.gateway_runs_interval_seconds"),
        ("[sync\n", "not valid TOML"),
    ],
)
def test_bad_settings_name_file_key_and_reason(tmp_path: pathlib.Path, body: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert expected in message
    assert "\n" not in message


def test_environment_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("RECONCILER_SYNC__INACTIVE_DAYS", "soon")
    path = tmp_path / "c.toml"
    path.write_text("")
    with pytest.raises(ConfigError, match=r"^RECONCILER_SYNC__INACTIVE_DAYS: sync\.inactive_days"):
        load_settings(path)


def test_missing_explicit_file_is_an_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "absent.toml")


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for section, fields in _defaults(Settings).items():
        for key in fields:
            assert f"`{section}.{key}`" in readme, f"{section}.{key} missing from the README's settings table"


def test_retention_takes_fractions_of_a_day(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "minutes.toml"
    path.write_text("[retention]\nsync_runs_days = 0.0035\nscheduler_slots_days = 0.5\n")
    retention = load_settings(path).retention
    assert (retention.sync_runs_days, retention.scheduler_slots_days) == (0.0035, 0.5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0,1", [0, 1]), (" 0 , 1 ", [0, 1]), ("[0, 1]", [0, 1]), ("1", [1]), ("", [])],
)
def test_list_variables_take_json_or_commas(monkeypatch: pytest.MonkeyPatch, value: str, expected: list[int]) -> None:
    monkeypatch.setenv("RECONCILER_DISCORD__SHARD_COUNT", "2")
    monkeypatch.setenv("RECONCILER_DISCORD__SHARD_IDS", value)
    monkeypatch.setenv("RECONCILER_DISCORD__INTENTS", "GUILDS,GUILD_MEMBERS")
    settings = load_settings(CONFIG)
    assert settings.discord.shard_ids == expected
    assert settings.discord.intents == ["GUILDS", "GUILD_MEMBERS"]


def test_named_config_in_the_environment_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("RECONCILER_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match=r"absent\.toml: file not found \(named by RECONCILER_CONFIG\)"):
        load_settings()


def test_a_check_across_keys_set_by_variables_names_them_not_an_absent_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    for name in [k for k in os.environ if k.startswith("RECONCILER_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no config.toml here
    monkeypatch.setenv("RECONCILER_DISCORD__SHARD_IDS", "0,1")
    with pytest.raises(ConfigError, match=r"^RECONCILER_DISCORD__SHARD_IDS: discord: shard_ids needs shard_count$"):
        load_settings()
