"""Load landing files into `raw.llm_calls`, quarantining every line it cannot accept.

Python reads the files (plain or gzip), checksums them and splits them into lines; every check
on a line's content happens in one DuckDB query over the whole window (`_VALIDATE_SQL`), whose
column list, types and required fields come from the call-event contract
(`spendwatch.schema.CallEvent`). A line is either loaded or rejected with a reason code:

| reason | meaning |
|---|---|
| truncated_line | the file's last line has no newline (a writer is still writing it) |
| line_too_long | over `MAX_LINE_BYTES` |
| invalid_utf8 | the bytes are not UTF-8 |
| empty_line | a blank line |
| invalid_json | not parseable JSON |
| not_an_object | JSON, but not an object |
| missing_required_field | a required field is absent, null or empty |
| wrong_type | a field has the wrong JSON type |
| invalid_tokens | a token count is negative or not an integer |
| invalid_value | status not ok/error, attempt < 1, latency < 0 |
| unknown_schema_version | schema_version other than 1 |
| timestamp_unparseable | occurred_at is not an RFC 3339 timestamp |
| timestamp_without_offset | occurred_at has no UTC offset |
| cache_tokens_exceed_input | cache_read + cache_write > input_tokens |
| reasoning_exceeds_output | reasoning_tokens > output_tokens |
| timestamp_outside_partition | occurred_at is not in the UTC hour of the file's folder |
| timestamp_in_future | occurred_at is later than now + `FUTURE_TOLERANCE` |
| duplicate_event_id | an event_id seen earlier in the hour (the first one wins) |

A window is replaced in one transaction: `raw.llm_calls`, `raw.llm_calls_rejected` and
`raw.load_log` rows of its hours are deleted and re-inserted, so a crash leaves the previous
state and a re-run is safe. Lines read = rows loaded + rows rejected, per file (the load log).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np

from orchestration.quality_ddl import CHECK_RESULTS_DDL
from spendwatch.schema import FIELD_DEFAULTS, REQUIRED_FIELDS, SCHEMA_VERSION, WAREHOUSE_COLUMNS

MAX_LINE_BYTES = 64 * 1024
MAX_STORED_LINE_CHARS = 4096
FUTURE_TOLERANCE = timedelta(minutes=10)

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


def partition_hours(start: datetime, end: datetime) -> list[datetime]:
    hours, at = [], start
    while at < end:
        hours.append(at)
        at += timedelta(hours=1)
    return hours


def landing_files(landing: Path, start: datetime, end: datetime) -> list[tuple[datetime, Path]]:
    """Every `*.jsonl` / `*.jsonl.gz` in the hour folders of [start, end), in a stable order."""
    found = []
    for hour in partition_hours(start, end):
        folder = landing / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"
        if folder.is_dir():
            files = [p for p in folder.iterdir() if p.name.endswith((".jsonl", ".jsonl.gz"))]
            found.extend((hour, p) for p in sorted(files))
    return found


def _read_lines(path: Path) -> tuple[bytes, list[tuple[str, str | None]]]:
    """The file's bytes and its lines as (text, reason the line is unreadable or None)."""
    data = path.read_bytes()
    body = gzip.decompress(data) if path.name.endswith(".gz") else data
    parts = body.split(b"\n")
    tail = parts.pop()  # after the last newline: b"" when the file ends with one
    lines: list[tuple[str, str | None]] = []
    try:
        text_parts = body.decode("utf-8").split("\n")[: len(parts)]
        lines = [(t, None) for t in text_parts]
    except UnicodeDecodeError:
        for raw in parts:
            try:
                lines.append((raw.decode("utf-8"), None))
            except UnicodeDecodeError:
                lines.append((raw.decode("utf-8", "replace"), "invalid_utf8"))
    if tail:
        lines.append((tail.decode("utf-8", "replace"), "truncated_line"))
    return data, lines


