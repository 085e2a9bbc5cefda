"""The `spark` dbt target: a Spark session's settings, and the dbt sources copied into it.

The billing models run unchanged on Spark (dbt-spark, `method: session`, a local Spark from
the pyspark wheel). Events land in PostgreSQL here; `load_sources` copies every table the dbt
project declares as a source into Spark as a Parquet table of the same schema and name:
PostgreSQL `numeric` becomes `decimal(38, 20)`, `timestamptz` a UTC `timestamp`, `jsonb` its
text, and the infinite timestamps 9000-01-01 and 0001-01-01 (Spark has no infinities).
Amounts and prices have far fewer decimals (ingest allows 12); only the fractions of a month
that finalized prorated lines show as quantities have more, and those are rounded half up to
20 decimals (their amounts are integers in minor units).

A copy is made only when the sources changed: `sources.json` beside the Spark warehouse
holds the stamp (`sources_stamp`) of what the last copy copied and of what the last daily
build on Spark read, so a run on unchanged sources neither copies nor (the monthly run's
catch-up) builds the days again.

The local metastore admits one JVM at a time, so everything that opens a Spark session (the
copy, the queries, dbt's commands) runs in the Spark worker of these session settings
(orchestration/dbt_worker.py): one JVM, started by the first of them and kept warm for the
next, never one in the calling process. `python -m warehouse.spark` hands itself to that
worker; with ``BILLING_DBT_WORKER=false`` it runs here, in a JVM of its own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import yaml

from warehouse.db import connect
from warehouse.settings import DBT_PROJECT_DIR, Settings, get_settings

SOURCES_FILE = DBT_PROJECT_DIR / "models" / "staging" / "raw" / "_raw__sources.yml"
LOG_CONFIG = Path(__file__).resolve().parent / "spark_log4j2.properties"
# the stamps of the sources last copied and last built from, in the Spark directory
STATE_FILE = "sources.json"
DECIMAL_SCALE = 20
INFINITY = "9000-01-01 00:00:00"  # spark__ts_infinity in dbt_project/macros/portable.sql
MINUS_INFINITY = "0001-01-01 00:00:00"
DECIMAL_TYPE = f"decimal(38, {DECIMAL_SCALE})"
SPARK_TYPES = {
    "text": "string",
    "jsonb": "string",
    "numeric": DECIMAL_TYPE,
    "bigint": "bigint",
    "integer": "int",
    "boolean": "boolean",
    "date": "date",
    "timestamp with time zone": "timestamp",
}


class SparkLoadError(RuntimeError):
    """A source table cannot be copied into Spark exactly; the message names it."""


# A JVM kept warm compiles more of Spark's code than one that runs a single command: with
# `-XX:TieredStopAtLevel=1` its code cache is 48 MB unless reserved, and a warm JVM filled
# it in a monthly build ("Out of space in CodeCache"). 240 MB is the JVM's own default with
# both compilers; BILLING_SPARK_JVM_OPTIONS comes after, so it can say otherwise.
CODE_CACHE = "-XX:ReservedCodeCacheSize=240m"
# the variables profiles.yml reads the session's settings from, by the setting's name
SESSION_VARIABLES = {
    "spark.master": "BILLING_SPARK_MASTER",
    "spark.sql.warehouse.dir": "BILLING_SPARK_WAREHOUSE",
    "spark.hadoop.javax.jdo.option.ConnectionURL": "BILLING_SPARK_METASTORE",
    "spark.driver.memory": "BILLING_SPARK_DRIVER_MEMORY",
    "spark.driver.extraJavaOptions": "BILLING_SPARK_JAVA_OPTIONS",
    "spark.sql.shuffle.partitions": "BILLING_SPARK_SHUFFLE_PARTITIONS",
}
# the variable naming the local metastore, which admits one JVM (orchestration/dbt_worker.py)
METASTORE_VARIABLE = SESSION_VARIABLES["spark.hadoop.javax.jdo.option.ConnectionURL"]


def spark_conf(settings: Settings | None = None) -> dict[str, str]:
    """The Spark session settings of the `spark` target (profiles.yml reads the same values
    from the BILLING_SPARK_* variables of `session_env`)."""
    settings = settings or get_settings()
    home = settings.spark_dir
    return {
        "spark.master": settings.spark_master,
        "spark.sql.warehouse.dir": str(home / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={home / 'metastore_db'};create=true"
        ),
        "spark.driver.memory": settings.spark_driver_memory,
        # Hive would leave a new `<session id>_resources` directory in /tmp per session.
        "spark.driver.extraJavaOptions": (
            f"-Dderby.system.home={home} -Dlog4j2.configurationFile=file:{LOG_CONFIG} "
            f"-Dhive.downloaded.resources.dir={home / 'hive_resources'} {CODE_CACHE} "
            f"{settings.spark_jvm_options}"
        ).strip(),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }


def session_env(settings: Settings | None = None) -> dict[str, str]:
    """The session's settings as the variables profiles.yml reads: what fixes a Spark
    worker's JVM (orchestration/dbt_worker.py), so every caller passes them."""
    conf = spark_conf(settings)
    return {name: conf[key] for key, name in SESSION_VARIABLES.items()}


