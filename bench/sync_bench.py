"""Syncline data-path benchmark: the sync engine end to end, without a Prefect server.

    .venv/bin/python bench/sync_bench.py [--rows 1000000] [--cis 50000] [--batch-size N]
                                         [--repeat 3] [--ceiling-method auto|adbc|psycopg]
                                         [--postgres-url URL] [--scenarios pg,sqlite,servicenow]

Scenarios (each timed phase runs in a fresh ``spawn`` subprocess, so its peak RSS is its own):

1. PostgreSQL -> PostgreSQL, ``--rows`` x 10 columns: (a) full run into an empty reporting
   table, (b) the same full run again with nothing changed (``full_refresh``), (c) 1% of the
   source rows changed, incremental run from the committed cursor. Interleaved with (a) and
   (b), the PostgreSQL write path's ceilings on the same rows: a hand-written binary COPY into
   a fresh table, and COPY into a temporary stage + one ``INSERT ... ON CONFLICT`` merge into
   a table that already holds the rows; (a) and (b) are also reported as fractions of them.
2. The same PostgreSQL source -> a SQLite reporting database file, full run.
3. ServiceNow sandbox (``--cis`` CIs) -> SQLite, with the shipped ``cmdb_nightly.yaml``, the
   sandbox served by uvicorn over loopback (and, labelled, in-process via ASGITransport).

Human-readable table first; the very last line of stdout is one JSON object with the figures.
Progress goes to stderr.
"""

from __future__ import annotations

import os

# No telemetry, set before anything could import Prefect (the engine itself does not).
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"

import argparse
import asyncio
import contextlib
import functools
import inspect
import json
import logging
import multiprocessing
import platform
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import pandas as pd
import sqlalchemy as sa

from connectors.base.records import (
    Column,
    CursorValue,
    ReadWindow,
    RecordSource,
    RecordTarget,
    WriteResult,
)
from connectors.base.stats import CallStats
from syncline.connect import ConnectorFactory
from syncline.specs import IntegrationSpec, load_spec
from syncline.state import Ledger
from syncline.sync import SyncSummary, finish_run, run_sync

ROOT = Path(__file__).resolve().parents[1]
CMDB_SPEC = ROOT / "deployments" / "cmdb_nightly.yaml"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
BATCH_CANDIDATES = (100_000, 200_000)
GOAL_FULL_ROWS_PER_S = 100_000
GOAL_INCREMENTAL_RATIO = 0.10
CeilingMethod = Literal["adbc", "psycopg"]
CEILING_METHODS: tuple[CeilingMethod, ...] = ("adbc", "psycopg")
CEILING_STAGE = "ceiling_stage"
SOURCE_TABLE = "bench_source"
SOURCE_FIELDS = [
    "id",
    "name",
    "quantity",
    "priority",
    "score",
    "ratio",
    "active",
    "category",
    "note",
    "updated_at",
]
CATEGORY_LABELS = {"A": "Hardware", "B": "Software", "C": "Network", "D": "Storage", "E": "Other"}
OVERLAP = timedelta(minutes=5)  # the spec's cursor overlap
CHANGED_EVERY = 100  # one source row in 100 is changed before the incremental run

T = TypeVar("T")


# --- results ------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    """One timed run of ``run_sync`` (plus the cursor commit), measured in its own process."""

    label: str
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    filtered: int = 0
    dead_lettered: int = 0
    batches: int = 0
    seconds: float = 0.0
    read_s: float = 0.0  # waiting for the source's next batch (fetch + Arrow -> pandas)
    write_s: float = 0.0  # target.prepare + target.upsert (stage, UPDATE, INSERT, commit)
    ledger_s: float = 0.0  # audit log, dead letters, links, cursor
    base_rss_mb: float = 0.0  # the process after imports, before the run
    peak_rss_mb: float = 0.0
    check: str = "ok"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.read / self.seconds if self.seconds else 0.0


