"""Validation: the DuckDB queries that type every landed line and give each bad one its first
reason. Its column list, types, integer ranges, required fields and token-part rules come from
the call-event contract (`spendwatch.schema`). A line is either loaded or rejected with a reason
code:

| reason | meaning |
|---|---|
| truncated_line | the file's last line has no newline (a writer is still writing it) |
| line_too_long | over `MAX_LINE_BYTES` without its line ending (its first 4096 characters kept) |
| invalid_utf8 | the bytes are not UTF-8 |
| empty_line | a blank line |
| invalid_json | not parseable JSON |
| not_an_object | JSON, but not an object |
| duplicate_key | a key appears twice in the object or its `tags` (readers disagree on the value) |
| missing_required_field | a required field is absent, null, empty or only whitespace |
| wrong_type | wrong JSON type; `attempt`, `schema_version` not integers; `tags` not string→string |
| invalid_tokens | a token count is negative, not an integer, or above the BIGINT range |
| invalid_value | status not ok/error, attempt < 1 or above the INTEGER range, latency < 0 |
| unknown_schema_version | schema_version other than 1 (a value out of range is not wrapped) |
| timestamp_unparseable | occurred_at is not an RFC 3339 timestamp |
| timestamp_without_offset | occurred_at has no UTC offset |
| cache_tokens_exceed_input | cache_read + cache_write > input_tokens (`schema.TOKEN_PARTS`) |
| reasoning_exceeds_output | reasoning_tokens > output_tokens (`schema.TOKEN_PARTS`) |
| timestamp_outside_partition | occurred_at is not in the UTC hour of the file's folder |
| timestamp_in_future | occurred_at is later than now + `FUTURE_TOLERANCE` |
| duplicate_event_id | an event_id loaded before (`DUPLICATE_HORIZON`) or earlier in the same load |

A repeated key is rejected because JSON readers disagree on which value wins (Python keeps the
last, DuckDB the first); `attempt` 2.5 and 2.0 are not integers. A duplicate's detail names the
hour and file that hold the event, or the earlier file and line of the same load.
String fields are trimmed of surrounding whitespace (`schema.WHITESPACE`, what the contract's
pydantic model strips); a UTF-8 byte order mark at the start of a file is dropped by `landing`.

Two queries, each a single pass: `validate_sql` judges every line on its own (each line parsed
once, by `json_transform` into the raw JSON text of every field, whose JSON type is its first
character), and `duplicates_sql` finds the event ids seen twice: earlier in the same load, or in
`raw.llm_calls` within `DUPLICATE_HORIZON` of the window.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from orchestration.lib.ingest.landing import MAX_LINE_BYTES, MAX_STORED_LINE_CHARS
from spendwatch.schema import (
    FIELD_DEFAULTS,
    INTEGER_RANGES,
    REQUIRED_FIELDS,
    SCHEMA_VERSION,
    TOKEN_PARTS,
    WAREHOUSE_COLUMNS,
    WHITESPACE,
)

FUTURE_TOLERANCE = timedelta(minutes=10)
#: How far from the loaded window `raw.llm_calls` is searched for an event_id already loaded.
#: An event loaded in an hour further away than this from the window is not found by the
#: ingest (its cost would otherwise grow with the history): it loads twice, and a whole-table
#: `dbt test` (`unique` on `fct_llm_calls.event_id`; the hourly run tests its window only)
#: names it. Within the window and the horizon the rule is exact.
DUPLICATE_HORIZON = timedelta(days=7)

# First character of a field's JSON text -> its JSON type (a JSON null is SQL NULL: absent).
QUOTE, BRACE, BRACKET, TRUE, FALSE = (ord(c) for c in '"{[tf')
UINT64_MAX = 2**64 - 1  # JSON integers beyond [INT64_MIN, UINT64_MAX] are read as doubles
#: A minified JSON object whose values are all strings (the serialised `tags`)
_STRING = r'"([^"\\]|\\.)*"'
STRING_OBJECT = rf"\{{({_STRING}:{_STRING}(,{_STRING}:{_STRING})*)?\}}"


INTEGRAL_VARIANT_TYPES = ("TINYINT", "SMALLINT", "INT", "BIGINT")
INT64_MIN = INTEGER_RANGES["BIGINT"][0]


class DuckDB:
    """How DuckDB reads a line's fields: one `json_transform` into the raw JSON text of every
    field, whose JSON type is its first character."""

    name = "duckdb"
    wide_int = "hugeint"  # an integer type wider than BIGINT (for schema_version's check)
    text_type = "varchar"

    def lit(self, value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    def matches(self, x: str, pattern: str) -> str:  # a regular expression found in x
        return f"regexp_matches({x}, {self.lit(pattern)})"

    def trim(self, x: str, chars: str) -> str:
        return f"trim({x}, {self.lit(chars)})"

    def hour_text(self, x: str) -> str:  # 2026-03-02 09:00
        return f"strftime({x}, '%Y-%m-%d %H:00')"

    # each field's columns: <name>__raw (the JSON text; NULL when absent or null),
    # <name>__text (a string's value, else the JSON text), <name>__trim (string fields)
    def present(self, n: str) -> str:
        return f"({n}__raw is not null)"

    def _first(self, n: str) -> str:
        return f"ascii({n}__raw)"

    def is_string(self, n: str) -> str:
        return f"{self._first(n)} = {QUOTE}"

    def is_number(self, n: str) -> str:
        return f"{self._first(n)} not in ({QUOTE}, {BRACE}, {BRACKET}, {TRUE}, {FALSE})"

    def is_integer(self, n: str) -> str:  # what json_type calls BIGINT or UBIGINT
        return (f"(regexp_full_match({n}__raw, '-?[0-9]+') and try_cast({n}__raw as hugeint)"
                f" between {INT64_MIN} and {UINT64_MAX})")  # fmt: skip

    def is_token(self, n: str) -> str:  # a JSON integer >= 0 within BIGINT
        return (f"(regexp_full_match({n}__raw, '[0-9]+')"
                f" and try_cast({n}__raw as bigint) is not null)")  # fmt: skip

    def is_string_object(self, n: str) -> str:  # an object whose values are all strings
        return f"regexp_full_match({n}__raw, '{STRING_OBJECT}')"

    def timestamp(self, n: str) -> str:
        return f"try_cast({n}__text as timestamptz)::timestamp"

    def json_text(self, n: str) -> str:  # text: DuckDB appends JSON columns of temp tables slowly
        return f"coalesce({n}__raw, '{{}}')"

    def fields(self, lines: str, fields: list[str], str_fields: list[str]) -> str:
        """The CTEs `parsed` .. `trimmed`: a row per line with is_json, is_object and every
        field's columns."""
        structure = "{" + ", ".join(f'"{name}": "JSON"' for name in fields) + "}"
        ws = self.lit(WHITESPACE)

        def trim_expr(name: str) -> str:  # trim() only when an end is whitespace: it is slow
            x = f"{name}__text"
            return (f"case when may_need_trim and (contains({ws}, left({x}, 1)) "
                    f"or contains({ws}, right({x}, 1))) "
                    f"then trim({x}, {ws}) else {x} end")  # fmt: skip

        text_columns = ", ".join(
            f"case when {self.is_string(n)} then {n}__raw ->> '$' else {n}__raw end as {n}__text"
            for n in fields
        )
        return f"""
    parsed as (
        select
            file_id, partition_hour, line_number, line, read_error,
            -- the line's fields as JSON texts, in one parse; NULL when it is not JSON
            case when read_error is null then try(json_transform(line, '{structure}')) end as s
        from (
            select
                file_id, partition_hour, line_number, line,
                coalesce(read_error,
                    case when strlen(line) > {MAX_LINE_BYTES} then 'line_too_long' end)
                    as read_error
            from {lines}
        )
    ),
    fields as (
        select
            file_id, partition_hour, line_number, line, read_error,
            case when s is not null then true
                when read_error is null then json_valid(line) else false end as is_json,
            s is not null and regexp_matches(line, '^[ \\t\\n\\r]*[{{]') as is_object,
            {", ".join(f's."{n}"::varchar as {n}__raw' for n in fields)},
            concat_ws('', {", ".join(f's."{n}"::varchar' for n in str_fields)}) as string_texts
        from parsed
    ),
    texts as (
        select
            *,
            {text_columns},
            -- a string field's text can start or end with whitespace only when the JSON texts
            -- of the string fields have an escape, a space by a quote, or non-ASCII text: one
            -- cheap look at them all (the fields' own check follows only then)
            contains(string_texts, '\\') or contains(string_texts, ' "')
                or contains(string_texts, '" ') or strlen(string_texts) <> length(string_texts)
                as may_need_trim
        from fields
    ),
    trimmed as (
        select *, {", ".join(f"{trim_expr(n)} as {n}__trim" for n in str_fields)}
        from texts
    )"""

    def duplicate_key(self, n_present: str) -> str:
        # json_keys lists every key, repeats included; when it has as many as the known fields
        # present, each is there once and no unknown key can repeat
        return f"""case when not is_object then false  -- (json_keys fails on what is not JSON)
                when len(json_keys(line)) <> {n_present}
                    and len(json_keys(line)) <> len(list_distinct(json_keys(line))) then true
                when {self._first("tags")} = {BRACE} and len(json_keys(tags__raw)) > 1
                    then len(json_keys(tags__raw)) <> len(list_distinct(json_keys(tags__raw)))
                else false
            end"""


