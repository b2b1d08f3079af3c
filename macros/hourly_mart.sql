{#- The body of an hourly series mart (feature, model, ...): aggregate the calls CTE per hour
    and series, give every active series a row in every hour (zeros when silent), score every
    monitored metric against its dynamic baseline, keep the run's window.

    Expects a CTE named `calls` with the columns of hourly_metric_inputs() and the series
    columns, limited with series_mart_calls_filter('hour_at').

    The metric history is data, as in Elementary: an hour's score needs the hourly sums of the
    hourly_lookback_hours() before it (72 days with the defaults), not the calls behind them.
    When the mart is incremental and the run has a window, those hours are read from the mart's
    own rows (additive columns per hour and series, a few tens of thousands of rows), and only
    the window's calls from fct_llm_calls, so the cost of an hourly run does not grow with the
    calls of the history. The mart stores a row for every hour with calls (it always has one
    active hour in its past week: itself); its rows of silent hours are zeros the grid
    recreates, so only rows with calls are read: the same `hourly` rows as aggregating the calls
    again. The first run (no table yet), a --full-refresh and a run without window vars read the
    calls. -#}
{% macro hourly_series_mart(series) -%}
{%- set keys = series | join(', ') -%}
{%- set kinds = hourly_baseline_kinds() -%}
{%- set metrics = hourly_baseline_metrics() -%}
{#- each stage keeps only the rows the window's scores need from it (hourly_stage_lookbacks):
    a window function costs what its input rows cost, and most stages need far fewer hours
    than the centres do -#}
{%- set lookbacks = hourly_stage_lookbacks() -%}
window_hourly as (
    select
        hour_at,
        {{ keys }},
        {{ hourly_call_metrics() }}
    from calls
    group by hour_at, {{ keys }}
),

hourly as (
    select hour_at, {{ keys }}, {{ hourly_additive_columns() | join(', ') }}
    from window_hourly
    {%- if reads_metric_history() %}
    union all
    -- the hours before the window: the metric history this mart already holds
    select hour_at, {{ keys }}, {{ hourly_additive_columns() | join(', ') }}
    from {{ this }}
    where calls > 0 and {{ history_window_filter('hour_at', hourly_lookback_hours()) }}
    {%- endif %}
),

series as (
    select distinct {{ keys }} from hourly
),

hours as (
    {{ hour_series('(select min(hour_at) from hourly)', window_last_hour('hourly', 'hour_at')) }}
),

grid as (
    select hours.hour_at, {{ hour_index('hours.hour_at') }} as hour_index, series.*
    from hours
    cross join series
),

with_activity as (
    select
        grid.hour_at,
        grid.hour_index,
        {% for key in series %}grid.{{ key }},
        {% endfor -%}
        {%- for column in hourly_additive_columns() %}
        coalesce(hourly.{{ column }}, 0) as {{ column }},
        {%- endfor %}
        count(hourly.calls) over (
            partition by {% for key in series %}grid.{{ key }}{% if not loop.last %}, {% endif %}{% endfor %}
            order by grid.hour_index range between 167 preceding and current row
        ) as hours_with_calls_past_week
    from grid
    left join hourly
        on hourly.hour_at = grid.hour_at
        {%- for key in series %}
        and hourly.{{ key }} = grid.{{ key }}
        {%- endfor %}
),

filled as (
    select
        *,
        cast({{ day_of_week('hour_at') }} * 24 + hour(hour_at) as bigint) as hour_of_week,
        hour(hour_at) as hour_of_day,
        {{ hourly_ratio_columns() }}
    from with_activity
    where hours_with_calls_past_week > 0
),

candidates as (
    select
        *,
        {{ baseline_candidates(series, metrics, kinds) }}
    from filled
    where {{ lookback_window_filter('hour_at', lookbacks.centres) }}
),

kinded as (
    select *, {{ baseline_kind(kinds) }} as baseline_kind from candidates
),

chosen as (
    select *, {{ baseline_choice(metrics, kinds) }} from kinded
),

deviations as (
    select *, {{ baseline_deviations(metrics) }} from chosen
    where {{ lookback_window_filter('hour_at', lookbacks.levels) }}
),

leveled as (
    select *, {{ baseline_levels(series, metrics) }} from deviations
),

residuals as (
    select *, {{ baseline_residuals(metrics) }} from leveled
    where {{ lookback_window_filter('hour_at', lookbacks.bodies) }}
),

banded as (
    select *, {{ volume_band('calls_baseline') }} as volume_band from residuals
),

bodies as (
    select
        *,
        {{ baseline_spread_bodies(series, metrics) }},
        -- what the series usually spends in a day: the scale of "money at stake"
        round(cast(24 * avg(cost_usd) over (
            partition by {{ keys }} order by hour_index range between 168 preceding and 1 preceding
        ) as double), 9) as typical_daily_cost_usd
    from banded
),

scoped as (
    select *, {{ baseline_spread_choice(metrics) }} from bodies
),

capped as (
    select *, {{ baseline_capped_residuals(metrics) }} from scoped
    where {{ lookback_window_filter('hour_at', lookbacks.tails) }}
),

spreads as (
    select *, {{ baseline_spread_tails(series, metrics) }} from capped
),

final as (
    select
        hour_at,
        {{ keys }},
        {%- for column in hourly_additive_columns() %}
        {{ column }},
        {%- endfor %}
        cost_per_call_usd,
        cache_hit_rate,
        cache_read_share,
        retry_rate,
        error_rate,
        hour_of_week,
        typical_daily_cost_usd,
        baseline_kind,
        {{ baseline_scores(metrics) }}
    from spreads
    where {{ hour_window_filter('hour_at') }}
)
{%- endmacro %}

{#- Whether this run of an hourly series mart reads its metric history from its own rows: an
    incremental run (the table exists, no --full-refresh) over a window. -#}
{% macro reads_metric_history() -%}
    {{ return(is_incremental() and run_start_hour() and run_end_hour()) }}
{%- endmacro %}

{#- The calls an hourly series mart aggregates: the window's when it reads its metric history
    from its own rows, else the window widened by hourly_lookback_hours() (all of time
    without window vars). -#}
{% macro series_mart_calls_filter(column) -%}
    {%- if reads_metric_history() -%}
        {{ hour_window_filter(column) }}
    {%- else -%}
        {{ lookback_window_filter(column, hourly_lookback_hours()) }}
    {%- endif -%}
{%- endmacro %}
