"""The dashboard's data: every figure aggregated in the warehouse, in SQL.

Each query returns a small, bounded table (columns → lists) whatever the number of calls:
hours × the top features × the top models, the top entities per scope, one row per incident.
Call rows never leave DuckDB. The page only filters, sums these pre-aggregated rows and
multiplies the per-token prices exported here; pricing rules stay in the dbt models.

Time: `as_of` is the end (exclusive) of the latest hour in the marts, so a report of history
loaded weeks ago still shows that history. Periods are counted back from it in whole hours:
a call's `age` is `as_of - hour_at` in hours (1 = the latest hour), so the last 24 h are the
ages 1..24 and the 24 h before them 25..48.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb

from spendwatch.warehouse import has_table

#: Series are drawn for the top features and models by spend; the rest are summed as "other".
TOP_FEATURES = 10
TOP_MODELS = 8
#: Top teams, users and endpoints kept per period and filter scope.
TOP_DRIVERS = 15
#: Most incidents listed (open ones first, then the most recent).
MAX_INCIDENTS = 300
#: Where an incident's last anomalous hour must be to count as still open: the latest hour or
#: the one before (one quiet hour does not end an incident).
OPEN_WITHIN_HOURS = 2
DRIVER_DIMENSIONS = {"team": "team_id", "user": "user_id", "endpoint": "endpoint"}
BAND_METRICS = ("calls", "cost_usd", "cost_per_call_usd", "cache_hit_rate")


class ReportError(ValueError):
    """The report cannot be built; the message says why and what to do."""


@dataclass(frozen=True)
class Window:
    """What the report covers: `days` of hourly detail ending at `as_of` (exclusive)."""

    as_of: datetime  # naive UTC, on the hour
    days: int
    environment: str | None
    today: date  # the date whose prices the calculator starts from

    @property
    def ranges(self) -> list[int]:
        """The periods (hours) the page's time-range filter offers: 24 h, 7 days, `days`."""
        hours = self.days * 24
        return [h for h in (24, 168) if h < hours] + [hours]

    @property
    def hourly_start(self) -> datetime:
        return self.as_of - timedelta(days=self.days)

    @property
    def lookback_start(self) -> datetime:
        """Far enough back for every period and the period before it."""
        return self.as_of - timedelta(hours=2 * max(self.ranges))

    @property
    def month_start(self) -> datetime:
        """The month `as_of` falls in (the latest hour's month)."""
        last = self.as_of - timedelta(hours=1)
        return last.replace(day=1, hour=0)

    @property
    def prev_month_start(self) -> datetime:
        return (self.month_start - timedelta(days=1)).replace(day=1)

    @property
    def cube_start(self) -> datetime:
        return min(self.lookback_start, self.prev_month_start)

    def params(self, *names: str) -> dict[str, object]:
        values = {
            "as_of": self.as_of,
            "env": self.environment,
            "hourly_start": self.hourly_start,
            "lookback_start": self.lookback_start,
            "cube_start": self.cube_start,
            "month_start": self.month_start,
            "prev_month_start": self.prev_month_start,
            "open_after": self.as_of - timedelta(hours=OPEN_WITHIN_HOURS),
            "today": self.today,
        }
        return {name: values[name] for name in names}


def ranges_sql(window: Window) -> str:
    """The periods as a VALUES list: (r = index, hours). Integers we chose, never user input."""
    rows = ", ".join(f"({i}, {hours})" for i, hours in enumerate(window.ranges))
    return f"(values {rows}) as ranges(r, hours)"


ENV_FILTER = "($env::varchar is null or environment = $env::varchar)"


def connect(warehouse: Path, wait_seconds: float = 60.0, on_wait: Callable | None = None):
    """A read-only connection, waiting while a writer (a materialization) holds the file."""
    from spendwatch.warehouse import WarehouseBusy, WarehouseMissing, open_warehouse

    try:
        con = open_warehouse(
            warehouse,
            read_only=True,
            wait_seconds=wait_seconds,
            on_wait=(lambda _holder: on_wait()) if on_wait else None,
            consequence="retry when it has finished",
        )
    except WarehouseMissing:
        raise ReportError(
            f"no warehouse at {warehouse}: run `spendwatch demo` or `spendwatch materialize` "
            "first (or point --home / SPENDWATCH_HOME at the spendwatch home that has one)"
        ) from None
    except WarehouseBusy as exc:
        raise ReportError(str(exc)) from None
    except duckdb.Error as exc:
        raise ReportError(f"cannot open the warehouse {warehouse}: {exc}") from exc
    con.execute("set TimeZone = 'UTC'")
    con.execute("set enable_progress_bar = false")
    return con