@contextmanager
def spark_session(settings: Settings | None = None, *, keep: bool = False) -> Iterator[Any]:
    """A Spark session with the target's settings (dbt's, when dbt started one first in
    this process), stopped afterwards unless ``keep`` (the Spark worker's JVM serves the
    next command)."""
    from pyspark.sql import SparkSession

    settings = settings or get_settings()
    settings.private_dir("spark")  # its warehouse holds copies of the raw events
    builder = SparkSession.builder.appName("billing-load").enableHiveSupport()
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    try:
        yield session
    finally:
        if not keep:
            session.stop()


def tables_exist(settings: Settings, *names: str) -> bool:
    """Whether the local Spark warehouse holds these `schema.table`s (a table is a directory
    `schema.db/table` under the warehouse directory)."""
    warehouse = Path(spark_conf(settings)["spark.sql.warehouse.dir"])
    return all(
        (warehouse / f"{schema}.db" / table).is_dir()
        for schema, table in (name.split(".", 1) for name in names)
    )


@dataclass(frozen=True)
class SourceTable:
    schema: str
    name: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


def source_tables() -> list[SourceTable]:
    """Every table the dbt project reads, from its sources file."""
    spec = yaml.safe_load(SOURCES_FILE.read_text())
    return [
        SourceTable(source["schema"], table["name"])
        for source in spec["sources"]
        for table in source["tables"]
    ]


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str

    @property
    def spark_type(self) -> str:
        return SPARK_TYPES[self.pg_type]

    @property
    def exported(self) -> str:
        """The column as PostgreSQL writes it into the CSV: text Spark reads back exactly."""
        quoted = f'"{self.name}"'
        if self.pg_type == "timestamp with time zone":
            # Spark has no infinities: the far past and the far future of macros/portable.sql
            return (
                f"case when {quoted} = '-infinity' then '{MINUS_INFINITY}' "
                f"when {quoted} = 'infinity' then '{INFINITY}' "
                f"else to_char({quoted} at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') end"
            )
        if self.pg_type == "numeric":
            return f"round({quoted}, {DECIMAL_SCALE})::text"
        return f"{quoted}::text"


def _columns(conn: Any, table: SourceTable) -> list[Column]:
    rows = conn.execute(
        """select column_name, data_type from information_schema.columns
           where table_schema = %s and table_name = %s order by ordinal_position""",
        (table.schema, table.name),
    ).fetchall()
    if not rows:
        raise SparkLoadError(f"{table.qualified}: no such table in the warehouse")
    columns = [Column(name, pg_type) for name, pg_type in rows]
    for column in columns:
        if column.pg_type not in SPARK_TYPES:
            raise SparkLoadError(
                f"{table.qualified}.{column.name}: type {column.pg_type} has no Spark mapping"
            )
    return columns


