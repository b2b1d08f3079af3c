"""Load: replace an hour window of `raw.llm_calls` with what its landing files hold,
quarantining every line the validation rejects (`raw.llm_calls_rejected`).

A window is replaced in one transaction: `raw.llm_calls`, `raw.llm_calls_rejected` and
`raw.load_log` rows of its hours are deleted and re-inserted, so a crash leaves the previous
state and a re-run is safe. Lines read = rows loaded + rows rejected, per file (the load log).

The files are streamed: lines go to DuckDB in batches of `BATCH_LINES`, each validated and
inserted before the next is read, so memory does not grow with the window. `event_id` is unique
in all of raw.llm_calls: each batch is checked against what the table holds (other hours, and
the batches before it), so a one-hour run and a 28-day backfill apply the same rule.

**Hours whose files are gone keep their rows.** An hour of the window with no landing file left
whose rows were loaded before (a volume not mounted, a retention job) is not emptied: its rows
stay, its load-log rows are marked `landing_files_missing`, and the raw data-quality suite fails
for it. Only `allow_empty=True` (`spendwatch materialize --allow-empty`,
`SPENDWATCH_ALLOW_EMPTY_RELOAD=1`, or the asset's `allow_empty_reload` config) deletes them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np

from orchestration.lib.ingest.landing import (
    MAX_STORED_LINE_CHARS,
    LandingFile,
    landing_files,
)
from orchestration.lib.ingest.validate import validate_sql
from orchestration.lib.quality_ddl import CHECK_RESULTS_DDL
from spendwatch.schema import WAREHOUSE_COLUMNS
from spendwatch.warehouse import open_warehouse

log = logging.getLogger(__name__)

BATCH_LINES = 50_000
#: DuckDB's memory for a load: past it, the rows the transaction inserted go to the database
#: file instead of staying in memory, so a 28-day backfill does not hold the window in RAM.
#: `SPENDWATCH_INGEST_MEMORY_LIMIT` overrides it (a DuckDB size: 2GB, 512MB).
DEFAULT_MEMORY_LIMIT = "512MB"
MISSING = "landing_files_missing"

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
    loaded_at timestamp not null,
    file_error varchar
);
-- warehouses created before file_error existed
alter table raw.load_log add column if not exists file_error varchar;
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
    #: hours left as they were because their landing files are gone -> rows kept
    kept_hours: dict[datetime, int] = field(default_factory=dict)
    #: file -> why it could not be read to its end (also in raw.load_log.file_error)
    file_errors: dict[str, str] = field(default_factory=dict)

    def warnings(self) -> list[str]:
        """One line per kept hour and per broken file, for logs and the CLI."""
        kept = [
            f"landing files for {hour:%Y-%m-%dT%H} are missing; {rows} rows kept "
            "(materialize with --allow-empty, or SPENDWATCH_ALLOW_EMPTY_RELOAD=1, to delete them)"
            for hour, rows in sorted(self.kept_hours.items())
        ]
        return kept + [f"quarantined file {error}" for error in self.file_errors.values()]


class _Batch:
    """Lines read but not yet validated, as the columns DuckDB takes."""

    def __init__(self) -> None:
        self.sources, self.hours, self.numbers, self.texts, self.flags = [], [], [], [], []

    def add(self, source: str, hour: datetime, number: int, text: str, flag: str | None) -> None:
        self.sources.append(source)
        self.hours.append(hour)
        self.numbers.append(number)
        self.texts.append(text)
        self.flags.append(flag)

    def __len__(self) -> int:
        return len(self.texts)

    def table(self) -> dict:
        return {
            "source_file": np.array(self.sources, dtype=object),
            "partition_hour": np.array(self.hours, dtype="datetime64[us]"),
            "line_number": np.array(self.numbers, dtype=np.int64),
            "line": np.array(self.texts, dtype=object),
            "read_error": np.array(self.flags, dtype=object),
        }


def connect(warehouse: Path) -> duckdb.DuckDBPyConnection:
    """The warehouse for writing, created with the raw tables; waits while another process
    holds its lock (spendwatch.warehouse.open_warehouse), saying who."""
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    con = open_warehouse(warehouse)
    con.execute("set TimeZone = 'UTC'")
    con.execute("set enable_progress_bar = false")
    con.execute(DDL)
    con.execute(CHECK_RESULTS_DDL)  # dbt reads ops.check_results as a source from the start
    return con


def _memory_limit() -> str:
    limit = (os.environ.get("SPENDWATCH_INGEST_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT).strip()
    if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", limit, re.IGNORECASE):
        raise ValueError(
            f"SPENDWATCH_INGEST_MEMORY_LIMIT={limit!r} is not a size such as 512MB or 2GB"
        )
    return limit


def load_window(
    warehouse: Path,
    landing: Path,
    start: datetime,
    end: datetime,
    now: datetime | None = None,
    before_commit: Iterable | None = None,
    allow_empty: bool = False,
) -> LoadResult:
    """Replace the hours [start, end) of the raw tables with what the landing files hold.

    Hours without landing files whose rows were loaded before keep them unless `allow_empty`.
    `before_commit` are callables run inside the transaction just before COMMIT (tests use
    one to kill the process there and prove a crash leaves the previous state).
    """
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    files = landing_files(landing, start, end)
    lo, hi = start.replace(tzinfo=None), end.replace(tzinfo=None)
    with_files = sorted({hour.replace(tzinfo=None) for hour, _ in files})
    con = connect(warehouse)
    try:
        con.execute(f"set memory_limit = '{_memory_limit()}'")
        con.execute("begin transaction")
        kept: dict[datetime, int] = {}
        if not allow_empty:
            kept = dict(
                con.execute(
                    """
                    select log.partition_hour, coalesce(calls.n, 0)
                    from (select distinct partition_hour from raw.load_log
                          where partition_hour >= $lo and partition_hour < $hi) as log
                    left join (select partition_hour, count(*) as n from raw.llm_calls
                               where partition_hour >= $lo and partition_hour < $hi
                               group by 1) as calls using (partition_hour)
                    where not list_contains($with_files, log.partition_hour)
                    """,
                    {"lo": lo, "hi": hi, "with_files": with_files},
                ).fetchall()
            )
        keep = sorted(kept)
        for name in ("llm_calls", "llm_calls_rejected", "load_log"):
            con.execute(
                f"delete from raw.{name} where partition_hour >= ? and partition_hour < ? "
                "and not list_contains(?, partition_hour)",
                [lo, hi, keep],
            )
        if keep:
            con.execute(
                f"update raw.load_log set file_error = '{MISSING}' "
                "where list_contains(?, partition_hour)",
                [keep],
            )
        entries, batch = [], _Batch()
        for hour, path in files:
            source, naive_hour = str(path), hour.replace(tzinfo=None)
            landing_file = LandingFile(hour, path)
            for number, text, flag in landing_file.lines():
                batch.add(source, naive_hour, number, text, flag)
                if len(batch) >= BATCH_LINES:
                    _load_batch(con, batch, now)
                    batch = _Batch()
            entries.append(landing_file.log_entry())
        if len(batch):
            _load_batch(con, batch, now)
        counts, by_reason = _counts(con, lo, hi, keep)
        for entry in entries:
            loaded, rejected = counts.get(entry["source_file"], (0, 0))
            con.execute(
                "insert into raw.load_log (partition_hour, source_file, size_bytes, modified_at, "
                "checksum, lines, loaded, rejected, loaded_at, file_error) "
                "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [entry["partition_hour"], entry["source_file"], entry["size_bytes"],
                 entry["modified_at"], entry["checksum"], loaded + rejected, loaded, rejected,
                 now, entry["file_error"]],
            )  # fmt: skip
        for hook in before_commit or ():
            hook()
        con.execute("commit")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("rollback")
        raise
    finally:
        con.close()
    result = LoadResult(
        start,
        end,
        len(files),
        sum(a + b for a, b in counts.values()),
        sum(a for a, _ in counts.values()),
        sum(b for _, b in counts.values()),
        by_reason,
        kept_hours={hour.replace(tzinfo=UTC): n for hour, n in kept.items()},
        file_errors={e["source_file"]: e["file_error"] for e in entries if e["file_error"]},
    )
    for warning in result.warnings():
        log.warning(warning)
    return result


def _counts(con, lo: datetime, hi: datetime, keep: list[datetime]) -> tuple[dict, dict]:
    """Rows loaded and rejected per file of the window (the kept hours left out), and the
    rejected rows per reason."""
    window = (
        "partition_hour >= $lo and partition_hour < $hi "
        "and not list_contains($keep, partition_hour)"
    )
    params = {"lo": lo, "hi": hi, "keep": keep}
    counts = {
        source: (loaded, rejected)
        for source, loaded, rejected in con.execute(
            f"""
            select source_file, sum(loaded)::bigint, sum(rejected)::bigint from (
                select source_file, count(*) as loaded, 0 as rejected
                from raw.llm_calls where {window} group by 1
                union all
                select source_file, 0, count(*) from raw.llm_calls_rejected where {window}
                group by 1
            ) group by 1
            """,
            params,
        ).fetchall()
    }
    by_reason = dict(
        con.execute(
            f"select reason, count(*) from raw.llm_calls_rejected where {window} "
            "group by 1 order by 2 desc, 1",
            params,
        ).fetchall()
    )
    return counts, by_reason


def _load_batch(con, batch: _Batch, now: datetime) -> None:
    """Validate one batch of lines against the contract and raw.llm_calls as it stands in the
    transaction, and insert its rows: the rejected first, so both inserts see the same
    raw.llm_calls. (The validation runs twice rather than into a temp table: a table dropped
    inside a transaction keeps its memory until the commit, which would grow with the window.)
    """
    con.register("lines_batch", batch.table())
    try:
        validated = validate_sql(now, "lines_batch")
        con.execute(
            f"""
            insert into raw.llm_calls_rejected
            select partition_hour, source_file, line_number, final_reason, reason_detail,
                raw_event_id, left(line, {MAX_STORED_LINE_CHARS}), ?::timestamp
            from ({validated}) where final_reason is not null
            order by partition_hour, source_file, line_number
            """,
            [now],
        )
        columns = ", ".join(WAREHOUSE_COLUMNS)
        con.execute(
            f"""
            insert into raw.llm_calls
            select partition_hour, source_file, line_number, {columns}, ?::timestamp
            from ({validated}) where final_reason is null
            order by partition_hour, source_file, line_number
            """,
            [now],
        )
    finally:
        con.unregister("lines_batch")