def columns_of(con, schema: str, name: str) -> set[str]:
    rows = con.execute(
        "select column_name from information_schema.columns where table_schema = ? "
        "and table_name = ?",
        [schema, name],
    ).fetchall()
    return {r[0] for r in rows}


def _value(v):
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, list):
        return [_value(x) for x in v]
    if isinstance(v, dict):
        return {k: _value(x) for k, x in v.items()}
    return v


def fetch(con, sql: str, params: dict | None = None) -> dict[str, list]:
    """Run a query and return its result as columns (name → list of JSON-ready values)."""
    cursor = con.execute(sql, params or {})
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    return {name: [_value(row[i]) for row in rows] for i, name in enumerate(names)}


# --------------------------------------------------------------------------------------------
# extent: what the warehouse holds


def extent(con, environment: str | None) -> dict:
    """The hours and environments in the marts; raises ReportError when there is nothing."""
    if not has_table(con, "marts", "agg_hourly_feature_cost"):
        raise ReportError(
            "the warehouse has no marts yet (marts.agg_hourly_feature_cost is missing): run "
            "`spendwatch demo` or `spendwatch materialize --start …` first"
        )
    first, last, rows = con.execute(
        f"select min(hour_at), max(hour_at), count(*) from marts.agg_hourly_feature_cost "
        f"where calls > 0 and {ENV_FILTER}",
        {"env": environment},
    ).fetchone()
    if not rows:
        if environment:
            known = [
                r[0]
                for r in con.execute(
                    "select distinct environment from marts.agg_hourly_feature_cost "
                    "where calls > 0 order by 1"
                ).fetchall()
            ]
            if known:
                raise ReportError(
                    f"environment {environment!r} has no calls in the warehouse; environments "
                    f"with calls: {', '.join(known)}"
                )
        raise ReportError(
            "the warehouse is empty (no calls in marts.agg_hourly_feature_cost): run "
            "`spendwatch demo`, or land call logs and run `spendwatch materialize --start …`"
        )
    return {"first_hour": first, "last_hour": last}


def environments(con, window: Window) -> list[str]:
    rows = con.execute(
        f"""
        select environment from marts.agg_hourly_feature_cost
        where hour_at >= $cube_start and hour_at < $as_of and {ENV_FILTER}
        group by environment having sum(calls) > 0
        order by sum(cost_usd) desc, sum(calls) desc, environment
        """,
        window.params("cube_start", "as_of", "env"),
    ).fetchall()
    return [r[0] for r in rows]


# --------------------------------------------------------------------------------------------
# the cube: hour × environment × feature × model, from fct_llm_calls, kept in a temp table


def build_cube(con, window: Window) -> None:
    """One scan of the calls of the period shown (and the periods compared with it)."""
    con.execute(
        f"""
        create or replace temp table report_cube as
        select
            hour_at,
            date_diff('hour', hour_at, $as_of) as age,
            environment,
            feature,
            provider,
            canonical_model as model,
            count(*) as calls,
            count(*) filter (where is_priced) as priced_calls,
            count(*) filter (where cache_read_tokens > 0) as cache_hit_calls,
            count(*) filter (where is_error) as error_calls,
            count(*) filter (where is_retry) as retry_calls,
            count(*) filter (where is_long_context) as long_context_calls,
            sum(input_tokens) as input_tokens,
            sum(output_tokens) as output_tokens,
            sum(cache_read_tokens) as cache_read_tokens,
            sum(cache_write_tokens) as cache_write_tokens,
            coalesce(sum(cost_usd), 0) as cost_usd,
            coalesce(sum(input_cost_usd), 0) as input_cost_usd,
            coalesce(sum(cache_read_cost_usd), 0) as cache_read_cost_usd,
            coalesce(sum(cache_write_cost_usd), 0) as cache_write_cost_usd,
            coalesce(sum(output_cost_usd), 0) as output_cost_usd,
            coalesce(sum(cache_savings_usd), 0) as cache_savings_usd
        from marts.fct_llm_calls
        where hour_at >= $cube_start and hour_at < $as_of and {ENV_FILTER}
        group by all
        """,
        window.params("as_of", "cube_start", "env"),
    )
    # the features and models drawn as series of their own (by spend over the days shown)
    con.execute(
        """
        create or replace temp table report_top_features as
        select feature, row_number() over (order by sum(cost_usd) desc, sum(calls) desc,
            feature) - 1 as idx
        from report_cube where hour_at >= $hourly_start
        group by feature
        qualify idx < $top
        """,
        {"hourly_start": window.hourly_start, "top": TOP_FEATURES},
    )
    con.execute(
        """
        create or replace temp table report_top_models as
        select provider, model, row_number() over (order by sum(cost_usd) desc,
            sum(calls) desc, provider, model) - 1 as idx
        from report_cube where hour_at >= $hourly_start
        group by provider, model
        qualify idx < $top
        """,
        {"hourly_start": window.hourly_start, "top": TOP_MODELS},
    )


