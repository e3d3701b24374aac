"""Usage reports over a 10-million-record ledger: loading it, rolling it up, and report latency.

``python -m bench.usage_reports`` builds, per backend — SQLite (a new file in
``bench/.work/usage_reports``) and PostgreSQL at 127.0.0.1:5432 (a throwaway database,
dropped at the end unless ``--keep``) — a migrated store with a realistic platform
(``TEAMS`` teams with an owner and a member each, ``KEYS_PER_TEAM`` keys a team, a few
platform keys without a team; ``MODELS`` models on 4 deployments, one with LoRA adapters),
then:

1. **load**: ``--records`` synthetic usage records (default 10,000,000) over ``--days``
   days (default 90) ending now, written in time order as the outbox would: key use skewed
   (Zipf: a few keys do most of the work), each key on one to three models, token counts,
   cached tokens, ~3 % estimated, ~3 % errors, costs from per-model prices. Generated in
   chunks of ``CHUNK`` and inserted straight away: SQLite with the driver's ``executemany``
   (one transaction a chunk; WAL, ``synchronous=OFF`` for the load only), PostgreSQL with
   ``COPY`` (asyncpg's ``copy_records_to_table``), into the real table with its indexes.
   Generating and inserting are timed apart; PostgreSQL is then ``ANALYZE``d, as autovacuum
   would. SQLite gets no ``ANALYZE``: the app never runs one.
2. **rollup**: the real ``control.usage_rollup.UsageRollups.run_once`` from an empty
   state — every hour of the ledger, a day a step — timed; then the steady state: the last
   minute's records (at the ledger's rate) added and one more round timed, which is what
   every interval costs.
3. **reports**: each query of ``QUERIES`` ``--runs`` times (after ``WARMUP``) through
   ``store.repo.usage_rollups.read_report`` in a read transaction (what every caller runs),
   wall time per call; then the whole admin route in process (``GET /admin/api/v1/usage``
   with a platform admin's, a team owner's and a member's admin key: authentication, the
   scope, the read, the JSON) and ``GET /v1/usage``'s read and document for a team key.
   Then ``GET /admin/api/v1/chargeback`` the same way (the three self-hosted deployments
   declare GPU costs; the report reads their hourly rows per team and shares the cost out):
   by hour a page of 24 hours (the default), the whole week in one page (``limit=168``), and
   the week's pages walked in turn (``next_after`` → ``after``).
   Median and p95 (nearest rank) per query; target: p95 under 100 ms.

The machine is shared (2 cores): how busy other processes kept it is recorded before
each phase. Results: ``bench/results/usage_reports-latest.{json,md}`` and a dated copy.
``--quick`` is 200,000 records over 30 days, for a smoke run (``usage_reports-quick-*``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import orjson
from sqlalchemy import func, select

from bench.procs import busy_pct
from bench.stats import median, percentile
from inferenceops.admin.api import build_admin_app
from inferenceops.control.usage_reads import UsageReads
from inferenceops.control.usage_rollup import UsageRollups
from inferenceops.metering.own_usage import own_usage_document, own_usage_query
from inferenceops.metering.reports import EVERYTHING, UsageQuery, UsageScope, resolve_range
from inferenceops.platform import ApiKey, KeyHasher, Principal
from inferenceops.platform.keys import new_secret, visible_prefix
from inferenceops.store import Database, repo
from inferenceops.store.migrate import upgrade
from inferenceops.store.repo.usage_rollups import read_report
from inferenceops.store.tables_usage import UsageRollup

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "bench" / ".work" / "usage_reports"
TEAMS, KEYS_PER_TEAM, PLATFORM_KEYS = 40, 10, 4
#: model → (deployment, nano-units per prompt token, per completion token, adapters)
MODELS = {
    "llama-3.1-8b": ("vllm-8b", 20, 60, ("lora-support", "lora-sql", "lora-legal")),
    "llama-3.1-70b": ("vllm-70b", 150, 450, ()), "qwen2.5-7b": ("vllm-8b", 20, 60, ()),
    "mistral-small": ("vllm-70b", 100, 300, ()), "gpt-4o-mini": ("openai", 150, 600, ()),
    "gpt-4o": ("openai", 2500, 10_000, ()), "text-embed-3": ("openai", 20, 0, ()),
    "bge-m3": ("embed-cpu", 5, 0, ()),
}
#: The self-hosted deployments (GPUs each), whose cost the chargeback report shares out.
GPU_DEPLOYMENTS = {"vllm-8b": 1, "vllm-70b": 4, "embed-cpu": 0}
CHUNK = 100_000
WARMUP, RUNS = 3, 30
TARGET_MS = 100.0
HASHER = KeyHasher(b"bench-usage-reports-platform-secret-32+")
COLUMNS = ("request_id", "at", "key_id", "team_id", "principal_id", "principal_kind", "model",
           "deployment", "replica", "endpoint", "priority", "stream", "prompt_tokens",
           "completion_tokens", "tokens_reported", "cost_nanos", "status", "error_code",
           "latency_ms", "first_byte_ms", "cached_tokens", "adapter")


# ---- the world --------------------------------------------------------------------------------

@dataclass
class SynthKey:
    id: str
    team_id: str | None
    owner: str
    models: tuple[str, ...]


@dataclass
class World:
    keys: list[SynthKey] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)  # cumulative, Zipf over the keys
    secrets: dict[str, str] = field(default_factory=dict)  # role → an admin key's secret
    ids: dict[str, str] = field(default_factory=dict)


async def make_world(db: Database, rng: random.Random) -> World:
    world = World()
    names = list(MODELS)
    async with db.transaction() as tx:
        admin = await repo.create_user(tx, "admin@bench.example", platform_role="platform-admin")
        world.secrets["admin"] = await _admin_key(tx, admin.id, None)
        for t in range(TEAMS):
            team = await repo.create_team(tx, f"team-{t:02d}")
            owner = await repo.create_user(tx, f"owner{t}@bench.example")
            member = await repo.create_user(tx, f"member{t}@bench.example")
            await repo.set_membership(tx, team.id, owner.id, "owner")
            await repo.set_membership(tx, team.id, member.id, "member")
            if t == 0:
                world.secrets["owner"] = await _admin_key(tx, owner.id, team.id)
                world.secrets["member"] = await _admin_key(tx, member.id, team.id)
                world.ids.update(team=team.id, member=member.id)
            for k in range(KEYS_PER_TEAM):
                user = owner if k % 3 == 0 else member
                key = await repo.create_api_key(tx, name=f"k{k}", prefix="sk-io-bench",
                                                digest=os.urandom(32), user_id=user.id,
                                                team_id=team.id)
                world.keys.append(SynthKey(key.id, team.id, user.id,
                                           tuple(rng.sample(names, rng.randint(1, 3)))))
        for _ in range(PLATFORM_KEYS):
            key = await repo.create_api_key(tx, name="platform", prefix="sk-io-bench",
                                            digest=os.urandom(32), user_id=admin.id)
            world.keys.append(SynthKey(key.id, None, admin.id, tuple(rng.sample(names, 2))))
        for deployment, gpus in GPU_DEPLOYMENTS.items():
            await repo.create_deployment(tx, {
                "name": deployment, "engine": "openai", "served_model": deployment,
                "replicas": [{"url": "http://127.0.0.1:9/v1"}],
                "gpu_cost": {"gpus": gpus, "cost_per_gpu_hour": "2.35",
                             "since": "2020-01-01T00:00:00Z",
                             "cost_model": {"capacity_per_hour": 400_000_000}}})
    rng.shuffle(world.keys)
    total = 0.0
    for rank in range(1, len(world.keys) + 1):
        total += 1.0 / rank ** 1.1
        world.weights.append(total)
    world.ids["key"] = world.keys[0].id  # the busiest key
    world.ids["team_key"] = next(k.id for k in world.keys if k.team_id == world.ids["team"])
    return world


async def _admin_key(tx: Any, user_id: str, team_id: str | None) -> str:
    secret = new_secret()
    await repo.create_api_key(tx, name="bench-admin", prefix=visible_prefix(secret),
                              digest=HASHER.digest(secret), user_id=user_id, team_id=team_id,
                              scopes=("inference", "admin"))
    return secret


def records(world: World, rng: random.Random, count: int, start: float, end: float,
            first: int = 0) -> Iterator[list[tuple[Any, ...]]]:
    """Chunks of ledger rows (``COLUMNS`` order, ``at`` as epoch seconds), in time order."""
    span = (end - start) / max(1, -(-count // CHUNK))
    made, chunk_start = 0, start
    keys, weights = world.keys, world.weights
    while made < count:
        n = min(CHUNK, count - made)
        times = sorted(rng.uniform(chunk_start, chunk_start + span) for _ in range(n))
        chosen = rng.choices(keys, cum_weights=weights, k=n)
        rows = []
        for i, (at, key) in enumerate(zip(times, chosen, strict=True)):
            model = key.models[0] if len(key.models) == 1 else rng.choice(key.models)
            deployment, price_in, price_out, adapters = MODELS[model]
            adapter = rng.choice(adapters) if adapters and rng.random() < 0.6 else None
            prompt = int(rng.lognormvariate(6.0, 1.0)) + 1
            completion = 0 if price_out == 0 else int(rng.lognormvariate(4.5, 1.0))
            cached = prompt // 2 if rng.random() < 0.3 else 0
            roll = rng.random()
            status, error = (500, "upstream_server_error") if roll < 0.02 else \
                (429, "rate_limit_exceeded") if roll < 0.025 else \
                (200, "client_disconnected") if roll < 0.03 else (200, None)
            rows.append((f"req-{first + made + i}", at, key.id, key.team_id, key.owner, "user",
                         model, deployment, f"{deployment}-0", "chat", "interactive",
                         roll > 0.5, prompt, completion, roll > 0.97 or roll < 0.03,
                         prompt * price_in + completion * price_out, status, error,
                         round(rng.uniform(50, 3000), 3), None, cached, adapter))
        made += n
        chunk_start += span
        yield rows


# ---- loading ----------------------------------------------------------------------------------

def _sqlite_at(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond:06d}"  # as SQLAlchemy stores it


def load_sqlite(path: Path, chunks: Iterator[list[tuple[Any, ...]]]) -> tuple[int, float, float]:
    """(rows, seconds generating, seconds inserting)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")  # the load only; the app runs NORMAL
    sql = f"INSERT INTO usage_records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    rows, generating, inserting = 0, 0.0, 0.0
    while True:
        started = time.perf_counter()
        chunk = next(chunks, None)
        if chunk is None:
            break
        converted = [(r[0], _sqlite_at(r[1]), *r[2:]) for r in chunk]
        generating += time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(sql, converted)
        conn.execute("COMMIT")
        inserting += time.perf_counter() - started
        rows += len(chunk)
    conn.close()
    return rows, generating, inserting


