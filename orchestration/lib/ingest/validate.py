"""Validation: the one DuckDB query that types every landed line and gives each bad one its
first reason. Its column list, types and required fields come from the call-event contract
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
"""

from __future__ import annotations

from datetime import datetime, timedelta

from orchestration.lib.ingest.landing import MAX_LINE_BYTES
from spendwatch.schema import FIELD_DEFAULTS, REQUIRED_FIELDS, SCHEMA_VERSION, WAREHOUSE_COLUMNS

FUTURE_TOLERANCE = timedelta(minutes=10)


def validate_sql(now: datetime) -> str:
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