def top_lists(con) -> dict[str, list]:
    features = [r[0] for r in con.execute("from report_top_features order by idx").fetchall()]
    models = [
        {"provider": r[0], "model": r[1]}
        for r in con.execute(
            "select provider, model from report_top_models order by idx"
        ).fetchall()
    ]
    return {"features": features, "models": models}


def _series(con, window: Window, bucket: str, start_param: str) -> dict[str, list]:
    """Calls and spend per time bucket × environment × top feature × top model (-1 = other)."""
    return fetch(
        con,
        f"""
        select
            {bucket} as t,
            cube.environment as e,
            coalesce(top_features.idx, -1) as f,
            coalesce(top_models.idx, -1) as m,
            sum(cube.calls) as calls,
            round(sum(cube.cost_usd), 6)::double as cost
        from report_cube as cube
        left join report_top_features as top_features on top_features.feature = cube.feature
        left join report_top_models as top_models
            on top_models.provider = cube.provider and top_models.model = cube.model
        where cube.hour_at >= ${start_param}
        group by all
        order by 1, 2, 3, 4
        """,
        {start_param: window.params(start_param)[start_param]},
    )


def hourly_series(con, window: Window) -> dict[str, list]:
    """Hourly for the days shown; `t` is the hour's offset from the first hour shown."""
    bucket = "date_diff('hour', $hourly_start, cube.hour_at)"
    return _series(con, window, bucket, "hourly_start")


def daily_series(con, window: Window) -> dict[str, list]:
    """Daily since the start of the previous month; `t` is the day's offset from it."""
    bucket = "date_diff('day', $prev_month_start, date_trunc('day', cube.hour_at))"
    return _series(con, window, bucket, "prev_month_start")


def feature_model_periods(con, window: Window) -> dict[str, list]:
    """Per period r (and the period before it): every environment × feature × model with its
    volumes, tokens, cost components and cache figures. Small (no time axis); the page sums
    it for the drivers of features and models, the cache section and the calculator."""
    return fetch(
        con,
        f"""
        select
            ranges.r,
            environment, feature, provider, model,
            sum(calls) filter (where age <= hours) as calls,
            sum(priced_calls) filter (where age <= hours) as priced_calls,
            sum(cache_hit_calls) filter (where age <= hours) as cache_hit_calls,
            sum(error_calls) filter (where age <= hours) as error_calls,
            sum(retry_calls) filter (where age <= hours) as retry_calls,
            sum(long_context_calls) filter (where age <= hours) as long_context_calls,
            sum(input_tokens) filter (where age <= hours) as input_tokens,
            sum(output_tokens) filter (where age <= hours) as output_tokens,
            sum(cache_read_tokens) filter (where age <= hours) as cache_read_tokens,
            sum(cache_write_tokens) filter (where age <= hours) as cache_write_tokens,
            round(sum(cost_usd) filter (where age <= hours), 6)::double as cost,
            round(sum(input_cost_usd) filter (where age <= hours), 6)::double as input_cost,
            round(sum(cache_read_cost_usd) filter (where age <= hours), 6)::double
                as cache_read_cost,
            round(sum(cache_write_cost_usd) filter (where age <= hours), 6)::double
                as cache_write_cost,
            round(sum(output_cost_usd) filter (where age <= hours), 6)::double as output_cost,
            round(sum(cache_savings_usd) filter (where age <= hours), 6)::double
                as cache_savings,
            coalesce(sum(calls) filter (where age > hours), 0) as prev_calls,
            coalesce(sum(priced_calls) filter (where age > hours), 0) as prev_priced_calls,
            coalesce(round(sum(cost_usd) filter (where age > hours), 6), 0)::double as prev_cost,
            min(hour_at) filter (where age <= hours and calls > priced_calls)
                as first_unpriced_hour,
            max(hour_at) filter (where age <= hours and calls > priced_calls)
                as last_unpriced_hour
        from report_cube
        cross join {ranges_sql(window)}
        where age >= 1 and age <= 2 * hours
        group by all
        having sum(calls) filter (where age <= hours) > 0
        order by 1, cost desc, calls desc
        """,
    )


