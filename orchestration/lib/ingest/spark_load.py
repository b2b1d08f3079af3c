"""The raw load on Spark: an hour window of the landing folder read by Spark's own readers, in
parallel, into the Spark tables `raw.llm_calls`, `raw.llm_calls_rejected` and `raw.load_log`
(Parquet, partitioned by `partition_hour`), with the DuckDB ingest's rules, reason codes and
load log (`load.load_window` is its twin; docs/architecture.md, "The Spark target").

**The rules are the DuckDB ingest's, rendered for Spark.** `validate.validate_sql(now, lines,
engine="spark")` is the same rule list, reason order and details as DuckDB's; only how a line's
fields are read differs (a VARIANT from `try_parse_json` and `schema_of_variant` instead of
`json_transform` texts). The tables' columns come from `load.DDL` (and ops.check_results from
`quality_ddl.CHECK_RESULTS_DDL`), translated by `spark_tables`.

**Reading: whole files, numbered by Spark.** A plain file is read by the `binaryFile` source
(its bytes, length and SHA-256 in one read: the load log's size and checksum are of exactly the
bytes split into lines), a gzip file's text by the `text` source in `wholetext` mode (Hadoop's
codec decompresses it; its checksum is of the compressed bytes, as in DuckDB). One row per
file, so Spark splits and numbers the lines itself (`posexplode`), sees whether the last line
has its newline (`truncated_line`) and drops a byte order mark from the first line; files load
in parallel, one task per file. A file must fit in a Spark value (2 GiB), which an hourly file
of one writer does. The text is split as Spark text when it is UTF-8 (almost always), else as
ISO-8859-1 (one character per byte) and each line turned back into its bytes, so exactly the
lines with bytes that are not UTF-8 are `invalid_utf8` (and kept with U+FFFD, as in DuckDB).
A UTF-8 BOM is dropped; a UTF-16 one makes every line `invalid_utf8` and the file `not_utf8`.

**Where it differs from DuckDB** (file errors only; every line's verdict is the same):
a damaged gzip file loads none of its lines (`corrupt_gzip`; DuckDB loads those before the
damage), there is no gzip-bomb limit (`gzip_too_large`; Spark's executors bound the memory), and
a file must be under 2 GiB.

**Replacing the window.** The validated lines are checkpointed (so the inserts do not read the
tables they replace), then each table's window partitions are replaced with `insert overwrite`
in dynamic partition-overwrite mode, and the window's partitions that get no row are dropped.
Hours whose landing files are gone keep their rows (and their load-log rows are marked
`landing_files_missing`) unless `allow_empty`. Parquet tables have no transactions: a crash
between the statements can leave one table replaced and the next not; the next load replaces
them all again (a Delta table would make it one commit).

Entry point: `load_window_spark`, run with `orchestration.lib.spark.run_in_spark(
"orchestration.lib.ingest.spark_load:load_window_spark", home, start=..., end=...)`; its JSON
result becomes a `load.LoadResult` with `load_result`.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

from orchestration.lib.ingest.landing import (
    BOM,
    MAX_LINE_BYTES,
    MAX_STORED_LINE_CHARS,
    landing_files,
    partition_hours,
)
from orchestration.lib.ingest.load import DDL, MISSING, LoadResult
from orchestration.lib.ingest.validate import (
    DUPLICATE_HORIZON,
    duplicates_sql,
    literal_bounds,
    validate_sql,
)
from orchestration.lib.quality_ddl import CHECK_RESULTS_DDL
from spendwatch.config import paths
from spendwatch.schema import WAREHOUSE_COLUMNS

log = logging.getLogger(__name__)

#: DuckDB column type -> Spark column type (JSON is kept as its text, as dbt reads it)
SPARK_TYPES = {"varchar": "string", "bigint": "bigint", "integer": "int", "double": "double",
               "timestamp": "timestamp", "json": "string", "boolean": "boolean"}  # fmt: skip
PARTITION = "partition_hour"
#: Settings the load sets on its session whatever the profile says (profiles.yml sets the
#: last one for dbt too): a repeated key must reach the duplicate_key rule (not make the line
#: invalid JSON), a damaged or vanished file is the load log's business (not the job's end),
#: and an overwrite replaces only the partitions it writes.
SESSION_SETTINGS = {
    "spark.sql.variant.allowDuplicateKeys": "true",
    "spark.sql.files.ignoreCorruptFiles": "true",
    "spark.sql.files.ignoreMissingFiles": "true",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
}


def spark_tables(ddl: str, partitioned: bool = True) -> dict[str, list[tuple[str, str]]]:
    """The tables of a DuckDB DDL text (`create table if not exists <schema>.<name> (...)`) as
    {table: [(column, Spark type), ...]}, the partition column last (where Spark puts it)."""
    tables = {}
    for name, body in re.findall(r"create table if not exists ([\w.]+) \((.*?)\n\);", ddl, re.S):
        columns = []
        for part in re.split(r",\s*", re.sub(r"--[^\n]*", "", body).strip()):
            column, kind = part.split()[:2]
            columns.append((column, SPARK_TYPES[kind.lower()]))
        if partitioned:
            columns.sort(key=lambda c: c[0] == PARTITION)
        tables[name] = columns
    return tables


RAW_TABLES = spark_tables(DDL)
OPS_TABLES = spark_tables(CHECK_RESULTS_DDL, partitioned=False)


def create_tables(spark) -> None:
    """The raw tables (Parquet, partitioned by partition_hour) and ops.check_results, when
    missing (dbt's `raw` and `ops` sources)."""
    for schema in ("raw", "ops"):
        spark.sql(f"create database if not exists {schema}")
    for tables, partitioned in ((RAW_TABLES, True), (OPS_TABLES, False)):
        for name, columns in tables.items():
            spec = ", ".join(f"{c} {t}" for c, t in columns)
            part = f" partitioned by ({PARTITION})" if partitioned else ""
            spark.sql(f"create table if not exists {name} ({spec}) using parquet{part}")


def _time(value) -> datetime | None:
    """A datetime from run_in_spark's JSON (ISO text) or Python; naive means UTC."""
    if value is None or isinstance(value, datetime):
        at = value
    else:
        at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at


def _ts(at: datetime) -> str:
    return f"timestamp '{at:%Y-%m-%d %H:%M:%S.%f}'"


def _in(hours: list[datetime]) -> str:
    """`partition_hour in (...)`, false when empty."""
    return f"{PARTITION} in ({', '.join(map(_ts, hours))})" if hours else "false"


def _hours(spark, sql: str) -> list:
    """Rows of a query whose first column is an hour, returned as naive UTC datetimes (read as
    text: pyspark turns timestamps into the Python process's local time)."""
    rows = spark.sql(sql).collect()
    return [(datetime.strptime(r[0], "%Y-%m-%d %H:%M:%S"), *r[1:]) for r in rows]


def _partitions(spark, table: str) -> set[datetime]:
    found = set()
    for (spec,) in spark.sql(f"show partitions {table}").collect():
        value = unquote(spec.split("=", 1)[1])
        found.add(datetime.fromisoformat(value))
    return found


def _file_entry(file_id: int, hour: datetime, path: Path) -> dict:
    """What the load log needs before Spark reads the file: its stat (modified_at as in
    DuckDB), and unreadable_file when it cannot be opened."""
    entry = {"file_id": file_id, "partition_hour": hour.replace(tzinfo=None),
             "source_file": str(path), "size_bytes": 0, "modified_at": datetime(1970, 1, 1),
             "checksum": "", "file_error": None}  # fmt: skip
    try:
        stat = os.stat(path)
        entry["size_bytes"] = stat.st_size
        entry["modified_at"] = datetime.fromtimestamp(stat.st_mtime, UTC).replace(tzinfo=None)
        open(path, "rb").close()  # noqa: SIM115 - only: can it be opened
    except OSError as exc:
        entry["file_error"] = f"unreadable_file: {path}: {exc.strerror or exc}"
    return entry


def _lines_sql(contents: str) -> str:
    """Every line of the files in `contents` (file_id, partition_hour, content: the file's
    bytes): numbered, its ending and a UTF-8 BOM dropped, flagged like `landing` does
    (line_too_long, invalid_utf8, truncated_line)."""
    return f"""
    with files as (
        select file_id, partition_hour, content,
            is_valid_utf8(cast(content as string)) as utf8,
            substring(content, case when substring(content, 1, 3) = X'EFBBBF' then 4 else 1 end,
                      2) in (X'FFFE', X'FEFF') as utf16
        from {contents}
        where content is not null
    ),
    parts as (
        select file_id, partition_hour, utf16,
            case when utf8 and not utf16 then split(cast(content as string), '\\r?\\n', -1)
                else transform(split(decode(content, 'ISO-8859-1'), '\\r?\\n', -1),
                               x -> cast(encode(x, 'ISO-8859-1') as string))
            end as parts
        from files
    ),
    exploded as (
        select file_id, partition_hour, utf16, size(parts) as n, pos, part
        from parts lateral view posexplode(parts) e as pos, part
    ),
    lines as (
        select file_id, partition_hour, utf16, pos + 1 as line_number, pos < n - 1 as ended,
            case when pos = 0 and substring(cast(part as binary), 1, 3) = X'EFBBBF'
                then cast(substring(cast(part as binary), 4) as string) else part end as part
        from exploded
        where pos < n - 1 or part <> ''  -- after the last newline: nothing, or a truncated line
    ),
    ended as (  -- a CR before the newline is the ending's (a truncated line's too)
        select file_id, partition_hour, utf16, line_number, ended,
            case when not ended and endswith(part, '\\r')
                then cast(substring(cast(part as binary), 1, octet_length(part) - 1) as string)
                else part end as part
        from lines
    )
    select file_id, partition_hour, cast(line_number as bigint) as line_number,
        case when is_valid_utf8(part) then part
            else left(make_valid_utf8(part), {MAX_STORED_LINE_CHARS}) end as line,
        case when octet_length(part) > {MAX_LINE_BYTES} then 'line_too_long'
            when utf16 or not is_valid_utf8(part) then 'invalid_utf8'
            when not ended then 'truncated_line'
        end as read_error
    from ended
    """


def _starts_as_utf16(path: Path) -> bool:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(5).removeprefix(BOM)
    except OSError:
        return False
    return head.startswith((b"\xff\xfe", b"\xfe\xff"))


def load_window_spark(spark, home, start, end, now=None, allow_empty: bool = False) -> dict:
    """Replace the hours [start, end) of the Spark raw tables with what the landing files of
    the spendwatch home `home` hold; the DuckDB ingest's rules (`load.load_window`). Returns
    the LoadResult's fields as JSON (`load_result` turns them back)."""
    start, end = _time(start), _time(end)
    now = (_time(now) or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    lo, hi = start.astimezone(UTC).replace(tzinfo=None), end.astimezone(UTC).replace(tzinfo=None)
    for key, value in SESSION_SETTINGS.items():
        spark.conf.set(key, value)
    create_tables(spark)
    files = landing_files(paths(home).landing, start, end)
    entries = [_file_entry(i, hour, path) for i, (hour, path) in enumerate(files)]
    with_files = sorted({e["partition_hour"] for e in entries})
    window = f"{PARTITION} >= {_ts(lo)} and {PARTITION} < {_ts(hi)}"

    kept: dict[datetime, int] = {}
    if not allow_empty:
        not_with_files = f"not {_in(with_files)}"
        kept = dict(_hours(spark, f"""
            select date_format(log.partition_hour, 'yyyy-MM-dd HH:mm:ss'), coalesce(calls.n, 0)
            from (select distinct partition_hour from raw.load_log where {window}) as log
            left join (select partition_hour, count(*) as n from raw.llm_calls
                       where {window} group by 1) as calls using (partition_hour)
            where {not_with_files.replace(PARTITION, "log." + PARTITION)}
        """))  # fmt: skip
    keep = sorted(kept)

    staged = _stage(spark, entries, now, (lo, hi), keep)
    counts: dict[int, tuple[int, int]] = {}
    utf8: dict[int, tuple[int, int]] = {}
    by_reason: dict[str, int] = {}
    new_hours: dict[str, set[datetime]] = {"llm_calls": set(), "llm_calls_rejected": set()}
    if staged is not None:
        for file_id, hour, reason, n in spark.sql("""
            select file_id, date_format(partition_hour, 'yyyy-MM-dd HH:mm:ss'), reason, count(*)
            from ingest_staged group by 1, 2, 3""").collect():  # fmt: skip
            loaded, rejected = counts.get(file_id, (0, 0))
            counts[file_id] = (loaded + n, rejected) if reason is None else (loaded, rejected + n)
            good, bad = utf8.get(file_id, (0, 0))
            if reason == "invalid_utf8":
                bad += n
            elif reason != "line_too_long":
                good += n
            utf8[file_id] = (good, bad)
            at = datetime.strptime(hour, "%Y-%m-%d %H:%M:%S")
            new_hours["llm_calls" if reason is None else "llm_calls_rejected"].add(at)
            if reason is not None:
                by_reason[reason] = by_reason.get(reason, 0) + n
        by_reason = dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])))
    _file_errors(entries, utf8)

    log_rows = _log_rows(spark, entries, counts, keep, now)
    new_hours["load_log"] = {row[0] for row in log_rows}
    # the window's partitions that get no row now (and are not kept) go; the others are
    # replaced by insert overwrite (dynamic: only the partitions written)
    window_hours = set(partition_hours(lo, hi))
    for name in ("llm_calls", "llm_calls_rejected", "load_log"):
        table = f"raw.{name}"
        gone = sorted((_partitions(spark, table) & window_hours) - set(keep) - new_hours[name])
        if gone:
            specs = ", ".join(f"partition ({PARTITION} = '{at:%Y-%m-%d %H:%M:%S}')" for at in gone)
            spark.sql(f"alter table {table} drop if exists {specs}")
    if staged is not None:
        columns = [c for c, _ in RAW_TABLES["raw.llm_calls"]]
        loaded_at = {"loaded_at": f"{_ts(now)} as loaded_at"}
        select = ", ".join(loaded_at.get(c, f"s.{c}") for c in columns)
        if new_hours["llm_calls"]:
            spark.sql(f"""
                insert overwrite table raw.llm_calls partition ({PARTITION})
                select {select} from ingest_staged as s where s.reason is null""")  # fmt: skip
        columns = [c for c, _ in RAW_TABLES["raw.llm_calls_rejected"]]
        rejected_at = {"rejected_at": f"{_ts(now)} as rejected_at",
                       "event_id": "s.raw_event_id as event_id"}  # fmt: skip
        select = ", ".join(rejected_at.get(c, f"s.{c}") for c in columns)
        if new_hours["llm_calls_rejected"]:
            spark.sql(f"""
                insert overwrite table raw.llm_calls_rejected partition ({PARTITION})
                select {select} from ingest_staged as s where s.reason is not null""")  # fmt: skip
    if log_rows:
        _insert_log(spark, log_rows)
    for name in ("ingest_staged", "ingest_validated", "ingest_duplicates"):
        spark.catalog.dropTempView(name)

    result = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "files": len(files),
        "lines": sum(a + b for a, b in counts.values()),
        "loaded": sum(a for a, _ in counts.values()),
        "rejected": sum(b for _, b in counts.values()),
        "rejected_by_reason": by_reason,
        "kept_hours": {hour.replace(tzinfo=UTC).isoformat(): n for hour, n in kept.items()},
        "file_errors": {e["source_file"]: e["file_error"] for e in entries if e["file_error"]},
    }
    for warning in load_result(result).warnings():
        log.warning(warning)
    return result


