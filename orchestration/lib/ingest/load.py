"""Load: replace an hour window of `raw.llm_calls` with what its landing files hold,
quarantining every line the validation rejects (`raw.llm_calls_rejected`).

Two steps. **Stage**: the window's files are read (`landing`) and their lines validated once
(`validate.validate_sql`), `BATCH_CHARS` of text at a time, each batch into a temp table of its
own: its rejected lines with their reason and raw line, its valid lines typed. Duplicates are
found per batch (`validate.duplicates_sql`): against the batches before it, within itself, and
against raw.llm_calls within `validate.DUPLICATE_HORIZON` of its hours. Nothing of the
warehouse changes while staging, so a batch's working tables are freed when it is done and
memory does not grow with the window past DuckDB's limit (`SPENDWATCH_INGEST_MEMORY_LIMIT`,
512MB; beyond it the staged rows go to DuckDB's temp directory). **Replace**: one transaction
deletes the window's rows of `raw.llm_calls`, `raw.llm_calls_rejected` and `raw.load_log` and
inserts the staged ones (a statement per table), so a crash leaves the previous state and a
re-run is safe. Lines read = rows loaded + rows rejected, per file (the load log).

`event_id` is unique in raw.llm_calls within the horizon: an hourly run and a 28-day backfill
apply the same rule, and the first loaded wins. An event loaded further away than the horizon
is not looked for (the cost of a load would grow with the history otherwise): it loads twice,
and a whole-table `dbt test` (`unique` on `fct_llm_calls.event_id`) names it.

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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np

from orchestration.lib.ingest.landing import MAX_STORED_LINE_CHARS, LandingFile, landing_files
from orchestration.lib.ingest.validate import DUPLICATE_HORIZON, duplicates_sql, validate_sql
from orchestration.lib.quality_ddl import CHECK_RESULTS_DDL
from spendwatch.schema import WAREHOUSE_COLUMNS
from spendwatch.warehouse import open_warehouse

log = logging.getLogger(__name__)

#: How much landing text is split and validated in one go: about 240,000 lines of 400 bytes,
#: two of DuckDB's row groups, so both cores validate.
BATCH_CHARS = 96 << 20
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


#: Files whose lines do not reconcile: lines read <> loaded + rejected, or the raw tables hold
#: other counts than the load log says (SQL both engines run).
RECONCILE_SQL = """
with tables as (
    select source_file, count(*) as n, 0 as r from raw.llm_calls group by 1
    union all
    select source_file, 0, count(*) from raw.llm_calls_rejected group by 1
),
found as (
    select source_file, sum(n) as loaded, sum(r) as rejected
    from tables group by 1
)
select log.source_file, log.lines, log.loaded, log.rejected,
    coalesce(found.loaded, 0), coalesce(found.rejected, 0)
from raw.load_log as log
left join found using (source_file)
where log.lines <> log.loaded + log.rejected
    or log.loaded <> coalesce(found.loaded, 0)
    or log.rejected <> coalesce(found.rejected, 0)