def _case(whens) -> str:
    return "case " + " ".join(f"when {cond} then {value}" for cond, value in whens) + " end"


def drivers(con, window: Window) -> dict[str, list]:
    """The top teams, users and endpoints by spend per period and filter scope (every
    environment or one × every feature or one of the top features), with the period before.

    One scan: the calls are first summed per entity and age bucket (the buckets end at each
    period's length and twice it), which leaves far fewer rows than calls; the periods and
    the twelve filter scopes are then sums over those rows."""
    bounds = sorted({h for hours in window.ranges for h in (hours, 2 * hours)})
    bucket = _case((f"age <= {b}", str(i)) for i, b in enumerate(bounds))
    sums = ",\n".join(
        f"""sum(calls) filter (where bucket <= {bounds.index(h)}) as calls_{i},
            sum(priced_calls) filter (where bucket <= {bounds.index(h)}) as priced_calls_{i},
            coalesce(sum(cost) filter (where bucket <= {bounds.index(h)}), 0) as cost_{i},
            coalesce(sum(calls) filter (where bucket > {bounds.index(h)}
                and bucket <= {bounds.index(2 * h)}), 0) as prev_calls_{i},
            coalesce(sum(cost) filter (where bucket > {bounds.index(h)}
                and bucket <= {bounds.index(2 * h)}), 0) as prev_cost_{i}"""
        for i, h in enumerate(window.ranges)
    )
    sets = ", ".join(
        f"(environment, feature, {k}), (environment, {k}), (feature, {k}), ({k})"
        for k in DRIVER_DIMENSIONS.values()
    )
    dimension = _case(
        (f"grouping({column}) = 0", f"'{name}'") for name, column in DRIVER_DIMENSIONS.items()
    )
    key = _case((f"grouping({column}) = 0", column) for column in DRIVER_DIMENSIONS.values())
    long = "\nunion all\n".join(
        f"""select dim, {i} as r, all_env, all_feat, environment, feature, key,
            calls_{i} as calls, priced_calls_{i} as priced_calls, cost_{i} as cost,
            prev_calls_{i} as prev_calls, prev_cost_{i} as prev_cost
        from scoped where calls_{i} > 0"""
        for i in range(len(window.ranges))
    )
    columns = ", ".join(DRIVER_DIMENSIONS.values())
    return fetch(
        con,
        f"""
        with aged as (
            select environment, feature, {columns}, is_priced, cost_usd,
                date_diff('hour', hour_at, $as_of) as age
            from marts.fct_llm_calls
            where hour_at >= $lookback_start and hour_at < $as_of and {ENV_FILTER}
        ),
        bucketed as (
            select environment, feature, {columns}, {bucket} as bucket,
                count(*) as calls,
                count(*) filter (where is_priced) as priced_calls,
                coalesce(sum(cost_usd), 0) as cost
            from aged
            group by all
        ),
        scoped as (
            select
                {dimension} as dim,
                grouping(environment) = 1 as all_env,
                grouping(feature) = 1 as all_feat,
                environment, feature,
                {key} as key,
                {sums}
            from bucketed
            group by grouping sets ({sets})
        ),
        long as (
            {long}
        ),
        ranked as (
            select *, row_number() over (
                partition by dim, r, all_env, all_feat, environment, feature
                order by cost desc, calls desc, key nulls last
            ) as rank
            from long
            where all_feat or feature in (select feature from report_top_features)
        )
        select dim, r, all_env, all_feat, environment, feature, key, calls, priced_calls,
            round(cost, 6)::double as cost, prev_calls, round(prev_cost, 6)::double as prev_cost
        from ranked
        where rank <= {TOP_DRIVERS}
        order by dim, r, all_env, all_feat, environment, feature, rank
        """,
        window.params("as_of", "lookback_start", "env"),
    )


def band(con, window: Window) -> dict[str, list]:
    """Each top feature's monitored metrics with their seasonal baselines, hour by hour."""
    metric_columns = ",\n".join(
        f"round({m}, 6)::double as {m}, round({m}_baseline, 6)::double as {m}_baseline, "
        f"round({m}_stddev, 6)::double as {m}_stddev"
        for m in BAND_METRICS
    )
    return fetch(
        con,
        f"""
        select
            date_diff('hour', $hourly_start, hour_at) as t,
            environment as e,
            top_features.idx as f,
            baseline_kind as kind,
            {metric_columns}
        from marts.agg_hourly_feature_cost as mart
        inner join report_top_features as top_features using (feature)
        where hour_at >= $hourly_start and hour_at < $as_of and {ENV_FILTER}
        order by 1, 2, 3
        """,
        window.params("hourly_start", "as_of", "env"),
    )