def _line_table(files: list[tuple[datetime, Path]]) -> tuple[dict, list[dict]]:
    sources, hours, numbers, texts, flags, log = [], [], [], [], [], []
    for hour, path in files:
        data, lines = _read_lines(path)
        n = len(lines)
        stat = path.stat()
        log.append({
            "partition_hour": hour.replace(tzinfo=None),
            "source_file": str(path),
            "size_bytes": stat.st_size,
            "modified_at": datetime.fromtimestamp(stat.st_mtime, UTC).replace(tzinfo=None),
            "checksum": hashlib.sha256(data).hexdigest(),
        })  # fmt: skip
        sources.extend([str(path)] * n)
        hours.extend([hour.replace(tzinfo=None)] * n)
        numbers.extend(range(1, n + 1))
        for text, flag in lines:
            if flag is None and len(text) > MAX_LINE_BYTES:  # chars ≤ bytes: cheap pre-check
                flag = "line_too_long" if len(text.encode("utf-8")) > MAX_LINE_BYTES else None
            texts.append(text.rstrip("\r") if flag != "line_too_long" else text)
            flags.append(flag)
    table = {
        "source_file": np.array(sources, dtype=object),
        "partition_hour": np.array(hours, dtype="datetime64[us]"),
        "line_number": np.array(numbers, dtype=np.int64),
        "line": np.array(texts, dtype=object),
        "read_error": np.array(flags, dtype=object),
    }
    return table, log