def _stage(spark, entries: list[dict], now: datetime, window: tuple, keep: list[datetime]):
    """Read the readable files, split and validate their lines, find the duplicates: the temp
    view `ingest_staged` (one row per line: file, line, reason or typed values), checkpointed
    so that replacing the tables does not re-read them. Fills in each entry's size_bytes,
    checksum and file_error. None when there is nothing to read."""
    readable = [e for e in entries if not e["file_error"]]
    if not readable:
        return None
    rows = [(e["file_id"], e["source_file"], f"{e['partition_hour']:%Y-%m-%d %H:%M:%S}")
            for e in readable]  # fmt: skip
    spark.createDataFrame(rows, "file_id int, source_file string, hour string").selectExpr(
        "file_id", "source_file", "cast(hour as timestamp) as partition_hour"
    ).createOrReplaceTempView("ingest_files")
    local = "regexp_replace(path, '^file:/+', '/')"
    paths_ = [e["source_file"] for e in readable]
    gz = [p for p in paths_ if p.endswith(".gz")]
    spark.read.format("binaryFile").load(paths_).selectExpr(
        f"{local} as source_file", "length as size_bytes", "sha2(content, 256) as checksum",
        "case when not endswith(path, '.gz') then content end as content",
    ).createOrReplaceTempView("ingest_bytes")  # fmt: skip
    if gz:
        spark.read.text(gz, wholetext=True).selectExpr(
            f"{local.replace('path', '_metadata.file_path')} as source_file",
            "cast(value as binary) as content",
        ).createOrReplaceTempView("ingest_gz")
    else:
        spark.sql("select '' as source_file, cast(null as binary) as content limit 0") \
            .createOrReplaceTempView("ingest_gz")  # fmt: skip
    contents = spark.sql("""
        select f.file_id, f.partition_hour, b.size_bytes, b.checksum,
            coalesce(b.content, g.content) as content, b.source_file is not null as read,
            g.source_file is not null as decompressed
        from ingest_files as f
        left join ingest_bytes as b on b.source_file = f.source_file
        left join ingest_gz as g on g.source_file = f.source_file
    """).localCheckpoint(eager=True)  # fmt: skip
    contents.createOrReplaceTempView("ingest_contents")
    by_id = {e["file_id"]: e for e in readable}
    for file_id, size, checksum, read, decompressed in contents.select(
        "file_id", "size_bytes", "checksum", "read", "decompressed"
    ).collect():
        entry = by_id[file_id]
        path = entry["source_file"]
        if not read:
            entry["file_error"] = f"unreadable_file: {path}: gone before Spark read it"
            continue
        entry["size_bytes"], entry["checksum"] = size, checksum
        if path.endswith(".gz") and not decompressed:
            entry["file_error"] = (
                f"corrupt_gzip: {path}: Spark's gzip reader could not read it to its end; "
                "none of its lines were loaded"
            )
    spark.sql(_lines_sql("ingest_contents")).createOrReplaceTempView("ingest_lines")
    validated = spark.sql(validate_sql(now, "ingest_lines", "spark", with_line=True))
    validated.localCheckpoint(eager=True).createOrReplaceTempView("ingest_validated")
    contents.unpersist()
    with_files = [e["partition_hour"] for e in readable]
    horizon = (min(with_files) - DUPLICATE_HORIZON,
               max(with_files) + timedelta(hours=1) + DUPLICATE_HORIZON)  # fmt: skip
    duplicates = duplicates_sql(
        "ingest_validated",
        "ingest_files",
        engine="spark",
        bounds=literal_bounds(window, keep, horizon),
    )
    spark.sql(duplicates).createOrReplaceTempView("ingest_duplicates")
    fields = ", ".join(f"v.{n}" for n in WAREHOUSE_COLUMNS)
    spark.sql(f"""
        select v.partition_hour, f.source_file, v.file_id, v.line_number,
            case when d.file_id is not null then 'duplicate_event_id' else v.reason end as reason,
            coalesce(d.reason_detail, v.reason_detail) as reason_detail,
            case when d.file_id is not null then get_json_object(v.line, '$.event_id')
                else v.raw_event_id end as raw_event_id,
            case when d.file_id is not null then left(v.line, {MAX_STORED_LINE_CHARS})
                else v.raw_line end as raw_line,
            {fields}
        from ingest_validated as v
        join ingest_files as f on f.file_id = v.file_id
        left join ingest_duplicates as d
            on d.file_id = v.file_id and d.line_number = v.line_number
    """).localCheckpoint(eager=True).createOrReplaceTempView("ingest_staged")  # fmt: skip
    return True