async def load_postgres(dsn: str, chunks: Iterator[list[tuple[Any, ...]]]) -> tuple[int, float, float]:
    conn = await asyncpg.connect(dsn)
    rows, generating, inserting = 0, 0.0, 0.0
    try:
        while True:
            started = time.perf_counter()
            chunk = next(chunks, None)
            if chunk is None:
                break
            converted = [(r[0], datetime.fromtimestamp(r[1], UTC), *r[2:]) for r in chunk]
            generating += time.perf_counter() - started
            started = time.perf_counter()
            await conn.copy_records_to_table("usage_records", records=converted, columns=COLUMNS)
            inserting += time.perf_counter() - started
            rows += len(chunk)
        started = time.perf_counter()
        await conn.execute("ANALYZE usage_records")
        inserting += time.perf_counter() - started
    finally:
        await conn.close()
    return rows, generating, inserting


# ---- timing -----------------------------------------------------------------------------------

async def timed(call: Callable[[], Awaitable[Any]], runs: int) -> dict[str, Any]:
    for _ in range(WARMUP):
        await call()
    samples = []
    result = None
    for _ in range(runs):
        started = time.perf_counter()
        result = await call()
        samples.append((time.perf_counter() - started) * 1000.0)
    rows = len(result.rows) if hasattr(result, "rows") else result
    return {"median_ms": round(median(samples), 2), "p95_ms": round(percentile(samples, 95), 2),
            "max_ms": round(max(samples), 2), "rows": rows}