def anomaly_hours(con, window: Window) -> dict[str, list]:
    """The hours each top feature had anomalies in (per environment), for the baseline chart.
    Budget burn is a month-long verdict on spend to date, not on the hour: left out."""
    if not has_table(con, "marts", "anomalies"):
        return {}
    return fetch(
        con,
        f"""
        select
            date_diff('hour', $hourly_start, hour_at) as t,
            environment as e,
            top_features.idx as f,
            string_agg(distinct detector, ', ' order by detector) as detectors
        from marts.anomalies
        inner join report_top_features as top_features using (feature)
        where hour_at >= $hourly_start and hour_at < $as_of and detector <> 'budget_burn'
            and {ENV_FILTER}
        group by all
        order by 1, 2, 3
        """,
        window.params("hourly_start", "as_of", "env"),
    )


# --------------------------------------------------------------------------------------------
# KPIs: from the hourly feature mart, per filter scope


def kpis(con, window: Window) -> dict[str, list]:
    """The headline figures per scope (every environment or one × every feature or one):
    last 24 h against the 24 h before, month to date against the same span of the previous
    month, and month-end projected linearly over the hours elapsed (as the budget_burn
    detector projects)."""
    month_start = window.month_start
    elapsed = window.as_of - month_start
    prev_cutoff = min(window.prev_month_start + elapsed, month_start)
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    hours_in_month = int((next_month - month_start) / timedelta(hours=1))
    hours_elapsed = int(elapsed / timedelta(hours=1))
    params = {
        "as_of": window.as_of,
        "env": window.environment,
        "d1": window.as_of - timedelta(hours=24),
        "d2": window.as_of - timedelta(hours=48),
        "month_start": month_start,
        "prev_month_start": window.prev_month_start,
        "prev_cutoff": prev_cutoff,
        "start": min(window.prev_month_start, window.as_of - timedelta(hours=48)),
    }
    return fetch(
        con,
        f"""
        with hourly as (
            select hour_at, environment, feature, calls, priced_calls, unpriced_calls,
                cost_usd, cache_savings_usd
            from marts.agg_hourly_feature_cost
            where hour_at >= $start and hour_at < $as_of and {ENV_FILTER}
        ),
        scoped as (
            select
                grouping(environment) = 1 as all_env,
                grouping(feature) = 1 as all_feat,
                environment, feature,
                coalesce(sum(cost_usd) filter (where hour_at >= $d1), 0) as spend_24h,
                coalesce(sum(cost_usd) filter (where hour_at >= $d2 and hour_at < $d1), 0)
                    as spend_prev_24h,
                coalesce(sum(calls) filter (where hour_at >= $d1), 0) as calls_24h,
                coalesce(sum(calls) filter (where hour_at >= $d2 and hour_at < $d1), 0)
                    as calls_prev_24h,
                coalesce(sum(priced_calls) filter (where hour_at >= $d1), 0) as priced_24h,
                coalesce(sum(priced_calls) filter (where hour_at >= $d2 and hour_at < $d1), 0)
                    as priced_prev_24h,
                coalesce(sum(unpriced_calls) filter (where hour_at >= $d1), 0) as unpriced_24h,
                coalesce(sum(unpriced_calls) filter (where hour_at >= $d2 and hour_at < $d1),
                    0) as unpriced_prev_24h,
                coalesce(sum(cache_savings_usd) filter (where hour_at >= $d1), 0)
                    as savings_24h,
                coalesce(sum(cache_savings_usd) filter (where hour_at >= $d2
                    and hour_at < $d1), 0) as savings_prev_24h,
                coalesce(sum(cost_usd) filter (where hour_at >= $month_start), 0) as spend_mtd,
                coalesce(sum(cost_usd) filter (where hour_at >= $prev_month_start
                    and hour_at < $prev_cutoff), 0) as spend_prev_mtd,
                coalesce(sum(cost_usd) filter (where hour_at >= $prev_month_start
                    and hour_at < $month_start), 0) as spend_prev_month
            from hourly
            group by grouping sets ((environment, feature), (environment), (feature), ())
        )
        select
            all_env, all_feat, environment, feature,
            round(spend_24h, 6)::double as spend_24h,
            round(spend_prev_24h, 6)::double as spend_prev_24h,
            calls_24h, calls_prev_24h,
            round(spend_24h / nullif(priced_24h, 0), 8)::double as cost_per_call_24h,
            round(spend_prev_24h / nullif(priced_prev_24h, 0), 8)::double
                as cost_per_call_prev_24h,
            unpriced_24h, unpriced_prev_24h,
            round(savings_24h, 6)::double as savings_24h,
            round(savings_prev_24h, 6)::double as savings_prev_24h,
            round(spend_mtd, 6)::double as spend_mtd,
            round(spend_prev_mtd, 6)::double as spend_prev_mtd,
            round(spend_prev_month, 6)::double as spend_prev_month,
            round(spend_mtd / {hours_elapsed} * {hours_in_month}, 6)::double
                as projected_month_end
        from scoped
        """,
        params,
    )