def _file_errors(entries: list[dict], utf8: dict[int, tuple[int, int]]) -> None:
    """not_utf8 for a file none of whose lines is UTF-8 (`utf8`: file_id -> lines that are
    UTF-8, lines that are not), as `landing.LandingFile` says it."""
    for e in entries:
        good, bad = utf8.get(e["file_id"], (0, 0))
        if e["file_error"] is None and bad and not good:
            what = f"none of its {bad} lines is UTF-8"
            if _starts_as_utf16(Path(e["source_file"])):
                what = "a UTF-16 byte order mark"
            e["file_error"] = f"not_utf8: {e['source_file']}: {what}"


def _log_rows(spark, entries, counts, keep, now) -> list[tuple]:
    """The load-log rows to write: one per file read, and the kept hours' rows as they were,
    marked landing_files_missing."""
    rows = []
    for e in entries:
        loaded, rejected = counts.get(e["file_id"], (0, 0))
        rows.append((e["partition_hour"], e["source_file"], e["size_bytes"], e["modified_at"],
                     e["checksum"], loaded + rejected, loaded, rejected, now,
                     e["file_error"]))  # fmt: skip
    if keep:
        for r in spark.sql(f"""
            select date_format(partition_hour, 'yyyy-MM-dd HH:mm:ss'), source_file, size_bytes,
                date_format(modified_at, 'yyyy-MM-dd HH:mm:ss.SSSSSS'), checksum, lines, loaded,
                rejected, date_format(loaded_at, 'yyyy-MM-dd HH:mm:ss.SSSSSS')
            from raw.load_log where {_in(keep)}""").collect():  # fmt: skip
            hour, modified, loaded_at = (datetime.fromisoformat(r[i]) for i in (0, 3, 8))
            rows.append((hour, r[1], r[2], modified, *r[4:8], loaded_at, MISSING))
    return rows