def queries(world: World, now: datetime) -> dict[str, UsageQuery]:
    def q(granularity: str, span: timedelta, group_by: tuple[str, ...] = (),
          scope: UsageScope = EVERYTHING, **filters: Any) -> UsageQuery:
        start, end = resolve_range(now - span, now, granularity, now)  # type: ignore[arg-type]
        return UsageQuery(start=start, end=end, granularity=granularity,  # type: ignore[arg-type]
                          scope=scope, group_by=group_by, **filters)

    team = world.ids["team"]
    return {
        "platform, 30 days by day and team": q("day", timedelta(days=30), ("team",)),
        "platform, 30 days by day and model": q("day", timedelta(days=30), ("model",)),
        "platform, 90 days by day (totals)": q("day", timedelta(days=90)),
        "platform, 7 days by day, team and key": q("day", timedelta(days=7), ("team", "key")),
        "platform, 24 hours by hour and model": q("hour", timedelta(hours=24), ("model",)),
        "one team (owner), 30 days by day and model": q(
            "day", timedelta(days=30), ("model",), UsageScope(teams=frozenset({team}))),
        "one team (owner), 7 days by hour and key": q(
            "hour", timedelta(days=7), ("key",), UsageScope(teams=frozenset({team}))),
        "one member's keys, 30 days by day and key": q(
            "day", timedelta(days=30), ("key",), UsageScope(owner=world.ids["member"],
                                                           owner_teams=frozenset({team}))),
        "one key (filter), 90 days by day and model": q(
            "day", timedelta(days=90), ("model",), key_id=world.ids["key"]),
        "heavy: platform, 30 days by hour and model": q("hour", timedelta(days=30), ("model",)),
    }