def rss_mb() -> float:
    """This process's peak resident set size so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- timing wrappers (the engine takes any RecordSource/RecordTarget/Ledger) ----------------


class TimedSource:
    """Delegates to a source and adds up the time spent waiting for each batch."""

    def __init__(self, inner: RecordSource) -> None:
        self.inner = inner
        self.system = inner.system
        self.object_name = inner.object_name
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        # Whatever else the engine asks of a source (field checks, key reads) is not timed.
        return getattr(self.inner, name)

    async def read(self, window: ReadWindow) -> AsyncIterator[pd.DataFrame]:
        batches = aiter(self.inner.read(window))
        while True:
            start = time.perf_counter()
            try:
                batch = await anext(batches)
            except StopAsyncIteration:
                self.seconds += time.perf_counter() - start
                return
            self.seconds += time.perf_counter() - start
            yield batch

    def max_cursor(self, batch: pd.DataFrame, cursor_field: str) -> CursorValue | None:
        return self.inner.max_cursor(batch, cursor_field)

    def expected_rows(self) -> int | None:
        return self.inner.expected_rows()

    def call_stats(self) -> CallStats | None:
        return self.inner.call_stats()

    async def aclose(self) -> None:
        await self.inner.aclose()


class TimedTarget:
    """Delegates to a target and adds up the time spent in prepare and upsert."""

    def __init__(self, inner: RecordTarget) -> None:
        self.inner = inner
        self.system = inner.system
        self.object_name = inner.object_name
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        # Whatever else the engine asks of a target (key reads, deletes) is not timed.
        return getattr(self.inner, name)

    async def prepare(self, columns: Sequence[Column], key: str) -> None:
        start = time.perf_counter()
        await self.inner.prepare(columns, key)
        self.seconds += time.perf_counter() - start

    async def upsert(self, batch: pd.DataFrame, key: str) -> WriteResult:
        start = time.perf_counter()
        result = await self.inner.upsert(batch, key)
        self.seconds += time.perf_counter() - start
        return result

    def call_stats(self) -> CallStats | None:
        return self.inner.call_stats()

    async def aclose(self) -> None:
        await self.inner.aclose()


class TimedLedger(Ledger):
    """The real ledger, with the time of every call the engine makes added up."""

    seconds = 0.0
    depth = 0


def _timed_method(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def timed(self: TimedLedger, *args: Any, **kwargs: Any) -> T:
        if self.depth:  # called by another ledger method, whose time already counts
            return method(self, *args, **kwargs)
        self.depth += 1
        start = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.depth -= 1

    return timed


# Every public method, not a list of the engine's calls: the engine's use of the ledger grows.
for _name, _method in list(vars(Ledger).items()):
    if inspect.isfunction(_method) and not _name.startswith("_") and _name != "dispose":
        setattr(TimedLedger, _name, _timed_method(_method))


async def timed_sync(
    label: str,
    spec: IntegrationSpec,
    source: RecordSource,
    target: RecordTarget,
    ledger_path: Path,
    *,
    full_refresh: bool = False,
) -> tuple[PhaseResult, SyncSummary]:
    """``run_sync`` then ``finish_run`` (cursor, run history), as the flow does, timed."""
    ledger = TimedLedger(f"sqlite:///{ledger_path}")
    ledger.seconds = 0.0
    timed_source, timed_target = TimedSource(source), TimedTarget(target)
    flow_run_id = f"bench-{uuid.uuid4().hex[:12]}"
    base = rss_mb()
    start = time.perf_counter()
    try:
        summary = await run_sync(
            spec,
            timed_source,
            timed_target,
            ledger,
            flow_run_id=flow_run_id,
            full_refresh=full_refresh,
        )
        finish_run(ledger, summary)
        seconds = time.perf_counter() - start
    finally:
        await timed_target.aclose()
        await timed_source.aclose()
        ledger.dispose()
    result = PhaseResult(
        label=label,
        read=summary.read,
        created=summary.created,
        updated=summary.updated,
        unchanged=summary.unchanged,
        filtered=summary.filtered,
        dead_lettered=summary.dead_lettered,
        batches=summary.batches,
        seconds=seconds,
        read_s=timed_source.seconds,
        write_s=timed_target.seconds,
        ledger_s=ledger.seconds,
        base_rss_mb=base,
        peak_rss_mb=rss_mb(),
    )
    return result, summary


# --- the jobs run in subprocesses ---------------------------------------------------------


@dataclass(frozen=True)
class SqlJob:
    """PostgreSQL source -> SQL target (PostgreSQL or SQLite) with the benchmark's spec."""

    label: str
    source_url: str
    target_url: str
    target_table: str
    ledger_path: str
    integration: str
    batch_size: int
    full_refresh: bool = False
    expect: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceNowJob:
    label: str
    cis: int
    workdir: str
    transport: Literal["loopback", "asgi"]


def sql_spec(job: SqlJob) -> IntegrationSpec:
    """Ten source columns, typed, one through a strict value map; datetime cursor."""
    return IntegrationSpec.model_validate(
        {
            "name": job.integration,
            "description": "benchmark: PostgreSQL items into a reporting table",
            "source": {
                "connector": "sql",
                "object": SOURCE_TABLE,
                "credentials": {"url": {"env": "SYNCLINE_BENCH_SOURCE_URL"}},
                "key": "id",
                "fields": SOURCE_FIELDS,
                "cursor": {"field": "updated_at", "overlap": OVERLAP.total_seconds()},
            },
            "target": {
                "connector": "sql",
                "object": job.target_table,
                "credentials": {"url": {"env": "SYNCLINE_BENCH_TARGET_URL"}},
                "key": "item_id",
            },
            "mapping": {
                "item_id": {"from": "id", "required": True},
                "name": {"from": "name", "required": True},
                "quantity": {"from": "quantity", "type": "integer"},
                "priority": {"from": "priority", "type": "integer"},
                "score": {"from": "score", "type": "float"},
                "ratio": {"from": "ratio", "type": "float"},
                "active": {"from": "active", "type": "boolean"},
                "category": {"from": "category", "map": CATEGORY_LABELS, "unmapped": "reject"},
                "note": "note",
                "updated_at": {"from": "updated_at", "type": "datetime"},
            },
            "batch_size": job.batch_size,
        }
    )


def quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("syncline", "connectors", "httpx", "httpcore", "uvicorn"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_sql_job(job: SqlJob) -> PhaseResult:
    quiet_logs()
    factory = ConnectorFactory(
        environ={
            "SYNCLINE_BENCH_SOURCE_URL": job.source_url,
            "SYNCLINE_BENCH_TARGET_URL": job.target_url,
        }
    )
    spec = sql_spec(job)

    async def go() -> PhaseResult:
        source, target = factory.source(spec), factory.target(spec)
        result, _ = await timed_sync(
            job.label, spec, source, target, Path(job.ledger_path), full_refresh=job.full_refresh
        )
        return result

    result = asyncio.run(go())
    result.extra["batch_size"] = job.batch_size
    problems = [
        f"{name} {getattr(result, name)} != {value}"
        for name, value in job.expect.items()
        if getattr(result, name) != value
    ]
    result.check = "; ".join(problems) or "ok"
    return result


def run_servicenow_job(job: ServiceNowJob) -> PhaseResult:
    import httpx

    from sandboxes.core.server import BackgroundServer
    from sandboxes.servicenow import ServiceNowSandbox, ServiceNowSandboxConfig

    quiet_logs()
    workdir = Path(job.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    seeded = time.perf_counter()
    sandbox = ServiceNowSandbox(ServiceNowSandboxConfig(cmdb_ci_server=job.cis))
    seed_s = time.perf_counter() - seeded
    expected = sum(1 for r in sandbox.records("cmdb_ci_server") if r["install_status"] != "7")

    def environ(url: str) -> dict[str, str]:
        return {
            "SYNCLINE_SERVICENOW_USER": "admin",
            "SYNCLINE_SERVICENOW_PASSWORD": "sandbox",
            "SYNCLINE_SERVICENOW_URL": url,
            "SYNCLINE_REPORTING_DB_URL": f"sqlite:///{workdir / 'reporting.db'}",
        }

    async def go(
        env: dict[str, str], transports: dict[str, httpx.AsyncBaseTransport]
    ) -> tuple[PhaseResult, SyncSummary]:
        spec = load_spec(CMDB_SPEC, environ=env)
        factory = ConnectorFactory(environ=env, transports=transports)
        return await timed_sync(
            job.label, spec, factory.source(spec), factory.target(spec), workdir / "ledger.db"
        )

    if job.transport == "loopback":
        with BackgroundServer(sandbox.app) as server:
            result, summary = asyncio.run(go(environ(server.url), {}))
    else:
        transport = httpx.ASGITransport(app=sandbox.app)
        result, summary = asyncio.run(
            go(environ(sandbox.config.instance_url), {"servicenow": transport})
        )
    result.extra.update(
        seed_s=round(seed_s, 2), api_calls=summary.api_calls, expected=expected, cis=job.cis
    )
    if result.read != expected or result.created != expected or result.dead_lettered:
        result.check = (
            f"read {result.read}, created {result.created}, dead-lettered "
            f"{result.dead_lettered}; expected {expected} each (0 dead letters)"
        )
    return result


@dataclass(frozen=True)
class CeilingJob:
    """A hand-written PostgreSQL write of the rows an end-to-end run wrote: its ceiling.

    ``kind`` "copy": one binary COPY into ``table``, created fresh like ``rows_table`` (column
    types, primary key, storage options). ``kind`` "merge": COPY into a temporary stage, then
    one ``INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE <a column differs>`` into ``table``,
    which already holds the same rows (the rerun case: nothing changes).
    """

    label: str
    url: str
    rows_table: str  # the end-to-end run's reporting table: the rows and the table's shape
    table: str
    kind: Literal["copy", "merge"]
    method: CeilingMethod
    expect_rows: int


def libpq_uri(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def run_ceiling_job(job: CeilingJob) -> PhaseResult:
    """Load the rows into memory in the method's own form, make the tables, then time the write.

    The clock covers the COPY (and the merge) and the commit, in one transaction. Reading the
    rows, turning them into the method's input and creating the tables come before it: the
    ceiling is the write alone.
    """
    import adbc_driver_postgresql.dbapi as adbc

    quiet_logs()
    uri = libpq_uri(job.url)
    base = rss_mb()
    loading = time.perf_counter()
    with adbc.connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            f"WHERE attrelid = '{quoted(job.rows_table)}'::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum"
        )
        columns: list[tuple[str, str]] = cursor.fetchall()
        cursor.execute(
            "SELECT a.attname, array_to_string(c.reloptions, ', ') FROM pg_class c "
            "JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] "
            f"WHERE c.oid = '{quoted(job.rows_table)}'::regclass"
        )
        key, options = cursor.fetchone()
        names = ", ".join(quoted(name) for name, _ in columns)
        # Heap order is the order the engine wrote them in.
        cursor.execute(f"SELECT {names} FROM {quoted(job.rows_table)}")
        data = cursor.fetch_arrow_table()
    rows = (
        list(zip(*(column.to_pylist() for column in data.columns), strict=True))
        if job.method == "psycopg"
        else []
    )
    load_s = time.perf_counter() - loading

    target = quoted(job.table)
    if job.kind == "copy":
        setup = [
            f"CREATE TABLE {target} (LIKE {quoted(job.rows_table)} INCLUDING ALL)"
            + (f" WITH ({options})" if options else "")
        ]
        copy_into = job.table
    else:
        setup = [
            f"DROP TABLE IF EXISTS {CEILING_STAGE}",
            f"CREATE TEMP TABLE {CEILING_STAGE} (LIKE {target})",
        ]
        copy_into = CEILING_STAGE
    others = [name for name, _ in columns if name != key]
    merge = (
        f"INSERT INTO {target} AS t ({names}) SELECT {names} FROM {CEILING_STAGE} "
        f"ON CONFLICT ({quoted(key)}) DO UPDATE SET "
        + ", ".join(f"{quoted(c)} = EXCLUDED.{quoted(c)}" for c in others)
        + " WHERE "
        + " OR ".join(f"t.{quoted(c)} IS DISTINCT FROM EXCLUDED.{quoted(c)}" for c in others)
    )

    affected = 0
    if job.method == "adbc":
        with adbc.connect(uri) as connection:
            with connection.cursor() as cursor:
                for statement in setup:
                    cursor.execute(statement)
            connection.commit()
            start = time.perf_counter()
            with connection.cursor() as cursor:
                written = cursor.adbc_ingest(
                    copy_into, data, mode="append", temporary=job.kind == "merge"
                )
                if job.kind == "merge":
                    cursor.execute(merge)
                    affected = cursor.rowcount
            connection.commit()
            seconds = time.perf_counter() - start
    else:
        import psycopg

        types = [type_name for _, type_name in columns]
        with psycopg.connect(uri) as connection:
            with connection.cursor() as cursor:
                for statement in setup:
                    cursor.execute(statement)
            connection.commit()
            start = time.perf_counter()
            with connection.cursor() as cursor:
                with cursor.copy(
                    f"COPY {quoted(copy_into)} ({names}) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(types)
                    for row in rows:
                        copy.write_row(row)
                written = cursor.rowcount
                if job.kind == "merge":
                    cursor.execute(merge)
                    affected = cursor.rowcount
            connection.commit()
            seconds = time.perf_counter() - start

    count = len(data)
    result = PhaseResult(
        label=job.label,
        read=count,
        created=written if job.kind == "copy" else 0,
        updated=affected,
        unchanged=count - affected if job.kind == "merge" else 0,
        seconds=seconds,
        write_s=seconds,
        base_rss_mb=base,
        peak_rss_mb=rss_mb(),
        extra={"ceiling": job.kind, "method": job.method, "load_s": round(load_s, 2)},
    )
    problems = []
    if count != job.expect_rows or written != count:
        problems.append(f"{count:,} rows loaded, {written:,} copied; expected {job.expect_rows:,}")
    if affected:
        problems.append(f"the merge changed {affected:,} rows; expected none")
    result.check = "; ".join(problems) or "ok"
    return result


def in_subprocess(function: Callable[[Any], PhaseResult], job: Any) -> PhaseResult:
    """Run one phase in a fresh interpreter: its peak RSS is the phase's alone."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, job).result()


# --- PostgreSQL fixtures (run in the parent) ----------------------------------------------


def median_phase(samples: Sequence[PhaseResult]) -> PhaseResult:
    """The sample with the median time (the upper median for an even count)."""
    return sorted(samples, key=lambda phase: phase.seconds)[len(samples) // 2]


def progress(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def admin_engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url).set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed, isolation_level="AUTOCOMMIT")


def postgres_reachable(url: str) -> str | None:
    """None when reachable, else why not."""
    engine = admin_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as error:
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
    finally:
        engine.dispose()
    return None


class BenchDatabase:
    """A fresh PostgreSQL database for the run, dropped WITH (FORCE) at the end."""

    def __init__(self, admin_url: str) -> None:
        self.name = f"syncline_bench_{uuid.uuid4().hex[:12]}"
        self.admin = admin_engine(admin_url)
        self.url = (
            sa.make_url(admin_url).set(database=self.name).render_as_string(hide_password=False)
        )
        self.engine: sa.Engine | None = None

    def __enter__(self) -> BenchDatabase:
        with self.admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        self.engine = admin_engine(self.url)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.engine is not None:
            self.engine.dispose()
        with self.admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()

    def execute(self, sql: str, **params: Any) -> Any:
        assert self.engine is not None
        with self.engine.connect() as connection:
            result = connection.execute(sa.text(sql), params)
            return result.scalar() if result.returns_rows else result.rowcount

    def settle(self) -> None:
        """Before a timed phase: vacuum and analyze what earlier phases wrote, then checkpoint.

        A nightly run finds its tables vacuumed and analyzed; without this, autovacuum of the
        last phase's million rows competes for the two cores with the next timed phase.
        """
        self.execute("VACUUM ANALYZE")
        # Not a superuser: fine, only less reproducible.
        with contextlib.suppress(sa.exc.DBAPIError):
            self.execute("CHECKPOINT")


def fill_source(db: BenchDatabase, rows: int) -> float:
    """The 10-column source table, filled server-side; the cursor column indexed."""
    start = time.perf_counter()
    db.execute(
        f"""
        CREATE TABLE {SOURCE_TABLE} (
            id text PRIMARY KEY,
            name text NOT NULL,
            quantity integer,
            priority bigint,
            score double precision,
            ratio double precision,
            active boolean,
            category text,
            note text,
            updated_at timestamptz NOT NULL
        )"""
    )
    db.execute(
        f"""
        INSERT INTO {SOURCE_TABLE}
        SELECT 'item-' || lpad(g::text, 8, '0'),
               'Item ' || g,
               (g % 1000)::integer,
               (g::bigint * 7919) % 100000,
               (g % 10007) / 7.0,
               CASE WHEN g % 97 = 0 THEN NULL ELSE (g % 1013) / 1013.0 END,
               g % 3 <> 0,
               (ARRAY['A', 'B', 'C', 'D', 'E'])[1 + g % 5],
               CASE WHEN g % 50 = 0 THEN NULL ELSE md5(g::text) END,
               timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
        FROM generate_series(1, :rows) AS g""",
        rows=rows,
    )
    db.execute(f"CREATE INDEX {SOURCE_TABLE}_updated_at ON {SOURCE_TABLE} (updated_at)")
    db.execute(f"VACUUM ANALYZE {SOURCE_TABLE}")
    return time.perf_counter() - start


def change_one_percent(db: BenchDatabase, rows: int) -> int:
    """Touch every 100th row: a new updated_at and two changed values."""
    changed = int(
        db.execute(
            f"""
            UPDATE {SOURCE_TABLE}
               SET updated_at = now(), score = score + 1, note = 'changed ' || id
             WHERE id IN (SELECT 'item-' || lpad(g::text, 8, '0')
                            FROM generate_series(1, :rows, {CHANGED_EVERY}) AS g)""",
            rows=rows,
        )
    )
    # The engine reads up to the run's start truncated to the second: start in a later second.
    time.sleep(1.1)
    return changed


def newest_change(db: BenchDatabase) -> datetime:
    newest = db.execute(f"SELECT max(updated_at) FROM {SOURCE_TABLE}")
    assert isinstance(newest, datetime)
    return newest


def rows_since(db: BenchDatabase, since: datetime) -> int:
    """What a read from ``since`` returns (the incremental run reads cursor - overlap on)."""
    return int(
        db.execute(f"SELECT count(*) FROM {SOURCE_TABLE} WHERE updated_at >= :since", since=since)
    )


# --- the scenarios ------------------------------------------------------------------------


@dataclass
class Figures:
    phases: list[PhaseResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    json: dict[str, Any] = field(default_factory=dict)


def ratio_or_none(value: float, ceiling: float) -> float | None:
    return round(value / ceiling, 3) if ceiling else None


def paired_ratios(ends: Sequence[PhaseResult], ceilings: Sequence[PhaseResult]) -> list[float]:
    """Round by round: each end-to-end run's rows/s over its own ceiling's."""
    return [
        round(end.rows_per_s / ceiling.rows_per_s, 3)
        for end, ceiling in zip(ends, ceilings, strict=True)
        if ceiling.rows_per_s
    ]


def upper_median(values: Sequence[float]) -> float | None:
    """As ``median_phase``: the upper median for an even count."""
    return sorted(values)[len(values) // 2] if values else None


def postgres_scenarios(args: argparse.Namespace, workdir: Path, figures: Figures) -> None:
    rows: int = args.rows
    with BenchDatabase(args.postgres_url) as db:
        progress(f"PostgreSQL: filling {db.name}.{SOURCE_TABLE} with {rows:,} rows")
        fill_s = fill_source(db, rows)
        figures.notes.append(
            f"source fill ({rows:,} rows, INSERT ... SELECT generate_series + index + VACUUM "
            f"ANALYZE): {fill_s:.1f} s"
        )
        figures.json["postgres_source_fill_s"] = round(fill_s, 2)

        def job(label: str, table: str, batch: int, **kwargs: Any) -> SqlJob:
            return SqlJob(
                label=label,
                source_url=db.url,
                target_url=db.url,
                target_table=table,
                ledger_path=str(workdir / f"ledger_{table}.db"),
                integration="bench-items",
                batch_size=batch,
                **kwargs,
            )

        if "pg" in args.scenarios:
            candidates = [args.batch_size] if args.batch_size else list(BATCH_CANDIDATES)
            full_runs: dict[int, PhaseResult] = {}
            for batch in candidates:
                db.settle()
                progress(f"1(a) PostgreSQL full run, batch_size {batch:,}")
                full_runs[batch] = in_subprocess(
                    run_sql_job,
                    job(
                        f"1a pg full (batch {batch:,})",
                        f"reporting_items_{batch}",
                        batch,
                        expect={"read": rows, "created": rows},
                    ),
                )
                progress(f"   {full_runs[batch].rows_per_s:,.0f} rows/s")
            chosen = max(full_runs, key=lambda b: full_runs[b].rows_per_s)
            figures.phases.extend(full_runs.values())
            table = f"reporting_items_{chosen}"
            if len(candidates) > 1:
                figures.notes.append(
                    f"batch_size chosen by measurement: {chosen:,} ("
                    + ", ".join(f"{b:,}: {r.rows_per_s:,.0f} rows/s" for b, r in full_runs.items())
                    + ")"
                )

            def ceiling(
                kind: Literal["copy", "merge"],
                method: CeilingMethod,
                rows_table: str,
                target: str,
                label: str,
            ) -> PhaseResult:
                db.settle()
                progress(f"{label}: {rows:,} rows of {rows_table} into {target}")
                sample = in_subprocess(
                    run_ceiling_job,
                    CeilingJob(label, db.url, rows_table, target, kind, method, rows),
                )
                progress(f"   {sample.rows_per_s:,.0f} rows/s")
                figures.phases.append(sample)
                return sample

            # Rounds of full load, COPY ceiling, rerun, merge ceiling, so that the machine's
            # load moves end-to-end figures and their ceilings alike; each figure is the median
            # of --repeat, since a single run on a shared 2-core machine varies by +-20%. The
            # first round's full load is the batch-size candidates' winner, and its COPY
            # ceiling tries each COPY method once: the faster is used from then on.
            methods = CEILING_METHODS if args.ceiling_method == "auto" else (args.ceiling_method,)
            full_samples: list[PhaseResult] = []
            copy_samples: list[PhaseResult] = []
            rerun_samples: list[PhaseResult] = []
            merge_samples: list[PhaseResult] = []
            method: CeilingMethod = methods[0]
            for repeat in range(1, args.repeat + 1):
                suffix = "" if repeat == 1 else f" #{repeat}"
                full_table = table if repeat == 1 else f"{table}_{repeat}"
                if repeat == 1:
                    full_samples.append(full_runs[chosen])
                    probes = {
                        m: ceiling(
                            "copy", m, full_table, f"ceiling_copy_1_{m}", f"1a ceiling: COPY ({m})"
                        )
                        for m in methods
                    }
                    method = max(probes, key=lambda m: probes[m].rows_per_s)
                    for m in probes:
                        if m != method:
                            db.execute(f"DROP TABLE ceiling_copy_1_{m}")
                    copy_table = f"ceiling_copy_1_{method}"
                    copy_samples.append(probes[method])
                    if len(probes) > 1:
                        figures.notes.append(
                            f"COPY ceiling method chosen by measurement: {method} ("
                            + ", ".join(
                                f"{m}: {r.rows_per_s:,.0f} rows/s" for m, r in probes.items()
                            )
                            + ")"
                        )
                        figures.json["postgres_copy_ceiling_candidates"] = {
                            m: round(r.rows_per_s) for m, r in probes.items()
                        }
                else:
                    db.settle()
                    progress(
                        f"1(a) PostgreSQL full run {repeat} of {args.repeat}, batch_size {chosen:,}"
                    )
                    sample = in_subprocess(
                        run_sql_job,
                        job(
                            f"1a pg full (batch {chosen:,}) #{repeat}",
                            full_table,
                            chosen,
                            expect={"read": rows, "created": rows},
                        ),
                    )
                    progress(f"   {sample.rows_per_s:,.0f} rows/s")
                    figures.phases.append(sample)
                    full_samples.append(sample)
                    copy_table = f"ceiling_copy_{repeat}"
                    copy_samples.append(
                        ceiling(
                            "copy",
                            method,
                            full_table,
                            copy_table,
                            f"1a ceiling: COPY ({method}){suffix}",
                        )
                    )

                db.settle()
                progress(
                    f"1(b) PostgreSQL rerun {repeat} of {args.repeat}, nothing changed, "
                    f"batch_size {chosen:,}"
                )
                sample = in_subprocess(
                    run_sql_job,
                    job(
                        f"1b pg rerun unchanged{suffix}",
                        full_table,
                        chosen,
                        full_refresh=True,
                        expect={"read": rows, "created": 0, "updated": 0, "unchanged": rows},
                    ),
                )
                progress(f"   {sample.rows_per_s:,.0f} rows/s")
                figures.phases.append(sample)
                rerun_samples.append(sample)
                merge_samples.append(
                    ceiling(
                        "merge",
                        method,
                        full_table,
                        copy_table,
                        f"1b ceiling: COPY + merge ({method}){suffix}",
                    )
                )
                db.execute(f"DROP TABLE {copy_table}")
            full = median_phase(full_samples)
            rerun = median_phase(rerun_samples)
            copy_ceiling = median_phase(copy_samples)
            merge_ceiling = median_phase(merge_samples)

            incremental_samples = []
            for repeat in range(1, args.repeat + 1):
                cursor = newest_change(db)
                changed = change_one_percent(db, rows)
                expected_read = rows_since(db, cursor - OVERLAP)
                db.settle()
                progress(
                    f"1(c) PostgreSQL incremental {repeat} of {args.repeat}: "
                    f"{changed:,} rows changed"
                )
                sample = in_subprocess(
                    run_sql_job,
                    job(
                        "1c pg incremental 1%" + (f" #{repeat}" if repeat > 1 else ""),
                        table,
                        chosen,
                        expect={"read": expected_read, "created": 0, "updated": changed},
                    ),
                )
                figures.phases.append(sample)
                incremental_samples.append(sample)
            incremental = median_phase(incremental_samples)

            def seconds(samples: Sequence[PhaseResult]) -> str:
                return ", ".join(f"{p.seconds:.2f}" for p in samples) + " s"

            # Each round's end-to-end run against its own ceiling, taken minutes apart at most:
            # the median of these ratios, not the ratio of two medians that may come from
            # different rounds (and so from different loads on the machine).
            full_vs_copy = paired_ratios(full_samples, copy_samples)
            rerun_vs_merge = paired_ratios(rerun_samples, merge_samples)
            figures.notes.append(
                f"medians of {args.repeat}: full {seconds(full_samples)}; COPY ceiling "
                f"{seconds(copy_samples)}; rerun {seconds(rerun_samples)}; merge ceiling "
                f"{seconds(merge_samples)}; incremental {seconds(incremental_samples)}"
            )
            figures.notes.append(
                f"round by round: full/COPY ceiling {', '.join(f'{r:.2f}' for r in full_vs_copy)}"
                f"; rerun/merge ceiling {', '.join(f'{r:.2f}' for r in rerun_vs_merge)} "
                f"(ratios of the medians: {ratio_or_none(full.rows_per_s, copy_ceiling.rows_per_s)}"
                f", {ratio_or_none(rerun.rows_per_s, merge_ceiling.rows_per_s)})"
            )
            ratio = incremental.seconds / full.seconds
            figures.json.update(
                postgres_batch_size=chosen,
                postgres_full_rows_per_s=round(full.rows_per_s),
                postgres_full_seconds=round(full.seconds, 2),
                postgres_rerun_rows_per_s=round(rerun.rows_per_s),
                postgres_rerun_seconds=round(rerun.seconds, 2),
                postgres_incremental_seconds=round(incremental.seconds, 3),
                postgres_incremental_rows_read=incremental.read,
                postgres_incremental_time_ratio=round(ratio, 4),
                postgres_full_peak_rss_mb=round(full.peak_rss_mb, 1),
                postgres_batch_candidates={
                    str(b): round(r.rows_per_s) for b, r in full_runs.items()
                },
                postgres_copy_ceiling_method=method,
                postgres_copy_ceiling_rows_per_s=round(copy_ceiling.rows_per_s),
                postgres_copy_ceiling_seconds=round(copy_ceiling.seconds, 2),
                postgres_merge_ceiling_rows_per_s=round(merge_ceiling.rows_per_s),
                postgres_merge_ceiling_seconds=round(merge_ceiling.seconds, 2),
                postgres_full_vs_copy=upper_median(full_vs_copy),
                postgres_rerun_vs_merge=upper_median(rerun_vs_merge),
                postgres_full_vs_copy_rounds=full_vs_copy,
                postgres_rerun_vs_merge_rounds=rerun_vs_merge,
            )
            batch_for_sqlite = chosen
        else:
            batch_for_sqlite = args.batch_size or BATCH_CANDIDATES[0]

        if "sqlite" in args.scenarios:
            db.settle()
            progress(f"2 PostgreSQL -> SQLite full run, batch_size {batch_for_sqlite:,}")
            sqlite_job = SqlJob(
                label=f"2 pg -> sqlite full (batch {batch_for_sqlite:,})",
                source_url=db.url,
                target_url=f"sqlite:///{workdir / 'reporting.db'}",
                target_table="reporting_items",
                ledger_path=str(workdir / "ledger_sqlite.db"),
                integration="bench-items-sqlite",
                batch_size=batch_for_sqlite,
                expect={"read": rows, "created": rows},
            )
            sqlite = in_subprocess(run_sql_job, sqlite_job)
            figures.phases.append(sqlite)
            figures.json.update(
                sqlite_full_rows_per_s=round(sqlite.rows_per_s),
                sqlite_full_seconds=round(sqlite.seconds, 2),
                sqlite_full_peak_rss_mb=round(sqlite.peak_rss_mb, 1),
            )


def servicenow_scenarios(args: argparse.Namespace, workdir: Path, figures: Figures) -> None:
    transports: list[Literal["loopback", "asgi"]] = ["loopback"]
    if args.servicenow_inprocess:
        transports.append("asgi")
    for transport in transports:
        label = (
            "3 servicenow -> sqlite (loopback)"
            if transport == "loopback"
            else "3x servicenow -> sqlite (in-process ASGI)"
        )
        progress(f"{label}: {args.cis:,} CIs")
        result = in_subprocess(
            run_servicenow_job,
            ServiceNowJob(label, args.cis, str(workdir / f"servicenow_{transport}"), transport),
        )
        figures.phases.append(result)
        key = "servicenow" if transport == "loopback" else "servicenow_inprocess"
        figures.json.update(
            {
                f"{key}_records_per_s": round(result.rows_per_s),
                f"{key}_seconds": round(result.seconds, 2),
                f"{key}_peak_rss_mb": round(result.peak_rss_mb, 1),
            }
        )
        figures.notes.append(
            f"{label}: sandbox seeded in {result.extra['seed_s']} s (not timed), "
            f"{result.extra['api_calls']} API calls; the sandbox lives in the measured process"
        )


# --- report -------------------------------------------------------------------------------


def table(phases: Sequence[PhaseResult]) -> str:
    headers = [
        "scenario",
        "rows",
        "seconds",
        "rows/s",
        "read s",
        "write s",
        "ledger s",
        "created",
        "updated",
        "unchanged",
        "RSS MB",
        "check",
    ]
    body = [
        [
            p.label,
            f"{p.read:,}",
            f"{p.seconds:.2f}",
            f"{p.rows_per_s:,.0f}",
            f"{p.read_s:.2f}",
            f"{p.write_s:.2f}",
            f"{p.ledger_s:.2f}",
            f"{p.created:,}",
            f"{p.updated:,}",
            f"{p.unchanged:,}",
            f"{p.peak_rss_mb:,.0f}",
            p.check,
        ]
        for p in phases
    ]
    widths = [max(len(row[i]) for row in [headers, *body]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i in (0, len(cells) - 1) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in body)])


def compact(phase: PhaseResult) -> dict[str, Any]:
    """One phase's figures for the JSON line."""
    return {
        "rows": phase.read,
        "seconds": round(phase.seconds, 3),
        "rows_per_s": round(phase.rows_per_s),
        "read_s": round(phase.read_s, 3),
        "write_s": round(phase.write_s, 3),
        "ledger_s": round(phase.ledger_s, 3),
        "created": phase.created,
        "updated": phase.updated,
        "unchanged": phase.unchanged,
        "peak_rss_mb": round(phase.peak_rss_mb, 1),
        "check": phase.check,
        **({"method": phase.extra["method"]} if "method" in phase.extra else {}),
    }


def goals(figures: dict[str, Any]) -> list[str]:
    lines = []
    full = figures.get("postgres_full_rows_per_s")
    if full is not None:
        verdict = "met" if full >= GOAL_FULL_ROWS_PER_S else "MISSED"
        lines.append(f"goal 1(a) >= {GOAL_FULL_ROWS_PER_S:,} rows/s: {full:,} rows/s -> {verdict}")
    ratio = figures.get("postgres_incremental_time_ratio")
    if ratio is not None:
        verdict = "met" if ratio <= GOAL_INCREMENTAL_RATIO else "MISSED"
        lines.append(
            f"goal incremental <= {GOAL_INCREMENTAL_RATIO:.0%} of full time: {ratio:.1%} -> "
            f"{verdict}"
        )
    return lines


def ceiling_lines(figures: dict[str, Any]) -> list[str]:
    """Each end-to-end PostgreSQL figure as a fraction of its write ceiling, same rows, same run."""
    lines = []
    for name, end, ceiling, fraction in (
        (
            "1(a) full load vs COPY ceiling",
            "postgres_full_rows_per_s",
            "postgres_copy_ceiling_rows_per_s",
            "postgres_full_vs_copy",
        ),
        (
            "1(b) rerun vs merge ceiling",
            "postgres_rerun_rows_per_s",
            "postgres_merge_ceiling_rows_per_s",
            "postgres_rerun_vs_merge",
        ),
    ):
        if figures.get(fraction) is not None:
            rounds = ", ".join(f"{r:.2f}" for r in figures[f"{fraction}_rounds"])
            lines.append(
                f"{name} ({figures['postgres_copy_ceiling_method']}): {figures[fraction]:.2f}, "
                f"the median of the rounds' {rounds} (medians: {figures[end]:,} vs "
                f"{figures[ceiling]:,} rows/s)"
            )
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="PostgreSQL source rows")
    parser.add_argument("--cis", type=int, default=50_000, help="ServiceNow sandbox CIs")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of PostgreSQL full run, COPY ceiling, rerun and merge ceiling, and "
        "incremental runs, at the chosen batch size; medians reported",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"spec batch_size for the SQL scenarios (default: the faster of "
        f"{', '.join(f'{b:,}' for b in BATCH_CANDIDATES)} on the full run)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("SYNCLINE_BENCH_POSTGRES_URL")
        or os.environ.get("SYNCLINE_TEST_POSTGRES_URL")
        or DEFAULT_POSTGRES_URL,
        help="an admin URL: the benchmark creates and drops its own database there",
    )
    parser.add_argument(
        "--scenarios",
        default="pg,sqlite,servicenow",
        type=lambda text: {part.strip() for part in text.split(",") if part.strip()},
        help="comma-separated subset of pg, sqlite, servicenow",
    )
    parser.add_argument(
        "--ceiling-method",
        choices=("auto", *CEILING_METHODS),
        default="auto",
        help="how the PostgreSQL write ceilings COPY: ADBC adbc_ingest from Arrow, psycopg "
        "write_row in FORMAT BINARY, or auto (try both once, use the faster)",
    )
    parser.add_argument(
        "--no-servicenow-inprocess",
        dest="servicenow_inprocess",
        action="store_false",
        help="skip the extra in-process (ASGITransport) ServiceNow run",
    )
    args = parser.parse_args(argv)
    unknown = args.scenarios - {"pg", "sqlite", "servicenow"}
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.batch_size is not None and not 1 <= args.batch_size <= 1_000_000:
        parser.error("--batch-size must be between 1 and 1,000,000 (the spec's limits)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_logs()
    started = datetime.now(UTC)
    figures = Figures()
    figures.json.update(
        postgres_full_rows_per_s=None,
        postgres_incremental_time_ratio=None,
        postgres_copy_ceiling_rows_per_s=None,
        postgres_merge_ceiling_rows_per_s=None,
        postgres_full_vs_copy=None,
        postgres_rerun_vs_merge=None,
        sqlite_full_rows_per_s=None,
        servicenow_records_per_s=None,
    )
    with tempfile.TemporaryDirectory(prefix="syncline-bench-") as tmp:
        workdir = Path(tmp)
        if args.scenarios & {"pg", "sqlite"}:
            unreachable = postgres_reachable(args.postgres_url)
            if unreachable is None:
                postgres_scenarios(args, workdir, figures)
            else:
                message = (
                    f"PostgreSQL scenarios skipped: {sa.make_url(args.postgres_url)!r} is "
                    f"unreachable ({unreachable})"
                )
                progress(message)
                figures.notes.append(message)
        if "servicenow" in args.scenarios:
            servicenow_scenarios(args, workdir, figures)

    # The engine's phases only: a ceiling holds all the rows in memory at once, by design.
    peak = max([rss_mb(), *(p.peak_rss_mb for p in figures.phases if "ceiling" not in p.extra)])
    figures.json.update(
        peak_rss_mb=round(peak, 1),
        rows=args.rows,
        cis=args.cis,
        cpus=os.cpu_count(),
        python=platform.python_version(),
        date=started.date().isoformat(),
        phases={p.label: compact(p) for p in figures.phases},
    )
    elapsed = (datetime.now(UTC) - started).total_seconds()
    print(
        f"Syncline sync benchmark - {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {elapsed:.0f} s in all"
    )
    print()
    print(table(figures.phases))
    print()
    print(
        "read s = time spent waiting for the source's next batch (the engine reads one batch "
        "ahead, so most reading hides behind writing); write s = target prepare + upserts; "
        "ledger s = ledger calls. RSS = the phase process's peak (ru_maxrss), each phase in "
        "its own spawned process."
    )
    for note in figures.notes:
        print(f"- {note}")
    for line in goals(figures.json):
        print(f"* {line}")
    for line in ceiling_lines(figures.json):
        print(f"* {line}")
    print(f"peak RSS over all phases: {peak:,.0f} MB")
    print(json.dumps(figures.json, default=str, separators=(",", ":")))
    failed = [p.label for p in figures.phases if p.check != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