def _run_apart(args: list[str], settings: Settings, failed: str) -> str:
    """`python -m warehouse.spark ARGS` with the target's environment (run by the Spark
    worker); its standard output. A JVM lives as long as the process that started it, and
    the local metastore admits one: this process never starts one."""
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "warehouse.spark", *args],
        env={**os.environ, **settings.as_env()},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SparkLoadError(f"{failed}:\n{result.stderr[-4000:]}")
    return result.stdout


def copy_sources(settings: Settings | None = None, stamp: str | None = None) -> bool:
    """`load_sources`, in a process of its own (`_run_apart`), unless the sources hold what
    the last copy copied (their stamp now, or ``stamp``: the caller's, taken a moment ago);
    whether it copied."""
    settings = settings or get_settings()
    if sources_unchanged_since("copied", settings, stamp):
        return False
    _run_apart([], settings, "copying the sources into Spark failed")
    return True


def sources_stamp(conn: Any) -> str:
    """What the dbt sources hold in the connection's snapshot, as one digest: each table's
    rows counted and their 64-bit hashes summed (in no order). Another digest whenever a row
    is added, changed or removed (short of a hash collision); a session's settings that
    print values otherwise (its time zone) give another digest too, which costs a copy and
    never skips one."""
    tables = source_tables()
    found = conn.execute(
        " union all ".join(
            f"select {i}, count(*), coalesce(sum(hashtextextended(source_row::text, 0)), 0) "
            f"from {table.qualified} as source_row"
            for i, table in enumerate(tables)
        )
    ).fetchall()
    digest = hashlib.sha256()
    for i, count, total in sorted(found):
        digest.update(f"{tables[i].qualified} {count} {total}\n".encode())
    return digest.hexdigest()


def _state(settings: Settings) -> dict[str, str]:
    path = settings.spark_dir / STATE_FILE
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _record(settings: Settings, **stamps: str) -> None:
    """Record stamps in the state file (written whole, then renamed over the old one)."""
    path = settings.private_dir("spark") / STATE_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(_state(settings) | stamps))
    temporary.replace(path)


def sources_unchanged_since(
    what: str, settings: Settings | None = None, stamp: str | None = None
) -> bool:
    """Whether the sources hold now (their stamp, taken here unless given) what they held at
    the last copy (``copied``) or when the last daily build on Spark read its copy
    (``built``)."""
    settings = settings or get_settings()
    recorded = _state(settings).get(what)
    if not recorded:
        return False
    if stamp is None:
        with connect(settings) as conn:
            stamp = sources_stamp(conn)
    return stamp == recorded


def record_built(settings: Settings | None = None) -> None:
    """After a daily build on Spark: it read the last copy, whose stamp it now holds."""
    settings = settings or get_settings()
    copied = _state(settings).get("copied")
    if copied:
        _record(settings, built=copied)


# how the copy writes a null, apart from an empty text (Spark's CSV reader takes an empty
# field, quoted or not, for null by default); a text that is exactly \N would read as null
CSV_NULL = "\\N"


def load_sources(
    settings: Settings | None = None,
    progress: Callable[[SourceTable, int], None] | None = None,
    *,
    keep_session: bool = False,
) -> dict[str, int]:
    """Copy every dbt source table from PostgreSQL into Spark (Parquet tables, replaced whole),
    all from one snapshot, and record its stamp; return the rows copied per table."""
    settings = settings or get_settings()
    tables = source_tables()
    copied: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="billing-spark-") as tmp, connect(settings) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        stamp = sources_stamp(conn)
        exports: list[tuple[SourceTable, list[Column], Path]] = []
        for table in tables:
            columns = _columns(conn, table)
            path = Path(tmp) / f"{table.schema}.{table.name}.csv"
            select = ", ".join(column.exported for column in columns)
            with path.open("wb") as out, conn.cursor() as cursor:
                with cursor.copy(
                    f"copy (select {select} from {table.qualified}) to stdout "
                    # null as a marker of its own: an empty text stays empty (a CSV reader
                    # takes an empty field, quoted or not, for null)
                    f"with (format csv, force_quote *, null '{CSV_NULL}')"
                ) as copy:
                    for chunk in copy:
                        out.write(chunk)
                copied[table.qualified] = cursor.rowcount
            exports.append((table, columns, path))
        # a copy cut short leaves some tables replaced: no stamp holds until it ends
        _record(settings, copied="", built="")
        with spark_session(settings, keep=keep_session) as spark:
            for schema in sorted({table.schema for table in tables}):
                spark.sql(f"create database if not exists {schema}")
            for table, columns, path in exports:
                frame = (
                    spark.read.option("quote", '"')
                    .option("escape", '"')
                    .option("nullValue", CSV_NULL)
                    .option("multiLine", "true")
                    .schema(", ".join(f"`{c.name}` string" for c in columns))
                    .csv(str(path))
                )
                typed = frame.selectExpr(
                    *(f"cast(`{c.name}` as {c.spark_type}) as `{c.name}`" for c in columns)
                )
                spark.sql(f"drop table if exists {table.qualified}")
                typed.write.format("parquet").saveAsTable(table.qualified)
                if progress:
                    progress(table, copied[table.qualified])
    _record(settings, copied=stamp)
    return copied


