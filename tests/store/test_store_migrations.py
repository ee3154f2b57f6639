"""Migrations: from empty to head on every backend, no drift from the models, all-or-nothing on failure."""

from __future__ import annotations

import argparse
import datetime
import pathlib
import shutil
import sqlite3
import typing

import pytest
import sqlalchemy as sa

from reconciler.store import cli
from reconciler.store.connect import create_engine
from reconciler.store.migrate import (
    MIGRATIONS,
    current_revision,
    head_revision,
    pending_model_changes,
    upgrade_database,
)
from reconciler.store.tables import VIEW_NAMES, metadata

if typing.TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

BROKEN_MIGRATION = """
import sqlalchemy as sa
from alembic import op

revision = "0099"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("half_built", sa.Column("id", sa.Integer, primary_key=True))
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("extra", sa.Integer))
    op.execute("THIS IS NOT SQL")


def downgrade():
    pass
"""


async def names(url: str) -> tuple[set[str], set[str]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: (set(sa.inspect(sync).get_table_names()), set(sa.inspect(sync).get_view_names()))
            )
    finally:
        await engine.dispose()


@pytest.mark.asyncio
async def test_upgrade_from_empty_builds_every_table_and_view(
    database_url_factory: Callable[[], Awaitable[str]],
) -> None:
    url = await database_url_factory()

    await upgrade_database(url)
    await upgrade_database(url)  # a second upgrade is a no-op
    tables, views = await names(url)

    assert await current_revision(url) == head_revision()
    assert tables == {*metadata.tables, "alembic_version"}
    assert views == set(VIEW_NAMES)


@pytest.mark.asyncio
async def test_0002_keeps_every_run_as_a_run_of_its_own(database_url_factory: Callable[[], Awaitable[str]]) -> None:
    url = await database_url_factory()
    await upgrade_database(url, revision="0001")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    'INSERT INTO sync_runs (guild_id, kind, "trigger", started_at, finished_at, outcome, created)'
                    " VALUES (7, 'users', 'gateway', :t, :t, 'success', 3), (7, 'full', 'command', :t, NULL, NULL, 0)"
                ).bindparams(sa.bindparam("t", type_=sa.DateTime(timezone=True))),
                {"t": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)},
            )
        await upgrade_database(url, revision="0002")
        async with engine.connect() as conn:
            rows = (
                await conn.execute(sa.text("SELECT kind, created, runs, period_start FROM sync_runs ORDER BY id"))
            ).all()
    finally:
        await engine.dispose()

    assert [tuple(row) for row in rows] == [("users", 3, 1, None), ("full", 0, 1, None)]


@pytest.mark.asyncio
async def test_models_and_migrations_agree(database_url_factory: Callable[[], Awaitable[str]]) -> None:
    # What `alembic check` does: autogenerate against the migrated database finds nothing to add.
    url = await database_url_factory()
    await upgrade_database(url)

    assert await pending_model_changes(url) == []


@pytest.mark.asyncio
async def test_autogenerate_does_see_a_difference(database_url_factory: Callable[[], Awaitable[str]]) -> None:
    # The check above is only worth something if the comparison finds real differences.
    url = await database_url_factory()

    assert len(await pending_model_changes(url)) >= len(metadata.tables)


@pytest.mark.asyncio
@pytest.mark.parametrize("start", [None, "0001"], ids=["from empty", "from 0001"])
async def test_a_failed_sqlite_migration_leaves_no_half_built_schema(tmp_path: pathlib.Path, start: str | None) -> None:
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    head = head_revision()
    (scripts / "versions" / "0099_broken.py").write_text(BROKEN_MIGRATION.format(down=head))
    database = tmp_path / "db.sqlite"
    url = f"sqlite+aiosqlite:///{database}"
    if start is not None:
        await upgrade_database(url, revision=start, script_location=scripts)
    before = sqlite3.connect(database).execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()

    with pytest.raises(sa.exc.OperationalError, match="THIS"):
        await upgrade_database(url, script_location=scripts)

    after = sqlite3.connect(database).execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    assert after == before
    assert await current_revision(url) == start


@pytest.mark.asyncio
async def test_sqlite_connections_are_set_up_for_a_bot_that_writes_all_day(tmp_path: pathlib.Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'folder' / 'r.db'}"
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            values = [
                (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            ]
    finally:
        await engine.dispose()

    assert values == ["wal", 1, 30000, 1]
    assert (tmp_path / "missing" / "folder" / "r.db").exists()


@pytest.mark.asyncio
async def test_foreign_keys_are_enforced_at_runtime(tmp_path: pathlib.Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    await upgrade_database(url)
    engine = create_engine(url)
    try:
        with pytest.raises(sa.exc.IntegrityError, match="FOREIGN KEY"):
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO members (guild_id, user_id, first_seen_at, updated_at, fingerprint) "
                        "VALUES (1, 2, '2024-01-01', '2024-01-01', 0)"
                    )
                )
    finally:
        await engine.dispose()


