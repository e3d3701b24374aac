"""Migrations: every table created, idempotent, no drift from tables.py, safe when run concurrently."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from tests.unit.store.conftest import FreshDatabases

from inferenceops.store import Database, InvalidDatabaseURL, StoreUnavailable, current, head, upgrade
from inferenceops.store.migrate import alembic_config, migration_lock
from inferenceops.store.tables import metadata

TABLES = {"teams", "users", "service_accounts", "memberships", "api_keys", "grants", "providers",
          "deployments", "replica_drains", "models", "audit_log", "control_state", "limits", "budgets",
          "alembic_version", "invitations", "usage_records", "sign_in_links", "usage_rollups",
          "usage_rollup_state", "model_prices", "files", "batches",
          "batch_requests", "guardrail_policies", "guardrail_attachments",
          "team_retention", "retained_bodies", "adapters"}


async def _schema(url: str) -> tuple[set[str], list[str], list[tuple[str, int]]]:
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            tables = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
            versions = [r[0] for r in await conn.execute(text("SELECT version_num FROM alembic_version"))]
            state = [(r[0], r[1]) for r in await conn.execute(text("SELECT key, value FROM control_state"))]
        return tables, versions, state
    finally:
        await db.close()


async def test_upgrade_creates_every_table_and_is_idempotent(fresh: FreshDatabases) -> None:
    url = await fresh.new()
    assert await current(url) is None
    assert await upgrade(url) == head() == "0023"
    assert await upgrade(url) == head()  # second run: a no-op
    assert await current(url) == head()
    tables, versions, state = await _schema(url)
    assert tables == TABLES
    assert versions == [head()]
    assert state == [("revision", 0)]


async def test_migrations_match_the_declared_tables(fresh: FreshDatabases) -> None:
    url = await fresh.new()
    await upgrade(url)
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), metadata))
    finally:
        await db.close()
    assert diff == []


#: 0001 gave its CHECKs explicit names without ``op.f``, so the naming convention was applied
#: on top (``ck_teams_ck_teams_weight_positive``). Deployed databases have those names now;
#: this comparison forgives exactly that, for 0001's tables only.
_DOUBLED = ("teams", "users", "memberships", "api_keys")


def _undoubled(table: str, name: str) -> str:
    doubled = f"ck_{table}_ck_{table}_"
    return name.replace(doubled, f"ck_{table}_", 1) if table in _DOUBLED else name


async def _constraints(url: str, create: bool) -> dict[str, object]:
    """CHECK and UNIQUE constraints, indexes and FKs per table, as the database reports them."""
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            if create:
                await conn.run_sync(metadata.create_all)

            def read(sync: Connection) -> dict[str, object]:
                found = inspect(sync)
                return {table: (
                    sorted((_undoubled(table, c["name"]), " ".join(str(c["sqltext"]).split()))
                           for c in found.get_check_constraints(table)),
                    sorted((c["name"], tuple(c["column_names"]))
                           for c in found.get_unique_constraints(table)),
                    sorted((i["name"], tuple(i["column_names"])) for i in found.get_indexes(table)),
                    sorted((f["name"], tuple(f["constrained_columns"]), f["referred_table"],
                            f["options"].get("ondelete")) for f in found.get_foreign_keys(table)))
                    for table in metadata.tables}
            return await conn.run_sync(read)
    finally:
        await db.close()


async def test_migrations_make_the_same_constraints_as_the_tables(fresh: FreshDatabases) -> None:
    """compare_metadata does not look at CHECK constraints: compare them (and the rest) directly."""
    migrated, declared = await fresh.new(), await fresh.new()
    await upgrade(migrated)
    assert await _constraints(migrated, create=False) == await _constraints(declared, create=True)


def _alembic(connection: Connection, verb: str, target: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    getattr(command, verb)(config, target)


async def test_0002_upgrades_existing_keys_and_downgrades(fresh: FreshDatabases) -> None:
    url = await fresh.new()
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_alembic, "upgrade", "0001")
            await conn.execute(text(
                "INSERT INTO users (id, email, display_name, disabled, created_at) "
                "VALUES ('usr_1', 'a@b.c', '', false, CURRENT_TIMESTAMP)"))
            await conn.execute(text(
                "INSERT INTO api_keys (id, name, prefix, digest, user_id, scopes, created_at) "
                "VALUES ('key_1', '', 'sk-io-1', :digest, 'usr_1', '[\"inference\"]', CURRENT_TIMESTAMP)"),
                {"digest": b"x" * 32})
            await conn.run_sync(_alembic, "upgrade", "head")
            flag = (await conn.execute(text("SELECT background_only FROM api_keys"))).scalar_one()
            assert flag in (False, 0)
            await conn.run_sync(_alembic, "downgrade", "0001")
            columns = await conn.run_sync(
                lambda sync: {c["name"] for c in inspect(sync).get_columns("api_keys")})
            tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        assert "background_only" not in columns and not {"limits", "budgets"} & tables
        assert await upgrade(url) == head()
    finally:
        await db.close()


_CATALOG_0002 = (
    "INSERT INTO providers (id, name, base_url, dialect, created_at, updated_at) "
    "VALUES ('prov_1', 'p', 'http://h:1/v1', 'openai', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
    "INSERT INTO deployments (id, name, provider_id, engine, served_model, replicas, timeouts, "
    "created_at, updated_at) VALUES ('dep_1', 'd', 'prov_1', 'openai', 'm', '[]', '{}', "
    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
    "INSERT INTO models (id, name, deployment_id, type, aliases, created_at, updated_at) "
    "VALUES ('mdl_1', 'm', 'dep_1', 'chat', '[\"a\"]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
)
_0003_COLUMNS = {"providers": {"api_key_env", "managed_by"},
                 "deployments": {"profile", "seed", "api_key_env", "max_connections", "queue",
                                 "managed_by"},
                 "models": {"price", "max_output_tokens", "managed_by"}}


async def test_0003_fills_existing_catalog_rows_and_downgrades_in_place(fresh: FreshDatabases) -> None:
    """Rows 0001 could hold get the specs' defaults; the downgrade works while models reference
    deployments (a SQLite table rebuild would not, under foreign_keys=ON)."""
    url = await fresh.new()
    db = Database(url)

    def columns(sync: Connection) -> dict[str, set[str]]:
        found = inspect(sync)
        return {t: {c["name"] for c in found.get_columns(t)} for t in _0003_COLUMNS}

    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_alembic, "upgrade", "0002")
            for statement in _CATALOG_0002:
                await conn.execute(text(statement))
            await conn.run_sync(_alembic, "upgrade", "0003")
            row = (await conn.execute(text(
                "SELECT d.seed, d.max_connections, d.queue, d.profile, d.managed_by, "
                "m.max_output_tokens, m.price FROM deployments d JOIN models m "
                "ON m.deployment_id = d.id"))).one()
            assert (row.seed, row.max_connections, row.profile, row.managed_by,
                    row.max_output_tokens, row.price) == (0, 256, None, None, 4096, None)
            assert row.queue in ({}, "{}")
            await conn.run_sync(_alembic, "downgrade", "0002")
            after = await conn.run_sync(columns)
            assert all(not (after[t] & added) for t, added in _0003_COLUMNS.items())
            assert (await conn.execute(text("SELECT count(*) FROM models"))).scalar_one() == 1
            indexes = await conn.run_sync(lambda sync: {
                i["name"] for i in inspect(sync).get_indexes("deployments")})
            assert "ix_deployments_provider_id" not in indexes
        assert await upgrade(url) == head()
        async with db.engine.connect() as conn:
            assert _0003_COLUMNS["deployments"] <= (await conn.run_sync(columns))["deployments"]
    finally:
        await db.close()


async def test_0006_moves_the_bootstrap_admin_to_an_address_no_idp_can_verify(
        fresh: FreshDatabases) -> None:
    """Only the platform admin at the old documented address moves; anyone else keeps theirs."""
    url = await fresh.new()
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_alembic, "upgrade", "0005")
            for user_id, email, role in (("usr_a", "admin@inferenceops.local", "platform-admin"),
                                         ("usr_b", "ada@example.com", "platform-admin")):
                await conn.execute(text(
                    "INSERT INTO users (id, email, display_name, platform_role, disabled, created_at)"
                    " VALUES (:id, :email, '', :role, false, CURRENT_TIMESTAMP)"),
                    {"id": user_id, "email": email, "role": role})
            await conn.run_sync(_alembic, "upgrade", "0006")
            emails = {row[0]: row[1] for row in await conn.execute(text("SELECT id, email FROM users"))}
        assert emails == {"usr_a": "bootstrap@inferenceops.invalid", "usr_b": "ada@example.com"}
    finally:
        await db.close()


async def test_0009_moves_each_models_price_into_its_history_and_back(fresh: FreshDatabases) -> None:
    """A model's price becomes its price from the beginning; the downgrade puts back the one in
    force (a later change included, one still to come not) and drops the history."""
    url = await fresh.new()
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_alembic, "upgrade", "0008")
            for statement in _CATALOG_0002:
                await conn.execute(text(statement))
            await conn.execute(text(
                "INSERT INTO models (id, name, deployment_id, type, aliases, created_at, updated_at) "
                "VALUES ('mdl_2', 'free', 'dep_1', 'chat', '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
            await conn.execute(text("UPDATE models SET price = :price WHERE id = 'mdl_1'"),
                               {"price": '{"input_per_million": "0.60", "output_per_million": "0.8"}'})
            await conn.run_sync(_alembic, "upgrade", "0009")
            rows = (await conn.execute(text(
                "SELECT model_id, deployment_id, effective_from, input_per_million, "
                "output_per_million, cached_input_per_million, batch_discount_percent "
                "FROM model_prices"))).all()
            assert [tuple(r) for r in rows] == [("mdl_1", None, None, "0.60", "0.8", None, "0")]
            columns = await conn.run_sync(
                lambda sync: {c["name"] for c in inspect(sync).get_columns("models")})
            assert "price" not in columns
            for price_id, start, amount in (("prc_a", "2020-01-01 00:00:00+00:00", "0.5"),
                                            ("prc_b", "2999-01-01 00:00:00+00:00", "9")):
                await conn.execute(text(
                    "INSERT INTO model_prices (id, model_id, effective_from, input_per_million, "
                    "output_per_million, batch_discount_percent, created_at) VALUES (:id, 'mdl_1', "
                    ":start, :amount, '1', '0', CURRENT_TIMESTAMP)"),
                    {"id": price_id, "start": datetime.fromisoformat(start), "amount": amount})
            await conn.run_sync(_alembic, "downgrade", "0008")
            prices = dict((await conn.execute(text("SELECT id, price FROM models ORDER BY id"))).all())
            tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        assert {k: json.loads(v) if isinstance(v, str) else v for k, v in prices.items()} == {
            "mdl_1": {"input_per_million": "0.5", "output_per_million": "1"}, "mdl_2": None}
        assert "model_prices" not in tables
        assert await upgrade(url) == head()
    finally:
        await db.close()


@pytest.mark.parametrize(("before", "revision", "level", "columns", "expected"), [
    ("0010", "0011", "**", "granularity, team_id, model, requests, cost_nanos",
     [("day", None, "m", 12, 12), ("hour", None, "m", 5, 5), ("hour", None, "n", 1, 1)]),
    ("0022", "0023", "*m", "granularity, team_id, model, requests, cost_nanos",
     [("day", "t1", None, 5, 5), ("day", "t2", None, 7, 7), ("hour", None, None, 1, 1),
      ("hour", "t1", None, 2, 2), ("hour", "t2", None, 3, 3)]),
])
async def test_a_new_rollup_level_sums_existing_rollups_and_goes_back(
        fresh: FreshDatabases, before: str, revision: str, level: str, columns: str,
        expected: list[tuple[object, ...]]) -> None:
    """Buckets rolled up before a level existed get its rows from their ``'*'`` rows (0011:
    over all keys and teams; 0023: over all keys, models and adapters per team and
    deployment); the downgrade removes exactly those rows."""
    url = await fresh.new()
    db = Database(url)
    measures = ("requests, prompt_tokens, completion_tokens, cached_tokens, estimated_requests, "
                "errors, cost_nanos")
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_alembic, "upgrade", before)
            for granularity, team, key, model, requests in (
                    ("hour", "t1", "*", "m", 2), ("hour", "t2", "*", "m", 3),
                    ("hour", "t1", "k1", "m", 2), ("hour", None, "*", "n", 1),
                    ("day", "t1", "*", "m", 5), ("day", "t2", "*", "m", 7)):
                await conn.execute(text(
                    f"INSERT INTO usage_rollups (granularity, bucket, team_id, key_id, model, "
                    f"adapter, deployment, {measures}) VALUES (:g, :b, :t, :k, :m, NULL, 'd', "
                    ":r, :r, 0, 0, 0, 0, :r)"),
                    {"g": granularity, "b": datetime(2026, 12, 1, tzinfo=UTC), "t": team, "k": key,
                     "m": model, "r": requests})
            await conn.run_sync(_alembic, "upgrade", revision)
            rows = (await conn.execute(text(
                f"SELECT {columns} FROM usage_rollups WHERE key_id = :level "
                "ORDER BY granularity, team_id NULLS FIRST, model"), {"level": level})).all()
            assert [tuple(r) for r in rows] == expected
            await conn.run_sync(_alembic, "downgrade", before)
            left = (await conn.execute(text("SELECT COUNT(*) FROM usage_rollups"))).scalar_one()
        assert left == 6
        assert await upgrade(url) == head()
    finally:
        await db.close()


async def test_lock_excludes_a_second_migrator(fresh: FreshDatabases) -> None:
    url = await fresh.new()
    async with migration_lock(url):
        with pytest.raises(StoreUnavailable, match="migration lock"):
            await upgrade(url, lock_timeout_s=0.3)
    assert await upgrade(url) == head()


_CHILD = """
import asyncio, sys
from inferenceops.store.migrate import upgrade
print("ready", flush=True)
sys.stdin.readline()
print(asyncio.run(upgrade(sys.argv[1])), flush=True)
"""


async def test_two_processes_migrating_at_once(fresh: FreshDatabases) -> None:
    """Two replicas start together against a fresh database: both succeed, migrated once."""
    for _ in range(3):
        url = await fresh.new()
        children = [subprocess.Popen([sys.executable, "-c", _CHILD, url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for _ in range(2)]
        try:
            for child in children:  # both have paid their import cost: start them together
                assert await asyncio.to_thread(child.stdout.readline) == "ready\n"  # type: ignore[union-attr]
            for child in children:
                child.stdin.write("go\n")  # type: ignore[union-attr]
                child.stdin.flush()  # type: ignore[union-attr]
            results = [await asyncio.to_thread(child.communicate, timeout=60) for child in children]
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        for child, (out, err) in zip(children, results, strict=True):
            assert child.returncode == 0, err
            assert out.strip() == head()
        tables, versions, state = await _schema(url)
        assert tables == TABLES
        assert versions == [head()]
        assert state == [("revision", 0)]


@pytest.mark.parametrize("url", ["not a url", "mysql+aiomysql://u@h/db", "sqlite+nosuchdriver:///x.db", "sqlite+pysqlite:///x.db"])
async def test_malformed_url_is_a_clear_error(url: str) -> None:
    with pytest.raises(InvalidDatabaseURL, match="sqlite\\+aiosqlite:///"):
        await upgrade(url)


async def test_unreachable_postgres_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="check"):
        await upgrade("postgresql+asyncpg://nobody@127.0.0.1:1/none")


async def test_unwritable_sqlite_folder_is_store_unavailable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreUnavailable, match="writable"):
        await upgrade(f"sqlite+aiosqlite:///{blocker}/sub/store.db")