class Spark(DuckDB):
    """How Spark (4.x) reads a line's fields: `try_parse_json` into a VARIANT once (with
    `spark.sql.variant.allowDuplicateKeys` on, so a repeated key is found by the rule, not
    mistaken for invalid JSON), `schema_of_variant` of each field for its JSON type. A VARIANT
    keeps a number's value, not its text (2.0 is DECIMAL(1,0)), so an integer field whose
    number is a DECIMAL of scale 0 has its text read with `get_json_object` (rare)."""

    name = "spark"
    wide_int = "decimal(38,0)"
    text_type = "string"

    def lit(self, value: str) -> str:  # Spark string literals have backslash escapes
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def matches(self, x: str, pattern: str) -> str:
        return f"({x} rlike {self.lit(pattern)})"

    def trim(self, x: str, chars: str) -> str:
        return f"trim(BOTH {self.lit(chars)} FROM {x})"

    def hour_text(self, x: str) -> str:
        return f"date_format({x}, 'yyyy-MM-dd HH:00')"

    def present(self, n: str) -> str:  # <name>__type is NULL when absent or null
        return f"({n}__type is not null)"

    def is_string(self, n: str) -> str:
        return f"{n}__type = 'STRING'"

    def is_number(self, n: str) -> str:
        return (f"({n}__type not in ('STRING', 'BOOLEAN') and {n}__type not like 'OBJECT%'"
                f" and {n}__type not like 'ARRAY%')")  # fmt: skip

    def is_integer(self, n: str) -> str:
        integral = ", ".join(f"'{t}'" for t in INTEGRAL_VARIANT_TYPES)
        return (f"({n}__type in ({integral}) or ({n}__type rlike '^DECIMAL\\\\([0-9]+,0\\\\)$'"
                f" and get_json_object(line, '$.{n}') rlike '^-?[0-9]+$'"
                f" and try_variant_get({n}__raw, '$', 'decimal(38,0)')"
                f" between {INT64_MIN} and {UINT64_MAX}))")  # fmt: skip

    def is_token(self, n: str) -> str:
        integral = ", ".join(f"'{t}'" for t in INTEGRAL_VARIANT_TYPES)
        return f"({n}__type in ({integral}) and variant_get({n}__raw, '$', 'bigint') >= 0)"

    def is_string_object(self, n: str) -> str:
        return (f"({n}__type like 'OBJECT%' and coalesce(forall(map_values(try_variant_get("
                f"{n}__raw, '$', 'map<string,variant>')), x -> schema_of_variant(x) = 'STRING'),"
                " false))")  # fmt: skip

    def timestamp(self, n: str) -> str:
        # Spark's cast wants seconds and an offset with minutes; the format was checked first
        # (and as DuckDB's, it takes no lower-case t or z)
        x = f"{n}__text"
        no_seconds = r"^([0-9-]{10}[T ][0-9]{2}:[0-9]{2})([Z+-]|$)"
        x = f"regexp_replace({x}, {self.lit(no_seconds)}, '$1:00$2')"
        x = f"regexp_replace({x}, {self.lit(r'([+-][0-9]{2})$')}, '$1:00')"
        return f"try_cast({x} as timestamp)"

    def json_text(self, n: str) -> str:
        return f"coalesce({n}__json, '{{}}')"

    def fields(self, lines: str, fields: list[str], str_fields: list[str]) -> str:
        ws = self.lit(WHITESPACE)
        raw_columns = ", ".join(
            f"case when not is_variant_null({n}__v) then {n}__v end as {n}__raw" for n in fields
        )
        text_columns = ", ".join(
            f"case when {n}__type = 'STRING' then variant_get({n}__raw, '$', 'string') "
            f"else to_json({n}__raw) end as {n}__text"
            for n in fields
        )
        return f"""
    parsed as (
        select
            file_id, partition_hour, line_number, line, read_error,
            -- one JSON value and nothing after it (try_parse_json reads the first value of
            -- '{...} x' or of two objects glued together; a JSON array of the line does not)
            case when read_error is null and json_array_length('[' || line || ']') = 1
                then try_parse_json(line) end as v
        from (
            select
                file_id, partition_hour, line_number, line,
                coalesce(read_error,
                    case when octet_length(line) > {MAX_LINE_BYTES} then 'line_too_long' end)
                    as read_error
            from {lines}
        ) as l
    ),
    field_values as (
        select *, {", ".join(f"variant_get(v, '$.{n}') as {n}__v" for n in fields)}
        from parsed
    ),
    fields as (
        select
            file_id, partition_hour, line_number, line, read_error,
            v is not null as is_json,
            v is not null and line rlike '^[ \\\\t\\\\n\\\\r]*[{{]' as is_object,
            -- a JSON null is SQL NULL: absent
            {raw_columns}
        from field_values
    ),
    typed_fields as (
        select *, {", ".join(f"schema_of_variant({n}__raw) as {n}__type" for n in fields)}
        from fields
    ),
    texts as (
        select
            *,
            {text_columns},
            -- the tags as written (key order, repeats), for the duplicate-key rule and the column
            case when tags__type like 'OBJECT%' then get_json_object(line, '$.tags') end
                as tags__json
        from typed_fields
    ),
    trimmed as (
        select *, {", ".join(f"trim(BOTH {ws} FROM {n}__text) as {n}__trim" for n in str_fields)}
        from texts
    )"""

    def duplicate_key(self, n_present: str) -> str:
        return f"""case when not is_object then false
                when size(json_object_keys(line)) <> {n_present}
                    and size(json_object_keys(line))
                        <> size(array_distinct(json_object_keys(line))) then true
                when tags__json is not null
                    then size(json_object_keys(tags__json))
                        <> size(array_distinct(json_object_keys(tags__json)))
                else false
            end"""