def test_db_upgrade_command(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.add_subcommand(parser.add_subparsers(dest="command"))
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'r.db'}"

    args = parser.parse_args(["db", "upgrade", "--database", url])
    code = args.func(args)

    assert code == 0
    assert f"at revision {head_revision()}" in capsys.readouterr().out
    tables = sqlite3.connect(tmp_path / "data" / "r.db").execute("SELECT name FROM sqlite_master").fetchall()
    assert ("members",) in tables


def test_db_upgrade_takes_the_url_from_the_settings(tmp_path: pathlib.Path) -> None:
    parser = argparse.ArgumentParser()
    cli.add_subcommand(parser.add_subparsers(dest="command"))
    database = tmp_path / "from-settings.db"

    class Settings:
        class database:  # noqa: N801 - mirrors settings.database.url
            url = f"sqlite+aiosqlite:///{database}"

    args = parser.parse_args(["db", "upgrade"])
    args.settings = Settings

    assert args.func(args) == 0
    assert database.exists()


def test_db_upgrade_reports_a_failure_in_one_line(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.add_subcommand(parser.add_subparsers(dest="command"))
    (tmp_path / "dir.db").mkdir()  # a folder where the database file should be
    args = parser.parse_args(["db", "upgrade", "--database", f"sqlite+aiosqlite:///{tmp_path / 'dir.db'}"])

    code = args.func(args)

    assert code == 6  # the database exit code, as for `run`
    assert "upgrade failed, nothing was changed" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_upgrading_a_filled_0001_database_keeps_every_row(
    database_url_factory: Callable[[], Awaitable[str]],
) -> None:
    # A replica written by the previous release: rows in every table, then the history revision.
    url = await database_url_factory()
    await upgrade_database(url, revision="0001")
    stamp = "2024-03-01 12:00:00"
    statements = [
        f"INSERT INTO guilds (id, name, member_count, first_seen_at, last_reconciled_at, updated_at) "
        f"VALUES (10, 'g', 2, '{stamp}', '{stamp}', '{stamp}')",
        f"INSERT INTO users (id, username, global_name, avatar_hash, is_bot, updated_at) "
        f"VALUES (1, 'alice', 'Alice', 'aa', false, '{stamp}'), (2, 'bob', NULL, NULL, true, '{stamp}')",
        f"INSERT INTO members (guild_id, user_id, nickname, joined_at, first_seen_at, status, updated_at, fingerprint) "
        f"VALUES (10, 1, 'ally', '{stamp}', '{stamp}', 'active', '{stamp}', 42), "
        f"(10, 2, NULL, NULL, '{stamp}', 'left', '{stamp}', 43)",
        f"INSERT INTO roles (guild_id, role_id, name, color, position, permissions, managed, updated_at) "
        f"VALUES (10, 100, 'mods', 1, 2, 8, false, '{stamp}')",
        "INSERT INTO member_roles (guild_id, user_id, role_id) VALUES (10, 1, 100)",
        "INSERT INTO message_activity (guild_id, user_id, day, messages) VALUES (10, 1, '2024-03-01', 5)",
        f"INSERT INTO sync_runs (guild_id, kind, \"trigger\", started_at) VALUES (10, 'full', 'startup', '{stamp}')",
    ]
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(sa.text(statement))
        before = await _dump(engine)
    finally:
        await engine.dispose()

    await upgrade_database(url)

    engine = create_engine(url)  # a new process after the upgrade: no statement cached on the old schema
    try:
        after = await _dump(engine)
        async with engine.connect() as conn:
            extras = (
                await conn.execute(
                    sa.text(
                        "SELECT premium_since, communication_disabled_until, pending, flags, guild_avatar_hash "
                        "FROM members ORDER BY user_id"
                    )
                )
            ).all()
            roles = (await conn.execute(sa.text("SELECT user_id, role_id, valid_to FROM v_role_history"))).all()
            history = (await conn.execute(sa.text("SELECT count(*) FROM v_member_history"))).scalar_one()
    finally:
        await engine.dispose()
    assert await current_revision(url) == head_revision()
    for table, rows in before.items():
        assert [row[: len(before_row)] for row, before_row in zip(after[table], rows, strict=True)] == rows, table
    assert [tuple(row) for row in extras] == [(None, None, False, 0, None), (None, None, False, 0, None)]
    assert [tuple(row) for row in roles] == [(1, 100, None)]  # held since the baseline
    assert history == 0


async def _dump(engine: typing.Any) -> dict[str, list[tuple[typing.Any, ...]]]:
    tables = ("guilds", "users", "members", "roles", "member_roles", "message_activity", "sync_runs")
    async with engine.connect() as conn:
        return {
            table: [tuple(row) for row in await conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1, 2"))]
            for table in tables
        }
