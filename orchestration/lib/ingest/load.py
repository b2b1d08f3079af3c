"""Load: replace an hour window of `raw.llm_calls` with what its landing files hold,
quarantining every line the validation rejects (`raw.llm_calls_rejected`).

A window is replaced in one transaction: `raw.llm_calls`, `raw.llm_calls_rejected` and
`raw.load_log` rows of its hours are deleted and re-inserted, so a crash leaves the previous
state and a re-run is safe. Lines read = rows loaded + rows rejected, per file (the load log).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from orchestration.lib.ingest.landing import landing_files, line_table
from orchestration.lib.ingest.validate import validate_sql
from orchestration.lib.quality_ddl import CHECK_RESULTS_DDL
from spendwatch.schema import WAREHOUSE_COLUMNS
from spendwatch.warehouse import open_warehouse

MAX_STORED_LINE_CHARS = 4096

DDL = f"""
create schema if not exists raw;
create table if not exists raw.llm_calls (
    partition_hour timestamp not null,
    source_file varchar not null,
    line_number bigint not null,
    {", ".join(f"{name} {t}" for name, t in WAREHOUSE_COLUMNS.items())},
    loaded_at timestamp not null
);
create table if not exists raw.llm_calls_rejected (
    partition_hour timestamp not null,
    source_file varchar not null,
    line_number bigint not null,
    reason varchar not null,
    reason_detail varchar,
    event_id varchar,
    raw_line varchar,
    rejected_at timestamp not null
);
create table if not exists raw.load_log (
    partition_hour timestamp not null,
    source_file varchar not null,
    size_bytes bigint not null,
    modified_at timestamp not null,
    checksum varchar not null,
    lines bigint not null,
    loaded bigint not null,
    rejected bigint not null,
    loaded_at timestamp not null
);
"""


@dataclass(frozen=True)
class LoadResult:
    start: datetime
    end: datetime
    files: int
    lines: int
    loaded: int
    rejected: int
    rejected_by_reason: dict[str, int]


def connect(warehouse: Path) -> duckdb.DuckDBPyConnection:
    """The warehouse for writing, created with the raw tables; waits while another process
    holds its lock (spendwatch.warehouse.open_warehouse), saying who."""
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    con = open_warehouse(warehouse, on_wait=_waiting)
    con.execute("set TimeZone = 'UTC'")
    con.execute("set enable_progress_bar = false")
    con.execute(DDL)
    con.execute(CHECK_RESULTS_DDL)  # dbt reads ops.check_results as a source from the start
    return con


def _waiting(holder: str) -> None:
    logging.getLogger("spendwatch.ingest").warning(
        f"the warehouse is locked by {holder}: the ingest waits for it"
    )


def load_window(
    warehouse: Path,
    landing: Path,
    start: datetime,
    end: datetime,
    now: datetime | None = None,
    before_commit: Iterable | None = None,
) -> LoadResult:
    """Replace the hours [start, end) of the raw tables with what the landing files hold.

    `before_commit` are callables run inside the transaction just before COMMIT (tests use
    one to kill the process there and prove a crash leaves the previous state).
    """
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    files = landing_files(landing, start, end)
    table, log = line_table(files)
    lo, hi = start.replace(tzinfo=None), end.replace(tzinfo=None)
    con = connect(warehouse)
    try:
        con.register("lines", table)
        con.execute(f"create temp table validated as {validate_sql(now)}")
        con.execute("begin transaction")
        for name in ("llm_calls", "llm_calls_rejected", "load_log"):
            con.execute(
                f"delete from raw.{name} where partition_hour >= ? and partition_hour < ?",
                [lo, hi],
            )
        columns = ", ".join(WAREHOUSE_COLUMNS)
        con.execute(
            f"""
            insert into raw.llm_calls
            select partition_hour, source_file, line_number, {columns}, ?::timestamp
            from validated where final_reason is null
            order by partition_hour, source_file, line_number
            """,
            [now],
        )
        con.execute(
            f"""
            insert into raw.llm_calls_rejected
            select partition_hour, source_file, line_number, final_reason, reason_detail,
                raw_event_id, left(line, {MAX_STORED_LINE_CHARS}), ?::timestamp
            from validated where final_reason is not null
            order by partition_hour, source_file, line_number
            """,
            [now],
        )
        counts = dict(
            (row[0], (row[1], row[2]))
            for row in con.execute(
                """select source_file, count(*) filter (where final_reason is null),
                    count(*) filter (where final_reason is not null)
                from validated group by all"""
            ).fetchall()
        )
        for entry in log:
            loaded, rejected = counts.get(entry["source_file"], (0, 0))
            con.execute(
                "insert into raw.load_log values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [entry["partition_hour"], entry["source_file"], entry["size_bytes"],
                 entry["modified_at"], entry["checksum"], loaded + rejected, loaded, rejected,
                 now],
            )  # fmt: skip
        for hook in before_commit or ():
            hook()
        con.execute("commit")
        by_reason = dict(
            con.execute(
                "select final_reason, count(*) from validated where final_reason is not null "
                "group by 1 order by 2 desc"
            ).fetchall()
        )
        loaded_total = sum(c[0] for c in counts.values())
        rejected_total = sum(c[1] for c in counts.values())
        return LoadResult(
            start, end, len(files), len(table["line"]), loaded_total, rejected_total, by_reason
        )
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("rollback")
        raise
    finally:
        con.close()