def _encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, datetime):
        # pyspark gives naive local times: make them the instants they are
        return {"instant": (value if value.tzinfo else value.astimezone()).isoformat()}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    raise TypeError(f"cannot encode {type(value).__name__}")


def _decode(found: dict[str, Any]) -> Any:
    if found.keys() == {"decimal"}:
        return Decimal(found["decimal"])
    if found.keys() == {"instant"}:
        return datetime.fromisoformat(found["instant"]).astimezone(UTC)
    if found.keys() == {"date"}:
        return date.fromisoformat(found["date"])
    return found


def query(sql: str, settings: Settings | None = None) -> list[dict[str, Any]]:
    """The rows of a query on the Spark target, exact types kept, from a process of its own
    (`_run_apart`)."""
    return queries([sql], settings)[0]


def queries(statements: list[str], settings: Settings | None = None) -> list[list[dict[str, Any]]]:
    """The rows of each query, from one process (one Spark session) for them all."""
    args = [part for sql in statements for part in ("--query", sql)]
    out = _run_apart(args, settings or get_settings(), "the Spark query failed")
    found: list[list[dict[str, Any]]] = json.loads(
        out.strip().splitlines()[-1], object_hook=_decode
    )
    return found


def end_worker(settings: Settings | None = None) -> bool:
    """End the Spark worker of these settings and its JVM, if one runs (after the command it
    may be running); whether one did."""
    from orchestration import dbt_worker
    from orchestration.dbt_run import environment

    with environment(session_env(settings)):
        return dbt_worker.end_spark_worker()


def command(argv: list[str], *, keep_session: bool = False) -> None:
    """Copy the sources, or print the rows of the queries given, in this process (the Spark
    worker's: ``keep_session``, its session serves the next command)."""
    parser = argparse.ArgumentParser(description="Copy the dbt sources into Spark, or query it.")
    parser.add_argument(
        "--query",
        action="append",
        help="Print the rows of each query given (a list per query) as one line of JSON instead.",
    )
    args = parser.parse_args(argv)
    if args.query:
        with spark_session(keep=keep_session) as spark:
            found = [[row.asDict() for row in spark.sql(sql).collect()] for sql in args.query]
        print(json.dumps(found, default=_encode))
        return
    for name, rows_copied in load_sources(keep_session=keep_session).items():
        print(f"{name}: {rows_copied} rows")


def main() -> None:
    """`python -m warehouse.spark`: in the Spark worker of these settings, else here."""
    from orchestration import dbt_worker

    argv = sys.argv[1:]
    # by hand too, the worker `billing run`'s commands use: it is keyed by these settings
    os.environ.update({"BILLING_DBT_TARGET": "spark", **session_env()})
    if dbt_worker.wanted():
        code = dbt_worker.run(argv, dbt_worker.SPARK, DBT_PROJECT_DIR)
        if code is not None:
            sys.exit(code)
    else:
        dbt_worker.refuse_beside_spark_worker()
    command(argv)


if __name__ == "__main__":
    main()