async def asgi_get(app: Any, path: str, secret: str) -> int:
    """The response's size in bytes (an error unless 200)."""
    return len(await asgi_body(app, path, secret))


async def asgi_pages(app: Any, path: str, secret: str) -> int:
    """Every page of a chargeback report by hour, in turn (``next_after`` → ``after``): the
    bytes of all of them."""
    size, after = 0, None
    while True:
        body = await asgi_body(app, path if after is None else f"{path}&after={quote(after)}",
                               secret)
        size += len(body)
        after = orjson.loads(body)["next_after"]
        if after is None:
            return size


async def asgi_body(app: Any, path: str, secret: str) -> bytes:
    path, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "path": path, "raw_path": path.encode(), "query_string": query.encode(),
             "headers": [(b"authorization", f"Bearer {secret}".encode())],
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080), "scheme": "http",
             "root_path": ""}
    status, body = 0, bytearray()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    if status != 200:
        raise RuntimeError(f"GET {path}?{query} answered {status}")
    return bytes(body)


async def measure(url: str, world: World, now: datetime, runs: int) -> dict[str, Any]:
    db = Database(url)
    out: dict[str, Any] = {"store": {}, "admin_route": {}, "v1_usage": {}}
    try:
        for name, query in queries(world, now).items():
            async def call(query: UsageQuery = query) -> Any:
                async with db.read() as tx:
                    return await read_report(tx, query)
            out["store"][name] = await timed(call, runs)
        app = build_admin_app(db, HASHER)
        since = (now - timedelta(days=30)).date().isoformat()
        routes = {
            "platform admin: 30 days by day and team": ("admin", f"group_by=team&from={since}"),
            "platform admin: 30 days by day and model, CSV": ("admin", f"group_by=model&from={since}"
                                                              "&format=csv"),
            "team owner: 30 days by day and model": ("owner", f"group_by=model&from={since}"),
            "member: 30 days by day and key": ("member", f"group_by=key&from={since}"),
        }
        for name, (role, query_text) in routes.items():
            async def get(role: str = role, query_text: str = query_text) -> int:
                return await asgi_get(app, f"/admin/api/v1/usage?{query_text}", world.secrets[role])
            out["admin_route"][name] = await timed(get, runs)
        until = (now + timedelta(hours=1)).date().isoformat()
        week = f"from={(now - timedelta(days=7)).date()}&to={until}"
        charges = {
            "platform admin: 30 days, showback": ("admin", f"from={since}&to={until}"),
            "platform admin: 30 days by day, chargeback, CSV": (
                "admin", f"from={since}&to={until}&granularity=day&view=chargeback&format=csv"),
            "platform admin: 7 days by hour, a page (24 hours, the default)": (
                "admin", f"{week}&granularity=hour"),
            "platform admin: 7 days by hour in one page (limit=168)": (
                "admin", f"{week}&granularity=hour&limit=168"),
            "team owner: 30 days, showback": ("owner", f"from={since}&to={until}"),
        }
        out["chargeback_route"] = {}
        for name, (role, query_text) in charges.items():
            async def charge(role: str = role, query_text: str = query_text) -> int:
                return await asgi_get(app, f"/admin/api/v1/chargeback?{query_text}",
                                      world.secrets[role])
            out["chargeback_route"][name] = await timed(charge, runs)

        async def walk() -> int:
            return await asgi_pages(app, f"/admin/api/v1/chargeback?{week}&granularity=hour",
                                    world.secrets["admin"])
        out["chargeback_walk"] = {"platform admin: 7 days by hour, every page in turn":
                                  await timed(walk, runs)}
        reads = UsageReads(url)
        key = ApiKey(world.ids["team_key"], "sk-io-bench", Principal("u"), world.ids["team"],
                     frozenset({"inference"}))
        try:
            async def own() -> int:
                query = own_usage_query(key, {}, now)
                return len(orjson.dumps(own_usage_document(await reads.report(query), key, "USD")))
            out["v1_usage"]["team key: 30 days by day and model"] = await timed(own, runs)
        finally:
            await reads.stop()
        async with db.read() as tx:
            out["rollup_rows"] = {g: int(await tx.scalar(
                select(func.count()).select_from(UsageRollup).where(UsageRollup.granularity == g))
                or 0) for g in ("hour", "day")}
    finally:
        await db.close()
    return out


