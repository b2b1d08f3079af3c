"""Validation: the one DuckDB query that types every landed line and gives each bad one its
first reason. Its column list, types, integer ranges, required fields and token-part rules come
from the call-event contract (`spendwatch.schema`). A line is either loaded or rejected with a
reason code:

| reason | meaning |
|---|---|
| truncated_line | the file's last line has no newline (a writer is still writing it) |
| line_too_long | over `MAX_LINE_BYTES` (only its first 4096 characters are kept) |
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
| duplicate_event_id | an event_id raw.llm_calls already holds, in any hour (first loaded wins) |

A repeated key is rejected because JSON readers disagree on which value wins (Python keeps the
last, DuckDB the first); `attempt` 2.5 and 2.0 are not integers. A duplicate's detail names the
hour and file that hold the event, or the earlier file and line of the same load.
String fields are trimmed of surrounding whitespace (`schema.WHITESPACE`, what the contract's
pydantic model strips); a UTF-8 byte order mark at the start of a file is dropped by `landing`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from orchestration.lib.ingest.landing import MAX_LINE_BYTES
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


def validate_sql(now: datetime, lines: str = "lines") -> str:
    """The one query that types every line of the relation `lines` (source_file,
    partition_hour, line_number, line, read_error) and gives each bad one its first reason.
    Duplicates are looked up in raw.llm_calls as it stands in the caller's transaction."""
    fields = list(WAREHOUSE_COLUMNS)
    idx = {name: i + 1 for i, name in enumerate(fields)}  # DuckDB lists are 1-based
    paths = ", ".join(f"'$.\"{name}\"'" for name in fields)
    ws = "'" + WHITESPACE + "'"

    def v(name: str) -> str:
        return f"v[{idx[name]}]"

    # each field's JSON type, text and trimmed text are computed once (CTE `fields`)
    def jtype(name: str) -> str:
        return f'"{name}__type"'

    def present(name: str) -> str:
        return f"coalesce({jtype(name)} <> 'NULL', false)"

    def text(name: str) -> str:
        return f'"{name}__text"'

    def trimmed(name: str) -> str:
        return f'"{name}__trim"'

    def trim_expr(name: str) -> str:  # trim() only when an end is whitespace: it is slow
        x = text(name)
        return (f"case when contains({ws}, left({x}, 1)) or contains({ws}, right({x}, 1)) "
                f"then trim({x}, {ws}) else {x} end")  # fmt: skip

    def is_integer(name: str) -> str:
        return f"{jtype(name)} in ('BIGINT', 'UBIGINT')"

    def in_range(name: str) -> str:  # the warehouse column's range (INTEGER_RANGES)
        return f"try_cast({text(name)} as {WAREHOUSE_COLUMNS[name]}) is not null"

    def flags(names, condition) -> str:
        return (
            " || ".join(f"case when {condition(n)} then '{n} ' else '' end" for n in names) or "''"
        )

    assert set(INTEGER_RANGES) >= {t for t in WAREHOUSE_COLUMNS.values() if "INT" in t}
    token_fields = [n for n, t in WAREHOUSE_COLUMNS.items() if t == "BIGINT"]
    int_fields = [n for n, t in WAREHOUSE_COLUMNS.items() if t == "INTEGER"]
    str_fields = [n for n, t in WAREHOUSE_COLUMNS.items() if t in ("VARCHAR", "TIMESTAMP")]
    num_fields = [n for n, t in WAREHOUSE_COLUMNS.items() if t == "DOUBLE"]
    not_string = "['OBJECT', 'ARRAY', 'BIGINT', 'UBIGINT', 'DOUBLE', 'BOOLEAN', 'NULL']"
    missing = flags(
        REQUIRED_FIELDS,
        lambda n: f"not {present(n)} or {trimmed(n) if n in str_fields else text(n)} = ''",
    )
    wrong_type = " || ".join([
        flags(str_fields, lambda n: f"{present(n)} and {jtype(n)} <> 'VARCHAR'"),
        flags(token_fields + num_fields,
              lambda n: f"{present(n)} and {jtype(n)} not in ('BIGINT', 'UBIGINT', 'DOUBLE')"),
        flags(int_fields, lambda n: f"{present(n)} and not {is_integer(n)}"),
        flags(["tags"], lambda n: f"{present(n)} and ({jtype(n)} <> 'OBJECT' "
                                  f"or list_has_any(json_type({v(n)}, '$.*'), {not_string}))"),
    ])  # fmt: skip
    bad_tokens = flags(
        token_fields,
        lambda n: (
            f"{present(n)} and not ({is_integer(n)} and {in_range(n)} and {text(n)}::hugeint >= 0)"
        ),
    )
    out_of_range = {n: f"({present(n)} and not {in_range(n)})" for n in int_fields}

    def typed(name: str) -> str:
        t = WAREHOUSE_COLUMNS[name]
        default = FIELD_DEFAULTS.get(name)
        if t == "TIMESTAMP":
            return f"try_cast({text(name)} as timestamptz)::timestamp"
        if t == "JSON":
            return f"coalesce(case when {present(name)} then {v(name)} end, '{{}}'::json)"
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
    with parsed as (
        select
            *,
            read_error is null and line <> '' and json_valid(line) as is_json,
            case when is_json and json_type(line) = 'OBJECT'
                then json_extract(line, [{paths}]) end as v,
            case when v is not null then
                len(json_keys(line)) <> len(list_distinct(json_keys(line)))
                or (json_type({v("tags")}) = 'OBJECT' and len(json_keys({v("tags")}))
                    <> len(list_distinct(json_keys({v("tags")}))))
            end as has_duplicate_key
        from {lines}
    ),
    fields as (
        select
            *,
            {
        ", ".join(f"json_type({v(n)}) as {jtype(n)}, {v(n)} ->> '$' as {text(n)}" for n in fields)
    }
        from parsed
    ),
    trimmed as (
        select *, {", ".join(f"{trim_expr(n)} as {trimmed(n)}" for n in str_fields)}
        from fields
    ),
    typed as (
        select
            *,
            {missing} as missing_fields,
            {wrong_type} as wrong_type_fields,
            {bad_tokens} as bad_token_fields,
            {
        " or ".join(out_of_range[n] for n in int_fields if n != "schema_version") or "false"
    } as int_out_of_range,
            {present("schema_version")} and coalesce(
                try_cast({text("schema_version")} as hugeint) <> {SCHEMA_VERSION}, true)
                as is_other_version,
            {", ".join(f"{typed(n)} as {n}" for n in fields)},
            {text("occurred_at")} as occurred_at_text,
            {text("schema_version")} as schema_version_text,
            {text("event_id")} as raw_event_id
        from trimmed
    ),
    checked as (
        select
            *,
            case
                when read_error is not null then read_error
                when trim(line, {ws}) = '' then 'empty_line'
                when not is_json then 'invalid_json'
                when v is null then 'not_an_object'
                when has_duplicate_key then 'duplicate_key'
                when missing_fields <> '' then 'missing_required_field'
                when wrong_type_fields <> '' then 'wrong_type'
                when bad_token_fields <> '' then 'invalid_tokens'
                when status not in ('ok', 'error') or int_out_of_range or attempt < 1
                    or latency_ms < 0 then 'invalid_value'
                when is_other_version then 'unknown_schema_version'
                when regexp_matches(occurred_at_text, '{ts_local}') then 'timestamp_without_offset'
                when not regexp_matches(occurred_at_text, '{ts_offset}') or occurred_at is null
                    then 'timestamp_unparseable'
                {part_checks}
                when occurred_at < partition_hour
                    or occurred_at >= partition_hour + interval 1 hour
                    then 'timestamp_outside_partition'
                when occurred_at > timestamp '{(now + FUTURE_TOLERANCE):%Y-%m-%d %H:%M:%S}'
                    then 'timestamp_in_future'
            end as reason
        from typed
    ),
    held as (  -- the event ids of this batch that raw.llm_calls already holds, and where
        select event_id, min(partition_hour) as held_hour, min(source_file) as held_file
        from raw.llm_calls
        where event_id in (select event_id from checked where reason is null)
        group by 1
    ),
    deduplicated as (
        select
            checked.*,
            held.held_hour,
            held.held_file,
            first_value(checked.source_file || ' line ' || checked.line_number) over same_id
                as first_seen,
            case when checked.reason is null
                and (held.held_hour is not null or row_number() over same_id > 1)
                then 'duplicate_event_id' else checked.reason end as final_reason
        from checked
        left join held on checked.reason is null and held.event_id = checked.event_id
        window same_id as (
            partition by checked.reason is null, checked.event_id
            order by checked.partition_hour, checked.source_file, checked.line_number
        )
    )
    select
        partition_hour, source_file, line_number, line, raw_event_id, final_reason,
        {", ".join(fields)},
        case final_reason
            when 'missing_required_field' then 'missing: ' || trim(missing_fields)
            when 'wrong_type' then 'wrong type: ' || trim(wrong_type_fields)
            when 'invalid_tokens' then 'negative, non-integer or out of range: '
                || trim(bad_token_fields)
            when 'invalid_value' then 'status=' || coalesce(status, 'null')
                || ' attempt=' || coalesce({text("attempt")}, 'null')
                || ' latency_ms=' || coalesce(latency_ms::varchar, 'null')
            when 'unknown_schema_version' then 'schema_version=' || schema_version_text
            when 'timestamp_without_offset' then 'occurred_at=' || occurred_at_text
            when 'timestamp_unparseable' then 'occurred_at=' || coalesce(occurred_at_text, 'null')
            when 'timestamp_outside_partition' then 'occurred_at ' || occurred_at
                || ' UTC is not in the hour ' || partition_hour
            when 'timestamp_in_future' then 'occurred_at ' || occurred_at || ' UTC'
            {part_details}
            when 'line_too_long' then 'over {MAX_LINE_BYTES} bytes'
            when 'duplicate_key' then 'a key appears twice in the object or its tags'
            when 'duplicate_event_id' then case
                when held_hour is not null then 'already loaded in hour '
                    || strftime(held_hour, '%Y-%m-%d %H:00') || ' (' || held_file || ')'
                else 'first seen in ' || first_seen end
        end as reason_detail
    from deduplicated
    """
