"""The figures an export sends: one SQL query over `marts.agg_hourly_feature_model_cost`.

The mart already holds every number (calls, tokens, cost, cost per call, cache hit rate per
hour × feature × environment × provider × model); the query only turns its columns into points
(one row per hour, series and metric), drops the nulls (cost per call of an hour without priced
calls) and, per hour, counts the points and takes a fingerprint of them (md5 over the sorted
points), which the export log keeps so that an hour the pipeline rebuilt with other figures is
sent again. Without an explicit range it keeps the complete hours of the last `LOOKBACK` that
were never sent, not sent completely, or changed since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb

from spendwatch.warehouse import has_table

#: how far back an export without a range looks for hours not yet sent
LOOKBACK = timedelta(days=7)
MART = "marts.agg_hourly_feature_model_cost"


@dataclass(frozen=True)
class Metric:
    """One exported metric: its name, the mart column it reads, the token type it stands for
    (`llm.tokens` only) and its CloudWatch unit."""

    name: str
    column: str
    token_type: str | None
    cloudwatch_unit: str


#: What is exported, in this order. `llm.tokens{token_type:input}` is every input token, the
#: cached ones included (the warehouse's contract): cache_read and cache_write are parts of it.
METRICS = (
    Metric("llm.calls", "calls", None, "Count"),
    Metric("llm.tokens", "input_tokens", "input", "Count"),
    Metric("llm.tokens", "output_tokens", "output", "Count"),
    Metric("llm.tokens", "cache_read_tokens", "cache_read", "Count"),
    Metric("llm.tokens", "cache_write_tokens", "cache_write", "Count"),
    Metric("llm.cost_usd", "cost_usd", None, "None"),
    Metric("llm.cost_per_call_usd", "cost_per_call_usd", None, "None"),
    Metric("llm.cache_hit_rate", "cache_hit_rate", None, "None"),
)
#: the series' tags (Datadog) and dimensions (CloudWatch), from the mart's grain
DIMENSIONS = ("feature", "model", "provider", "environment")


@dataclass(frozen=True)
class Point:
    hour_at: datetime  # naive UTC, as the warehouse stores it
    timestamp: int  # the hour's start, epoch seconds
    metric: str
    token_type: str | None
    feature: str
    model: str
    provider: str
    environment: str
    value: float

    def dimensions(self) -> dict[str, str]:
        found = {d: getattr(self, d) for d in DIMENSIONS}
        if self.token_type is not None:
            found["token_type"] = self.token_type
        return found


@dataclass(frozen=True)
class Hour:
    """An hour due for export: how many points it has and their fingerprint."""

    hour_at: datetime
    points: int
    fingerprint: str


def _literal(text: str | None) -> str:
    return "null" if text is None else "'" + text.replace("'", "''") + "'"


def _metrics_values() -> str:
    rows = ", ".join(
        f"({i}, '{m.name}', {_literal(m.token_type)}, '{m.column}')" for i, m in enumerate(METRICS)
    )
    return f"metrics (metric_order, metric, token_type, measure) as (values {rows})"


def _value_case() -> str:
    whens = " ".join(
        f"when '{m.column}' then cast(mart.{m.column} as double)"
        for m in dict((m.column, m) for m in METRICS).values()
    )
    return f"case metrics.measure {whens} end"


def points_sql(only_due: bool, exported_table: bool) -> str:
    """The one query: the points of the hours in [$start, $end) — all of them, or (`only_due`)
    those the log does not show as sent with the same fingerprint for $destination."""
    exported = (
        "select hour_at, status, fingerprint from ops.metric_exports "
        "where destination = $destination"
        if exported_table
        else "select cast(null as timestamp) as hour_at, cast(null as varchar) as status, "
        "cast(null as varchar) as fingerprint where false"
    )
    due_filter = (
        "where exported.hour_at is null or exported.status <> 'sent' "
        "or exported.fingerprint <> hours.fingerprint"
        if only_due
        else ""
    )
    return f"""
with mart as (
    select hour_at, {", ".join(DIMENSIONS)}, {", ".join(dict.fromkeys(m.column for m in METRICS))}
    from {MART}
    where hour_at >= $start and hour_at < $end
),

{_metrics_values()},

points as (
    select
        mart.hour_at,
        metrics.metric_order,
        metrics.metric,
        metrics.token_type,
        {", ".join(f"mart.{d}" for d in DIMENSIONS)},
        {_value_case()} as value
    from mart
    cross join metrics
),

kept as (
    select * from points where value is not null
),

hours as (
    select
        hour_at,
        count(*) as points,
        md5(string_agg(
            concat_ws('|', metric, coalesce(token_type, ''), {", ".join(DIMENSIONS)},
                      cast(value as varchar)),
            chr(10) order by metric_order, {", ".join(DIMENSIONS)}
        )) as fingerprint
    from kept
    group by hour_at
),

exported as (
    {exported}
),

due as (
    select hours.*
    from hours
    left join exported on exported.hour_at = hours.hour_at
    {due_filter}
),

final as (
    select
        kept.hour_at,
        cast(epoch(kept.hour_at) as bigint) as timestamp,
        kept.metric,
        kept.token_type,
        {", ".join(f"kept.{d}" for d in DIMENSIONS)},
        kept.value,
        due.points,
        due.fingerprint
    from kept
    inner join due on due.hour_at = kept.hour_at
)

select * from final
order by hour_at, metric, token_type nulls first, {", ".join(DIMENSIONS)}
"""


def read_points(
    con: duckdb.DuckDBPyConnection,
    destination: str,
    start: datetime,
    end: datetime,
    only_due: bool,
) -> tuple[list[Point], list[Hour]]:
    """The points of [start, end) (naive UTC) and the hours they belong to, in hour order."""
    if not has_table(con, "marts", "agg_hourly_feature_model_cost"):
        raise FileNotFoundError(
            f"no {MART} in the warehouse: materialize first (`spendwatch materialize --start "
            "...` or `spendwatch demo`)"
        )
    logged = has_table(con, "ops", "metric_exports")
    params = {"start": start, "end": end} | ({"destination": destination} if logged else {})
    rows = con.execute(points_sql(only_due, logged), params).fetchall()
    points: list[Point] = []
    hours: dict[datetime, Hour] = {}
    for hour_at, ts, metric, token_type, feature, model, provider, env, value, n, fp in rows:
        points.append(Point(hour_at, ts, metric, token_type, feature, model, provider, env, value))
        hours.setdefault(hour_at, Hour(hour_at, n, fp))
    return points, list(hours.values())