# ---- one backend ------------------------------------------------------------------------------

async def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(20261204)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    pg_admin, pg_name = args.pg_dsn, None
    if backend == "sqlite":
        WORK.mkdir(parents=True, exist_ok=True)
        path = WORK / "store.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite+aiosqlite:///{path}"
    else:
        pg_name = f"io_bench_usage_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(pg_admin)
        await admin.execute(f'CREATE DATABASE "{pg_name}"')
        await admin.close()
        user = pg_admin.split("://", 1)[1].split("@", 1)[0]
        url = f"postgresql+asyncpg://{user}@127.0.0.1:5432/{pg_name}"
    doc: dict[str, Any] = {"backend": backend, "records": args.records, "days": args.days}
    try:
        await upgrade(url)
        db = Database(url)
        try:
            world = await make_world(db, rng)
        finally:
            await db.close()
        start, end = (now - timedelta(days=args.days)).timestamp(), now.timestamp() - 120
        doc["busy_before_load_pct"] = round(busy_pct(2.0), 1)
        chunks = records(world, rng, args.records, start, end)
        if backend == "sqlite":
            rows, gen_s, ins_s = load_sqlite(path, chunks)
        else:
            rows, gen_s, ins_s = await load_postgres(pg_admin.rsplit("/", 1)[0] + f"/{pg_name}", chunks)
        doc["load"] = {"rows": rows, "generate_s": round(gen_s, 1), "insert_s": round(ins_s, 1),
                       "insert_rows_per_s": round(rows / ins_s)}
        print(f"[{backend}] loaded {rows:,} rows: generating {gen_s:.0f}s, inserting {ins_s:.0f}s",
              flush=True)

        doc["busy_before_rollup_pct"] = round(busy_pct(2.0), 1)
        # pause_s=0: the work alone (the service pauses 0.1 s between catch-up steps).
        service = UsageRollups(url, interval_s=60, retention_days=0, clock=now.timestamp,
                               pause_s=0.0)
        try:
            started = time.perf_counter()
            result = await service.run_once(min_gap=timedelta(0))
            catch_up_s = time.perf_counter() - started
            per_minute = max(1, round(args.records / (args.days * 24 * 60)))
            tail = next(records(world, rng, per_minute, now.timestamp() - 60, now.timestamp(),
                                first=args.records))
            if backend == "sqlite":
                load_sqlite(path, iter([tail]))
            else:
                await load_postgres(pg_admin.rsplit("/", 1)[0] + f"/{pg_name}", iter([tail]))
            steady = []
            for i in range(5):
                service._clock = (now + timedelta(seconds=30 + i)).timestamp  # noqa: SLF001
                started = time.perf_counter()
                await service.run_once(min_gap=timedelta(0))
                steady.append(time.perf_counter() - started)
        finally:
            await service.stop()
        doc["rollup"] = {"catch_up_s": round(catch_up_s, 1), "steps": result.steps,
                         "hours": result.hours, "steady_round_ms": round(median(steady) * 1000, 1),
                         "steady_records_per_minute": per_minute}
        print(f"[{backend}] rollup: {catch_up_s:.0f}s for {result.hours:,} hours in "
              f"{result.steps} steps; a steady round {median(steady) * 1000:.0f} ms", flush=True)

        doc["busy_before_reports_pct"] = round(busy_pct(2.0), 1)
        doc.update(await measure(url, world, now + timedelta(seconds=40), args.runs))
        if backend == "sqlite":
            doc["size_mb"] = round(sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal")
                                       if Path(f"{path}{s}").exists()) / 1e6)
        else:
            conn = await asyncpg.connect(pg_admin)
            doc["size_mb"] = round(await conn.fetchval("SELECT pg_database_size($1)", pg_name) / 1e6)
            await conn.close()
    finally:
        if pg_name is not None and not args.keep:
            admin = await asyncpg.connect(pg_admin)
            await admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            await admin.close()
    return doc