def budgets(con, window: Window) -> dict[str, list]:
    """Monthly feature budgets summed per scope (team budgets overlap features: not added)."""
    if not has_table(con, "seeds", "budgets"):
        return {}
    return fetch(
        con,
        f"""
        select
            grouping(environment) = 1 as all_env,
            grouping(name) = 1 as all_feat,
            environment,
            name as feature,
            sum(monthly_budget_usd)::double as budget_usd
        from seeds.budgets
        where scope = 'feature' and {ENV_FILTER}
        group by grouping sets ((environment, name), (environment), (name), ())
        """,
        window.params("env"),
    )


def team_budgets(con, window: Window) -> dict[str, list]:
    if not has_table(con, "seeds", "budgets"):
        return {}
    return fetch(
        con,
        f"""
        select environment, name as team, monthly_budget_usd::double as budget_usd
        from seeds.budgets where scope = 'team' and {ENV_FILTER}
        """,
        window.params("env"),
    )


# --------------------------------------------------------------------------------------------
# incidents


INCIDENTS_SQL = f"""
with rows as (
    select *, case severity when 'critical' then 2 else 1 end as severity_rank
    from marts.anomalies
    where {ENV_FILTER}
),
grouped as (
    select
        incident_key,
        any_value(detector) as detector,
        any_value(metric) as metric,
        any_value(feature) as feature,
        any_value(environment) as environment,
        any_value(model) as model,
        any_value(team_id) as team_id,
        max(severity_rank) as severity_rank,
        min(hour_at) as first_hour,
        max(hour_at) as last_hour,
        min(incident_started_at) as incident_started_at,
        count(distinct hour_at) as hours,
        sum(estimated_excess_cost_usd) as excess_usd
    from rows
    group by incident_key
),
peaks as (
    select *
    from rows
    qualify row_number() over (
        partition by incident_key
        order by severity_rank desc, estimated_excess_cost_usd desc nulls last,
            abs(z_score) desc nulls last, hour_at desc
    ) = 1
),
final as (
    select
        grouped.incident_key,
        grouped.detector,
        case grouped.severity_rank when 2 then 'critical' else 'warning' end as severity,
        grouped.metric,
        grouped.feature,
        grouped.environment,
        grouped.model,
        grouped.team_id,
        grouped.first_hour,
        grouped.last_hour,
        grouped.incident_started_at,
        grouped.hours,
        round(grouped.excess_usd, 6)::double as excess_usd,
        grouped.last_hour >= $open_after as is_open,
        peaks.hour_at as peak_hour,
        peaks.observed_value::double as observed_value,
        peaks.baseline_value::double as baseline_value,
        peaks.z_score::double as z_score,
        peaks.ratio_to_baseline::double as ratio_to_baseline,
        peaks.message,
        peaks.runbook,
        -- why the peak hour cost more (cost findings): its drivers, sorted by |usd|
        peaks.top_driver,
        peaks.top_driver_usd::double as top_driver_usd,
        peaks.drivers
    from grouped
    inner join peaks using (incident_key)
    where grouped.last_hour >= $hourly_start and grouped.first_hour < $as_of
)
select * from final
order by is_open desc, severity = 'critical' desc, last_hour desc, excess_usd desc nulls last,
    incident_key
limit {MAX_INCIDENTS}
"""


def incidents(con, window: Window) -> dict[str, list]:
    if not has_table(con, "marts", "anomalies"):
        return {}
    return fetch(con, INCIDENTS_SQL, window.params("env", "open_after", "hourly_start", "as_of"))


