{#- The body of an hourly series mart (feature, model, ...): aggregate the calls CTE per hour
    and series, give every active series a row in every hour (zeros when silent), score every
    monitored metric against its dynamic baseline, keep the run's window.

    Expects a CTE named `calls` with the columns of hourly_metric_inputs() and the series
    columns, already limited with lookback_window_filter(..., hourly_lookback_hours()). -#}
{% macro hourly_series_mart(series) -%}
{%- set keys = series | join(', ') -%}
{%- set kinds = hourly_baseline_kinds() -%}
{%- set metrics = hourly_baseline_metrics() -%}
hourly as (
    select
        hour_at,
        {{ keys }},
        {{ hourly_call_metrics() }}
    from calls
    group by hour_at, {{ keys }}
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
        {{ day_of_week('hour_at') }} * 24 + hour(hour_at) as hour_of_week,
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
),

kinded as (
    select *, {{ baseline_kind(kinds) }} as baseline_kind from candidates
),

chosen as (
    select *, {{ baseline_choice(metrics, kinds) }} from kinded
),

deviations as (
    select *, {{ baseline_deviations(metrics) }} from chosen
),

leveled as (
    select *, {{ baseline_levels(series, metrics) }} from deviations
),

residuals as (
    select *, {{ baseline_residuals(metrics) }} from leveled
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