# ---- output -----------------------------------------------------------------------------------

def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def write(doc: dict[str, Any]) -> str:
    rows = [f"# Usage reports over a {doc['records']:,}-record ledger ({doc['days']} days)", ""]
    for b in doc["backends"]:
        load, roll = b["load"], b["rollup"]
        rows += [f"## {b['backend']}", "",
                 f"- load: {load['rows']:,} records — generating {load['generate_s']:,} s, inserting "
                 f"{load['insert_s']:,} s ({load['insert_rows_per_s']:,} rows/s"
                 f"{', COPY, then ANALYZE' if b['backend'] == 'postgresql' else ', executemany'}); "
                 f"store {b['size_mb']:,} MB",
                 f"- rollup from nothing: **{roll['catch_up_s']:,} s** ({roll['hours']:,} hours, "
                 f"{roll['steps']} steps); a steady round (one more minute: "
                 f"{roll['steady_records_per_minute']:,} records) **{roll['steady_round_ms']} ms**; "
                 f"rollup rows: {b['rollup_rows']['hour']:,} hourly, {b['rollup_rows']['day']:,} daily",
                 f"- other processes kept the cores busy: {b['busy_before_load_pct']} % before the "
                 f"load, {b['busy_before_rollup_pct']} % before the rollup, "
                 f"{b['busy_before_reports_pct']} % before the reports", "",
                 "| report | rows | median | p95 | max | p95 ≤ 100 ms |", "|---|---:|---:|---:|---:|---|"]
        for kind, label in (("store", "read_report"), ("admin_route", "GET /admin/api/v1/usage"),
                            ("v1_usage", "GET /v1/usage (read + document)"),
                            ("chargeback_route", "GET /admin/api/v1/chargeback"),
                            ("chargeback_walk", "GET /admin/api/v1/chargeback (pages)")):
            for name, r in b.get(kind, {}).items():
                unit = "bytes" if kind != "store" else ""
                ok = "yes" if r["p95_ms"] <= TARGET_MS else "**no**"
                if kind == "chargeback_walk":
                    ok = "(several calls: each is a page row above)"
                rows.append(f"| {label}: {name} | {r['rows']:,} {unit} | {r['median_ms']} ms "
                            f"| {r['p95_ms']} ms | {r['max_ms']} ms | {ok} |")
        rows.append("")
    rows.append(
        f"{doc['runs']} timed calls per report after {WARMUP} warm-up calls, wall time, one caller; "
        "p95 is nearest-rank. `read_report` rows are report rows; route rows are response bytes. "
        "Reports read only the rollups (hour rows for hourly reports, day rows for daily), "
        "current to the last rollup round (about a minute behind the ledger). "
        f"Measured {doc['timestamp']} on {doc['nproc']} cores ({doc['cpu_model']}), Python "
        f"{doc['python']}, commit {doc['git_commit'][:12]}{' (dirty tree)' if doc['git_dirty'] else ''}, "
        "with other people's processes running: see the busy shares above.")
    md = "\n".join(rows) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(doc["timestamp"])
    stem = "usage_reports-quick" if doc["quick"] else "usage_reports"
    for name in (f"{stem}-latest", f"{stem}-{stamp:%Y%m%d-%H%M}"):
        (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
        (RESULTS / f"{name}.md").write_text(md)
    return md


async def main(args: argparse.Namespace) -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    doc: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"), "nproc": os.cpu_count(),
        "cpu_model": cpu, "python": platform.python_version(), "records": args.records,
        "days": args.days, "runs": args.runs, "git_commit": _git("rev-parse", "HEAD") or "unknown",
        "git_dirty": bool(_git("status", "--porcelain", "--", "src")),
        "sqlite": sqlite3.sqlite_version, "quick": args.quick, "backends": []}
    for backend in args.backends:
        doc["backends"].append(await run_backend(backend, args))
    return doc


def run() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.usage_reports",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-dsn", default=os.environ.get("INFERENCEOPS_BENCH_PG_DSN",
                                                           "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--quick", action="store_true", help="200,000 records over 30 days")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    args = parser.parse_args()
    if args.quick:
        args.records, args.days = 200_000, 30
    args.backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    doc = asyncio.run(main(args))
    print(write(doc))


if __name__ == "__main__":
    run()