def incident_counts(con, window: Window) -> dict[str, list]:
    """Open incidents now and 24 h earlier, and new ones in the last 24 h, per scope."""
    if not has_table(con, "marts", "anomalies"):
        return {}
    earlier = window.as_of - timedelta(hours=24)
    return fetch(
        con,
        f"""
        with incidents as (
            select incident_key, any_value(environment) as environment,
                any_value(feature) as feature, min(hour_at) as first_hour,
                max(hour_at) as last_hour
            from marts.anomalies
            where hour_at < $as_of and {ENV_FILTER}
            group by incident_key
        ),
        spans as (
            -- the same incident as it stood 24 h ago: its hours before then
            select incident_key, max(hour_at) as last_hour_then
            from marts.anomalies
            where hour_at < $earlier and {ENV_FILTER}
            group by incident_key
        )
        select
            grouping(environment) = 1 as all_env,
            grouping(feature) = 1 as all_feat,
            environment, feature,
            count(*) filter (where last_hour >= $open_after) as open_now,
            count(*) filter (where last_hour_then >= $open_before) as open_24h_ago,
            count(*) filter (where first_hour >= $earlier) as new_24h
        from incidents
        left join spans using (incident_key)
        group by grouping sets ((environment, feature), (environment), (feature), ())
        """,
        {
            **window.params("as_of", "env", "open_after"),
            "earlier": earlier,
            "open_before": earlier - timedelta(hours=OPEN_WITHIN_HOURS),
        },
    )


DELIVERY_COLUMNS = ("incident_key", "alert_kind", "channel", "status", "attempts", "last_error",
                    "sent_at")  # fmt: skip


def deliveries(con, keys: list[str]) -> dict[str, list] | None:
    """Delivery state per incident from ops.alert_deliveries; None when alerting is not set up."""
    if not has_table(con, "ops", "alert_deliveries"):
        return None
    present = columns_of(con, "ops", "alert_deliveries")
    missing = [c for c in DELIVERY_COLUMNS if c not in present]
    if missing:
        return None
    if not keys:
        return {"incident_key": [], "deliveries": []}
    return fetch(
        con,
        """
        select
            incident_key,
            list({
                'channel': channel, 'alert_kind': alert_kind, 'status': status,
                'attempts': attempts, 'last_error': left(last_error, 300),
                'sent_at': strftime(sent_at, '%Y-%m-%d %H:%M')
            } order by channel, alert_kind) as deliveries
        from ops.alert_deliveries
        where list_contains($keys, incident_key)
        group by incident_key
        """,
        {"keys": keys},
    )


# --------------------------------------------------------------------------------------------
# data quality


def rejected(con, window: Window) -> dict[str, list]:
    """Rejected landing lines per reason and period (no environment: a rejected line's
    fields are not trusted)."""
    if not has_table(con, "raw", "llm_calls_rejected"):
        return {}
    return fetch(
        con,
        f"""
        with lines as (
            select reason, reason_detail, partition_hour,
                date_diff('hour', partition_hour, $as_of) as age
            from raw.llm_calls_rejected
            where partition_hour >= $hourly_start and partition_hour < $as_of
        )
        select ranges.r, reason, count(*) as lines,
            arg_max(left(reason_detail, 200), partition_hour) as example,
            max(partition_hour) as last_hour
        from lines cross join {ranges_sql(window)}
        where age <= hours
        group by all
        order by 1, lines desc, reason
        """,
        window.params("as_of", "hourly_start"),
    )


def load_log(con, window: Window) -> dict[str, list]:
    if not has_table(con, "raw", "load_log"):
        return {}
    return fetch(
        con,
        f"""
        with files as (
            select *, date_diff('hour', partition_hour, $as_of) as age
            from raw.load_log
            where partition_hour >= $hourly_start and partition_hour < $as_of
        )
        select ranges.r, count(*) as files, coalesce(sum(lines), 0) as lines,
            coalesce(sum(loaded), 0) as loaded, coalesce(sum(rejected), 0) as rejected,
            count(distinct partition_hour) as hours_with_files, max(hours) as hours
        from {ranges_sql(window)} left join files on age <= hours
        group by ranges.r
        order by 1
        """,
        window.params("as_of", "hourly_start"),
    )


def usage_detail(con, window: Window) -> dict[str, list]:
    """Calls whose usage lacked a detail that changes their price (marts.agg_hourly_usage_detail)
    per period, series and kind: how many, of how many calls of the series, at what cost."""
    if not has_table(con, "marts", "agg_hourly_usage_detail"):
        return {}
    return fetch(
        con,
        f"""
        with rows as (
            select *, date_diff('hour', hour_at, $as_of) as age
            from marts.agg_hourly_usage_detail
            where hour_at >= $hourly_start and hour_at < $as_of and {ENV_FILTER}
        )
        select ranges.r, usage_detail, provider, model, feature, environment,
            sum(calls) as calls, sum(series_calls) as series_calls,
            sum(input_tokens) as input_tokens, sum(cost_usd) as cost_usd,
            min(hour_at) as first_hour, max(hour_at) as last_hour
        from rows cross join {ranges_sql(window)}
        where age <= hours
        group by all
        order by 1, calls desc, provider, model, feature
        """,
        window.params("as_of", "hourly_start", "env"),
    )