def _insert_log(spark, rows: list[tuple]) -> None:
    columns = [c for c, _ in RAW_TABLES["raw.load_log"]]
    as_text = {"partition_hour", "modified_at", "loaded_at"}
    schema = ", ".join(
        f"{c} {'string' if c in as_text else t}" for c, t in RAW_TABLES["raw.load_log"]
    )
    order = ["partition_hour", "source_file", "size_bytes", "modified_at", "checksum", "lines",
             "loaded", "rejected", "loaded_at", "file_error"]  # fmt: skip
    assert sorted(order) == sorted(columns), "raw.load_log's columns changed: update _log_rows"
    data = []
    for row in rows:
        values = dict(zip(order, row, strict=True))
        for c in as_text:
            values[c] = f"{values[c]:%Y-%m-%d %H:%M:%S.%f}"
        data.append(tuple(values[c] for c in columns))
    spark.createDataFrame(data, schema).selectExpr(
        *(f"cast({c} as timestamp) as {c}" if c in as_text else c for c in columns)
    ).createOrReplaceTempView("ingest_log")
    spark.sql(f"insert overwrite table raw.load_log partition ({PARTITION}) "
              f"select {', '.join(columns)} from ingest_log")  # fmt: skip
    spark.catalog.dropTempView("ingest_log")


def load_result(data: dict) -> LoadResult:
    """`load_window_spark`'s JSON as the DuckDB load's LoadResult (for the Dagster asset)."""
    return LoadResult(
        _time(data["start"]),
        _time(data["end"]),
        data["files"],
        data["lines"],
        data["loaded"],
        data["rejected"],
        dict(data["rejected_by_reason"]),
        kept_hours={_time(h): n for h, n in data.get("kept_hours", {}).items()},
        file_errors=dict(data.get("file_errors", {})),
    )