ENGINES = {"duckdb": DuckDB(), "spark": Spark()}


def validate_sql(
    now: datetime, lines: str = "lines", engine: str = "duckdb", with_line: bool = False
) -> str:
    """The query that types every line of the relation `lines` (file_id, partition_hour,
    line_number, line, read_error) and gives each bad one its first reason, but
    duplicate_event_id (`duplicates_sql`). Rejected rows keep `raw_event_id` (as written) and
    `raw_line`.

    The rules, their order and their details are written here once; `engine` ("duckdb" or
    "spark") only says how a line's fields are read and how a few functions are spelled
    (`DuckDB`, `Spark`). `with_line` keeps every line's text as `line` (the Spark load marks
    duplicates from the same rows)."""
    sql = ENGINES[engine]
    fields = list(WAREHOUSE_COLUMNS)
    present = sql.present

    def text(name: str) -> str:
        return f"{name}__text"

    def trimmed(name: str) -> str:
        return f"{name}__trim"

    def in_range(name: str) -> str:  # the warehouse column's range (INTEGER_RANGES)
        return f"try_cast({text(name)} as {WAREHOUSE_COLUMNS[name]}) is not null"

    def any_of(names, condition) -> str:
        return " or ".join(f"({condition(n)})" for n in names) or "false"

    def names_of(names, condition) -> str:  # the detail: which fields (rejected rows only)
        return (
            " || ".join(f"case when {condition(n)} then '{n} ' else '' end" for n in names) or "''"
        )

    assert set(INTEGER_RANGES) >= {t for t in WAREHOUSE_COLUMNS.values() if "INT" in t}
    token_fields = [n for n, t in WAREHOUSE_COLUMNS.items() if t == "BIGINT"]
    int_fields = [n for n, t in WAREHOUSE_COLUMNS.items() if t == "INTEGER"]
    str_fields = [n for n, t in WAREHOUSE_COLUMNS.items() if t in ("VARCHAR", "TIMESTAMP")]
    num_fields = [n for n, t in WAREHOUSE_COLUMNS.items() if t == "DOUBLE"]
    json_fields = [n for n, t in WAREHOUSE_COLUMNS.items() if t == "JSON"]
    assert json_fields == ["tags"], "the ingest knows one JSON field, tags (string -> string)"

    def missing(n: str) -> str:
        return f"not {present(n)} or {trimmed(n) if n in str_fields else text(n)} = ''"

    wrong_type_rules = [
        (str_fields, lambda n: f"{present(n)} and not {sql.is_string(n)}"),
        (token_fields + num_fields, lambda n: f"{present(n)} and not {sql.is_number(n)}"),
        (int_fields, lambda n: f"{present(n)} and not {sql.is_integer(n)}"),
        (["tags"], lambda n: f"{present(n)} and not {sql.is_string_object(n)}"),
    ]  # fmt: skip

    def bad_token(n: str) -> str:  # a JSON integer >= 0 within BIGINT
        return f"{present(n)} and not {sql.is_token(n)}"

    out_of_range = {n: f"({present(n)} and not {in_range(n)})" for n in int_fields}
    n_present = " + ".join(f"cast({present(n)} as int)" for n in fields)

    def typed(name: str) -> str:
        t = WAREHOUSE_COLUMNS[name]
        default = FIELD_DEFAULTS.get(name)
        if t == "TIMESTAMP":
            return sql.timestamp(name)
        if t == "JSON":
            return sql.json_text(name)
        if t == "VARCHAR":
            value = trimmed(name)
            return f"coalesce(nullif({value}, ''), '{default}')" if default is not None else value
        value = f"try_cast({text(name)} as {t})"
        return f"coalesce({value}, {default!r})" if default is not None else value

    part_checks = "\n".join(
        f"when {' + '.join(rule.parts)} > {rule.total} then '{rule.reason}'" for rule in TOKEN_PARTS
    )
    part_details = "\n".join(
        f"when '{rule.reason}' then "
        + " || ' + ' || ".join(rule.parts)
        + f" || ' > ' || {rule.total}"
        for rule in TOKEN_PARTS
    )
    ts_offset = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}(:?\d{2})?)$"
    ts_local = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$"
    return f"""
    with {sql.fields(lines, fields, str_fields)},
    typed as (
        select
            *,
            {sql.duplicate_key(n_present)} as has_duplicate_key,
            {any_of(REQUIRED_FIELDS, missing)} as is_missing,
            {" or ".join(f"({any_of(names, rule)})" for names, rule in wrong_type_rules)}
                as is_wrong_type,
            {any_of(token_fields, bad_token)} as is_bad_tokens,
            {
        " or ".join(out_of_range[n] for n in int_fields if n != "schema_version") or "false"
    } as int_out_of_range,
            {present("schema_version")} and coalesce(
                try_cast({text("schema_version")} as {sql.wide_int}) <> {SCHEMA_VERSION}, true)
                as is_other_version,
            {", ".join(f"{typed(n)} as {n}" for n in fields)}
        from trimmed
    ),
    checked as (
        select
            *,
            case
                when read_error is not null then read_error
                when not is_json then
                    case when {sql.trim("line", WHITESPACE)} = '' then 'empty_line'
                        else 'invalid_json' end
                when not is_object then 'not_an_object'
                when has_duplicate_key then 'duplicate_key'
                when is_missing then 'missing_required_field'
                when is_wrong_type then 'wrong_type'
                when is_bad_tokens then 'invalid_tokens'
                when status not in ('ok', 'error') or int_out_of_range or attempt < 1
                    or latency_ms < 0 then 'invalid_value'
                when is_other_version then 'unknown_schema_version'
                when not {sql.matches(text("occurred_at"), ts_offset)} then
                    case when {sql.matches(text("occurred_at"), ts_local)}
                        then 'timestamp_without_offset' else 'timestamp_unparseable' end
                when occurred_at is null then 'timestamp_unparseable'
                {part_checks}
                when occurred_at < partition_hour
                    or occurred_at >= partition_hour + interval 1 hour
                    then 'timestamp_outside_partition'
                when occurred_at > timestamp '{(now + FUTURE_TOLERANCE):%Y-%m-%d %H:%M:%S}'
                    then 'timestamp_in_future'
            end as reason
        from typed
    )
    select
        file_id, partition_hour, line_number, reason,
        case reason
            when 'missing_required_field' then 'missing: '
                || trim({names_of(REQUIRED_FIELDS, missing)})
            when 'wrong_type' then 'wrong type: ' || trim({
        " || ".join(names_of(names, rule) for names, rule in wrong_type_rules)
    })
            when 'invalid_tokens' then 'negative, non-integer or out of range: '
                || trim({names_of(token_fields, bad_token)})
            when 'invalid_value' then 'status=' || coalesce(status, 'null')
                || ' attempt=' || coalesce({text("attempt")}, 'null')
                || ' latency_ms=' || coalesce(cast(latency_ms as {sql.text_type}), 'null')
            when 'unknown_schema_version' then 'schema_version=' || {text("schema_version")}
            when 'timestamp_without_offset' then 'occurred_at=' || {text("occurred_at")}
            when 'timestamp_unparseable' then 'occurred_at='
                || coalesce({text("occurred_at")}, 'null')
            when 'timestamp_outside_partition' then 'occurred_at ' || occurred_at
                || ' UTC is not in the hour ' || partition_hour
            when 'timestamp_in_future' then 'occurred_at ' || occurred_at || ' UTC'
            {part_details}
            when 'line_too_long' then 'over {MAX_LINE_BYTES} bytes'
            when 'duplicate_key' then 'a key appears twice in the object or its tags'
        end as reason_detail,
        case when reason is not null then {text("event_id")} end as raw_event_id,
        case when reason is not null then left(line, {MAX_STORED_LINE_CHARS}) end as raw_line,
        {", ".join(fields + (["line"] if with_line else []))}
    from checked
    """