def checks(con, window: Window) -> dict[str, list]:
    """The data-quality checks (ops.check_results) of the last 24 hours, one row per check."""
    if not has_table(con, "ops", "check_results"):
        return {}
    return fetch(
        con,
        """
        select
            asset, suite, check_name, severity,
            count(*) as hours,
            count(*) filter (where not passed) as failed_hours,
            max(partition_hour) filter (where not passed) as last_failed_hour,
            arg_max(observed_value, partition_hour) filter (where not passed)
                as last_failed_observed,
            arg_max(left(details, 300), partition_hour) filter (where not passed)
                as last_failed_details,
            max(checked_at) as last_checked_at
        from ops.check_results
        where partition_hour >= $since and partition_hour < $as_of
        group by asset, suite, check_name, severity
        order by failed_hours desc, severity = 'error' desc, suite, check_name
        """,
        {"since": window.as_of - timedelta(hours=24), "as_of": window.as_of},
    )


# --------------------------------------------------------------------------------------------
# prices for the model-cost calculator


def prices(con) -> dict[str, list]:
    """Per-token prices of every catalog model (dated snapshot names that alias another model
    are left out: pick the model and a price date), from the warehouse's price model
    staging.stg_seeds__model_prices, which resolves cache and long-context defaults. The page looks
    up the row valid at the chosen date and multiplies."""
    return fetch(
        con,
        """
        with catalog as (
            select * from seeds.model_catalog
        ),
        snapshot_names as (
            select provider, lower(alias) as alias
            from staging.stg_seeds__model_aliases
            where match_type = 'exact'
        ),
        models as (
            select catalog.*
            from catalog
            anti join snapshot_names
                on snapshot_names.provider = lower(catalog.provider)
                and snapshot_names.alias = lower(catalog.model)
        )
        select
            prices.provider,
            prices.model,
            models.family,
            models.tier,
            models.context_window_tokens,
            prices.price_id,
            cast(prices.valid_from as date) as valid_from,
            case when prices.valid_to < timestamp '9999-01-01'
                then cast(prices.valid_to as date) end as valid_to,
            prices.input_usd_per_mtok::double as input_usd_per_mtok,
            prices.output_usd_per_mtok::double as output_usd_per_mtok,
            prices.input_usd_per_mtok::double / 1e6 as input_usd_per_token,
            prices.output_usd_per_mtok::double / 1e6 as output_usd_per_token,
            prices.cache_read_usd_per_mtok::double / 1e6 as cache_read_usd_per_token,
            prices.cache_write_usd_per_mtok::double / 1e6 as cache_write_usd_per_token,
            prices.long_context_threshold_tokens,
            prices.long_input_usd_per_mtok::double / 1e6 as long_input_usd_per_token,
            prices.long_output_usd_per_mtok::double / 1e6 as long_output_usd_per_token,
            prices.long_cache_read_usd_per_mtok::double / 1e6 as long_cache_read_usd_per_token,
            prices.long_cache_write_usd_per_mtok::double / 1e6
                as long_cache_write_usd_per_token,
            prices.batch_discount::double as batch_discount,
            prices.source
        from staging.stg_seeds__model_prices as prices
        inner join models
            on lower(models.provider) = prices.provider and models.model = prices.model
        order by prices.provider, prices.model, prices.valid_from
        """,
    )


# --------------------------------------------------------------------------------------------
# reconciliation with the providers' bills (marts.cost_reconciliation, when a report was imported)

#: days of reconciliation the page shows, up to the mart's latest day
RECONCILIATION_DAYS = 31
RECONCILIATION_COLUMNS = (
    "day", "provider", "model", "token_kind", "billed_usd", "computed_usd", "difference_usd",
    "difference_pct", "billed_tokens", "recorded_tokens", "unpriced_calls", "likely_cause",
    "line_items", "severity",
)  # fmt: skip


def reconciliation(con) -> dict[str, list]:
    """Billed against computed per day, provider and model (unmapped billed lines apart), with
    the invoice_drift severity: the rows `spendwatch reconcile show` prints. Empty when no
    report was imported."""
    if not has_table(con, "marts", "cost_reconciliation"):
        return {}
    from spendwatch.reconcile.show import reconciliation_rows

    rows = reconciliation_rows(con, RECONCILIATION_DAYS)
    return {name: [_value(getattr(row, name)) for row in rows] for name in RECONCILIATION_COLUMNS}