def _validate_sql(now: datetime) -> str:
    """The one query that types every line and gives each bad one its first reason."""
    fields = list(WAREHOUSE_COLUMNS)
    idx = {name: i + 1 for i, name in enumerate(fields)}  # DuckDB lists are 1-based
    paths = ", ".join(f"'$.\"{name}\"'" for name in fields)

    def v(name: str) -> str:
        return f"v[{idx[name]}]"

    def present(name: str) -> str:
        return f"coalesce(json_type({v(name)}) <> 'NULL', false)"

    def text(name: str) -> str:
        return f"({v(name)} ->> '$')"

    token_fields = [n for n, t in WAREHOUSE_COLUMNS.items() if t == "BIGINT"]
    int_fields = [n for n, t in WAREHOUSE_COLUMNS.items() if t in ("BIGINT", "INTEGER")]
    str_fields = [n for n, t in WAREHOUSE_COLUMNS.items() if t in ("VARCHAR", "TIMESTAMP")]
    num_fields = [n for n, t in WAREHOUSE_COLUMNS.items() if t == "DOUBLE"]
    missing = " || ".join(
        f"case when not {present(n)} or {text(n)} = '' then '{n} ' else '' end"
        for n in REQUIRED_FIELDS
    )
    wrong_type = " || ".join(
        [
            f"case when {present(n)} and json_type({v(n)}) <> 'VARCHAR' then '{n} ' else '' end"
            for n in str_fields
        ]
        + [
            f"case when {present(n)} and json_type({v(n)}) not in ('BIGINT', 'UBIGINT', 'DOUBLE')"
            f" then '{n} ' else '' end"
            for n in int_fields + num_fields
        ]
        + [
            f"case when {present('tags')} and json_type({v('tags')}) <> 'OBJECT' "
            "then 'tags ' else '' end"
        ]
    )
    bad_tokens = " || ".join(
        f"case when {present(n)} and (json_type({v(n)}) not in ('BIGINT', 'UBIGINT')"
        f" or {text(n)}::hugeint < 0) then '{n} ' else '' end"
        for n in token_fields
    )

    def typed(name: str) -> str:
        t = WAREHOUSE_COLUMNS[name]
        default = FIELD_DEFAULTS.get(name)
        if t == "TIMESTAMP":
            return f"try_cast({text(name)} as timestamptz)::timestamp"
        if t == "JSON":
            return f"coalesce(case when {present(name)} then {v(name)} end, '{{}}'::json)"
        value = f"try_cast({text(name)} as {t})"
        if default is not None:
            value = (
                f"coalesce({value}, {default!r})"
                if t != "VARCHAR"
                else (f"coalesce(nullif({text(name)}, ''), '{default}')")
            )
        return value

    ts_offset = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}(:?\d{2})?)$"
    ts_local = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$"
    return f"""
    with parsed as (
        select
            *,
            read_error is null and line <> '' and json_valid(line) as is_json,
            case when is_json and json_type(line) = 'OBJECT'
                then json_extract(line, [{paths}]) end as v
        from lines
    ),
    typed as (
        select
            *,
            {missing} as missing_fields,
            {wrong_type} as wrong_type_fields,
            {bad_tokens} as bad_token_fields,
            {", ".join(f"{typed(n)} as {n}" for n in fields)},
            {text("occurred_at")} as occurred_at_text,
            {text("event_id")} as raw_event_id
        from parsed
    ),
    checked as (
        select
            *,
            case
                when read_error is not null then read_error
                when trim(line) = '' then 'empty_line'
                when not is_json then 'invalid_json'
                when v is null then 'not_an_object'
                when missing_fields <> '' then 'missing_required_field'
                when wrong_type_fields <> '' then 'wrong_type'
                when bad_token_fields <> '' then 'invalid_tokens'
                when status not in ('ok', 'error') or attempt < 1 or latency_ms < 0
                    then 'invalid_value'
                when schema_version <> {SCHEMA_VERSION} then 'unknown_schema_version'
                when regexp_matches(occurred_at_text, '{ts_local}') then 'timestamp_without_offset'
                when not regexp_matches(occurred_at_text, '{ts_offset}') or occurred_at is null
                    then 'timestamp_unparseable'
                when cache_read_tokens + cache_write_tokens > input_tokens
                    then 'cache_tokens_exceed_input'
                when reasoning_tokens > output_tokens then 'reasoning_exceeds_output'
                when occurred_at < partition_hour
                    or occurred_at >= partition_hour + interval 1 hour
                    then 'timestamp_outside_partition'
                when occurred_at > timestamp '{(now + FUTURE_TOLERANCE):%Y-%m-%d %H:%M:%S}'
                    then 'timestamp_in_future'
            end as reason
        from typed
    ),
    deduplicated as (
        select
            *,
            case when reason is null and row_number() over (
                partition by reason is null, event_id order by source_file, line_number
            ) > 1 then 'duplicate_event_id' else reason end as final_reason
        from checked
    )
    select
        *,
        case final_reason
            when 'missing_required_field' then 'missing: ' || trim(missing_fields)
            when 'wrong_type' then 'wrong type: ' || trim(wrong_type_fields)
            when 'invalid_tokens' then 'negative or non-integer: ' || trim(bad_token_fields)
            when 'invalid_value' then 'status=' || coalesce(status, 'null')
                || ' attempt=' || coalesce(attempt::varchar, 'null')
                || ' latency_ms=' || coalesce(latency_ms::varchar, 'null')
            when 'unknown_schema_version' then 'schema_version=' || schema_version
            when 'timestamp_without_offset' then 'occurred_at=' || occurred_at_text
            when 'timestamp_unparseable' then 'occurred_at=' || coalesce(occurred_at_text, 'null')
            when 'timestamp_outside_partition' then 'occurred_at ' || occurred_at
                || ' UTC is not in the hour ' || partition_hour
            when 'timestamp_in_future' then 'occurred_at ' || occurred_at || ' UTC'
            when 'cache_tokens_exceed_input' then cache_read_tokens || ' + '
                || cache_write_tokens || ' > ' || input_tokens
            when 'reasoning_exceeds_output' then reasoning_tokens || ' > ' || output_tokens
            when 'line_too_long' then 'over {MAX_LINE_BYTES} bytes'
        end as reason_detail
    from deduplicated
    """


def connect(warehouse: Path) -> duckdb.DuckDBPyConnection:
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(warehouse))
    con.execute("set TimeZone = 'UTC'")
    con.execute("set enable_progress_bar = false")
    con.execute(DDL)
    con.execute(CHECK_RESULTS_DDL)  # dbt reads ops.check_results as a source from the start
    return con


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
    table, log = _line_table(files)
    lo, hi = start.replace(tzinfo=None), end.replace(tzinfo=None)
    con = connect(warehouse)
    try:
        con.register("lines", table)
        con.execute(f"create temp table validated as {_validate_sql(now)}")
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