limit 20
"""
RECONCILE_TOTALS_SQL = "select count(*), coalesce(sum(lines), 0) from raw.load_log"


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


class _Pieces:
    """Pieces of landing files read but not yet validated (`LandingFile.pieces`), as the
    columns DuckDB takes: a few rows per MiB of landing data."""

    def __init__(self) -> None:
        self.files, self.hours, self.numbers, self.texts, self.flags = [], [], [], [], []
        self.chars = 0

    def add(self, file_id: int, hour: datetime, number: int, text: str, flag: str | None) -> None:
        self.files.append(file_id)
        self.hours.append(hour)
        self.numbers.append(number)
        self.texts.append(text)
        self.flags.append(flag)
        self.chars += len(text)

    def __len__(self) -> int:
        return len(self.texts)

    def table(self) -> dict:
        return {
            "file_id": np.array(self.files, dtype=np.int32),
            "partition_hour": np.array(self.hours, dtype="datetime64[us]"),
            "first_line": np.array(self.numbers, dtype=np.int64),
            "text": np.array(self.texts, dtype=object),
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
        window = {"lo": lo, "hi": hi, "keep": keep}
        entries = _stage(con, files, now, window)
        con.execute("begin transaction")
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
        _insert(con, now)
        counts, by_reason = _counts(con, lo, hi, keep)
        if entries:
            _log(con, entries, counts, now)
        for hook in before_commit or ():
            hook()
        con.execute("commit")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("rollback")
        raise
    finally:
        con.close()  # the temp tables go with the connection
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


def _stage(con, files: list[tuple[datetime, Path]], now: datetime, window: dict) -> list[dict]:
    """Read every file of the window and validate its lines into the temp table
    `ingest_validated` (one row per line: its reason and raw line, or its typed values),
    `BATCH_CHARS` of text at a time; `ingest_files` maps file_id to source_file. Nothing of
    the warehouse changes here (the transaction that replaces the window comes after and
    reads these), so each batch's own tables are freed as soon as it is done.
    Returns the load-log entry of each file."""
    con.execute(
        "create or replace temp table ingest_files "
        "(file_id integer, source_file varchar, partition_hour timestamp)"
    )
    if files:
        con.execute(
            "insert into ingest_files select unnest($ids), unnest($names), unnest($hours)",
            {"ids": list(range(len(files))), "names": [str(path) for _, path in files],
             "hours": [hour.replace(tzinfo=None) for hour, _ in files]},
        )  # fmt: skip
    con.execute(
        "create or replace temp table ingest_lines (file_id integer, partition_hour timestamp, "
        "line_number bigint, line varchar, read_error varchar)"
    )
    validated = validate_sql(now, "ingest_lines")
    batches: list[str] = []
    con.execute(f"create or replace temp view ingest_validated as {validated} limit 0")
    entries, pieces = [], _Pieces()
    for file_id, (hour, path) in enumerate(files):
        naive_hour = hour.replace(tzinfo=None)
        landing_file = LandingFile(hour, path)
        for number, text, flag in landing_file.pieces():
            pieces.add(file_id, naive_hour, number, text, flag)
            if pieces.chars >= BATCH_CHARS:
                _validate(con, pieces, validated, window, batches)
                pieces = _Pieces()
        entries.append(landing_file.log_entry())
    if len(pieces):
        _validate(con, pieces, validated, window, batches)
    for name in ("ingest_lines", "ingest_batch_duplicates"):
        con.execute(f"drop table if exists {name}")
    return entries


def _validate(con, pieces: _Pieces, validated: str, window: dict, batches: list[str]) -> None:
    """Split a batch of pieces into lines (DuckDB splits and numbers them), validate them once
    (`validate_sql`) into a temp table of the batch's own (appending to one large table is
    slower), and mark the duplicates among its valid lines (`duplicates_sql`), which get their
    raw line like every rejected one. The view `ingest_validated` is every batch so far."""
    con.register("ingest_pieces", pieces.table())
    try:
        con.execute(
            """
            create or replace temp table ingest_lines as
            select file_id, partition_hour, first_line + i - 1 as line_number, line, read_error
            from (
                select file_id, partition_hour, first_line, read_error,
                    unnest(string_split(text, chr(10))) as line,
                    generate_subscripts(string_split(text, chr(10)), 1) as i
                from ingest_pieces
            )
            """
        )
    finally:
        con.unregister("ingest_pieces")
    batch = f"ingest_validated_{len(batches)}"
    con.execute(f"create temp table {batch} as {validated}")
    horizon = {
        "horizon_lo": min(pieces.hours) - DUPLICATE_HORIZON,
        "horizon_hi": max(pieces.hours) + timedelta(hours=1) + DUPLICATE_HORIZON,
    }
    duplicates = duplicates_sql(batch, "ingest_files", earlier="ingest_validated")
    con.execute(
        f"create or replace temp table ingest_batch_duplicates as {duplicates}", window | horizon
    )
    if con.execute("select count(*) from ingest_batch_duplicates").fetchone()[0]:
        # the duplicates (rare) become rejected lines, with the raw line and event_id as written
        con.execute(
            f"""
            update {batch} as b set
                reason = 'duplicate_event_id', reason_detail = d.reason_detail,
                raw_event_id = json_extract_string(l.line, '$."event_id"'),
                raw_line = left(l.line, {MAX_STORED_LINE_CHARS})
            from ingest_batch_duplicates as d, ingest_lines as l
            where b.file_id = d.file_id and b.line_number = d.line_number
                and l.file_id = d.file_id and l.line_number = d.line_number
            """
        )
    batches.append(batch)
    union = " union all ".join(f"select * from {name}" for name in batches)
    con.execute(f"create or replace temp view ingest_validated as {union}")


def _insert(con, now: datetime) -> None:
    """The window's lines into raw.llm_calls_rejected (with their reason) and raw.llm_calls
    (the rest): one statement each, reading what `_stage` validated."""
    con.execute(
        """
        insert into raw.llm_calls_rejected
        select v.partition_hour, f.source_file, v.line_number, v.reason, v.reason_detail,
            v.raw_event_id, v.raw_line, $now::timestamp
        from ingest_validated as v join ingest_files as f using (file_id)
        where v.reason is not null
        """,
        {"now": now},
    )
    columns = ", ".join(f"v.{name}" for name in WAREHOUSE_COLUMNS)
    con.execute(
        f"""
        insert into raw.llm_calls
        select v.partition_hour, f.source_file, v.line_number, {columns}, $now::timestamp
        from ingest_validated as v join ingest_files as f using (file_id)
        where v.reason is null
        """,
        {"now": now},
    )


def _log(con, entries: list[dict], counts: dict, now: datetime) -> None:
    """One raw.load_log row per file read, in one statement."""
    loaded = [counts.get(e["source_file"], (0, 0))[0] for e in entries]
    rejected = [counts.get(e["source_file"], (0, 0))[1] for e in entries]
    lines = [a + b for a, b in zip(loaded, rejected, strict=True)]
    columns = {name: [e[name] for e in entries] for name in entries[0]}
    con.execute(
        """
        insert into raw.load_log (partition_hour, source_file, size_bytes, modified_at,
            checksum, lines, loaded, rejected, loaded_at, file_error)
        select unnest($hours), unnest($files), unnest($sizes), unnest($modified), unnest($sums),
            unnest($lines), unnest($loaded), unnest($rejected), $now::timestamp,
            unnest($errors)
        """,
        {"hours": columns["partition_hour"], "files": columns["source_file"],
         "sizes": columns["size_bytes"], "modified": columns["modified_at"],
         "sums": columns["checksum"], "lines": lines,
         "loaded": loaded, "rejected": rejected, "now": now,
         "errors": columns["file_error"]},
    )  # fmt: skip


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