#: the duplicate query's bounds as DuckDB parameters: $lo, $hi (the window), $keep (its kept
#: hours), $horizon_lo, $horizon_hi (the batch's first hour - DUPLICATE_HORIZON, its last hour + 1
#: hour + DUPLICATE_HORIZON: constants, so DuckDB skips the row groups of raw.llm_calls outside)
PARAMETER_BOUNDS = {
    "lo": "$lo",
    "hi": "$hi",
    "kept": "list_contains($keep, partition_hour)",
    "horizon_lo": "$horizon_lo",
    "horizon_hi": "$horizon_hi",
}


def literal_bounds(
    window: tuple[datetime, datetime], keep: list[datetime], horizon: tuple[datetime, datetime]
) -> dict[str, str]:
    """The same bounds as literals (the Spark load's one query)."""

    def ts(at: datetime) -> str:
        return f"timestamp '{at:%Y-%m-%d %H:%M:%S}'"

    kept = f"partition_hour in ({', '.join(map(ts, keep))})" if keep else "false"
    return {"lo": ts(window[0]), "hi": ts(window[1]), "kept": kept,
            "horizon_lo": ts(horizon[0]), "horizon_hi": ts(horizon[1])}  # fmt: skip


def duplicates_sql(
    batch: str,
    files: str,
    earlier: str | None = None,
    engine: str = "duckdb",
    bounds: Mapping[str, str] = PARAMETER_BOUNDS,
) -> str:
    """The lines of `batch` (an output of `validate_sql`) that are duplicates, with the detail
    of duplicate_event_id: every line of an event that raw.llm_calls holds outside the window
    (or in its kept hours) within `DUPLICATE_HORIZON` of the batch's hours; every line of an
    event loaded from an earlier batch of the same load (`earlier`, the DuckDB load's batches
    before; the Spark load validates its window in one batch); and every line but the first of
    an event seen twice in the batch (first = earliest hour, then file, then line: the order
    files are read in). `files` maps file_id to source_file; `bounds` are the SQL of the window
    and the horizon (`PARAMETER_BOUNDS` or `literal_bounds`)."""
    e = ENGINES[engine]
    b = bounds
    earlier_cte = (
        f"""
    earlier as (  -- loaded by this load's batches before: one valid line per event
        select v.event_id, any_value(f.source_file || ' line ' || v.line_number) as first_seen
        from {earlier} as v join {files} as f using (file_id)
        where v.reason is null and v.event_id in (select event_id from ok)
        group by 1
    ),"""
        if earlier
        else ""
    )
    from_earlier = (
        """
    union all
    select ok.file_id, ok.line_number, 'first seen in ' || earlier.first_seen
    from ok join earlier using (event_id)
    where ok.event_id not in (select event_id from held)"""
        if earlier
        else ""
    )
    not_earlier = "and event_id not in (select event_id from earlier)" if earlier else ""
    return f"""
    with ok as (
        select b.file_id, b.line_number, b.partition_hour, f.source_file, b.event_id
        from {batch} as b join {files} as f using (file_id)
        where b.reason is null
    ),
    held as (
        select event_id, min(partition_hour) as held_hour, min(source_file) as held_file
        from raw.llm_calls
        where partition_hour >= {b["horizon_lo"]} and partition_hour < {b["horizon_hi"]}
            and (partition_hour < {b["lo"]} or partition_hour >= {b["hi"]} or {b["kept"]})
            and event_id in (select event_id from ok)
        group by 1
    ),{earlier_cte}
    repeated as (
        select ok.*,
            row_number() over same_id as seen,
            first_value(source_file || ' line ' || line_number) over same_id as first_seen
        from ok
        where event_id in (select event_id from ok group by 1 having count(*) > 1)
        window same_id as (partition by event_id order by partition_hour, source_file, line_number)
    )
    select ok.file_id, ok.line_number, 'already loaded in hour '
        || {e.hour_text("held.held_hour")} || ' (' || held.held_file || ')' as reason_detail
    from ok join held using (event_id){from_earlier}
    union all
    select file_id, line_number, 'first seen in ' || first_seen from repeated
    where seen > 1 and event_id not in (select event_id from held)
        {not_earlier}
    """
