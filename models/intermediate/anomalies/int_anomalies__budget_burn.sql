-- Month-to-date spend projected to month end (linearly over the hours elapsed) against the
-- monthly budget of a feature or team. One incident per budget and month. Reads the hourly
-- feature and team marts from the start of the month the run (and the incident look-back of
-- marts.anomalies) reaches back to; hours with calls only.
with feature_hours as (
    select hour_at, 'feature' as scope, feature as name, environment, cost_usd
    from {{ ref('agg_hourly_feature_cost') }}
    where calls > 0 and {{ month_window_filter('hour_at', incident_lookback_hours()) }}
),

team_hours as (
    select hour_at, 'team' as scope, team_id as name, environment, cost_usd
    from {{ ref('agg_hourly_team_cost') }}
    where team_id is not null and {{ month_window_filter('hour_at', incident_lookback_hours()) }}
),

budgets as (
    select * from {{ ref('budgets') }}
),

hourly_spend as (
    select
        spend.hour_at,
        budgets.scope,
        budgets.name,
        budgets.environment,
        budgets.monthly_budget_usd,
        spend.cost_usd
    from (
        select * from feature_hours
        union all
        select * from team_hours
    ) as spend
    inner join budgets
        on budgets.scope = spend.scope
        and budgets.name = spend.name
        and budgets.environment = spend.environment
),

month_to_date as (
    select
        *,
        date_trunc('month', hour_at) as month_at,
        sum(cost_usd) over (
            partition by scope, name, environment, date_trunc('month', hour_at)
            order by hour_at
            rows between unbounded preceding and current row
        ) as spend_to_date_usd
    from hourly_spend
),

projected as (
    select
        *,
        {{ hours_between('month_at', 'hour_at') }} + 1 as hours_elapsed,
        {{ hours_between('month_at', month_end('month_at')) }} as hours_in_month
    from month_to_date
),

{{ detector_thresholds('budget_burn') }},

scored as (
    select
        projected.*,
        cast(spend_to_date_usd as double) / hours_elapsed * hours_in_month as projected_usd,
        cast(spend_to_date_usd as double) / hours_elapsed * hours_in_month
            / nullif(monthly_budget_usd, 0) as budget_ratio,
        {{ threshold_columns(['warning_threshold', 'critical_threshold', 'min_history_hours']) }}
    from projected
    {{ join_thresholds("case when projected.scope = 'feature' then projected.name end") }}
),

final as (
    select
        hour_at,
        'budget_burn' as detector,
        case when budget_ratio >= critical_threshold then 'critical' else 'warning' end
            as severity,
        case when scope = 'feature' then name end as feature,
        environment,
        cast(null as string) as model,
        case when scope = 'team' then name end as team_id,
        'projected_month_spend_usd' as metric,
        projected_usd as observed_value,
        monthly_budget_usd as baseline_value,
        cast(null as double) as stddev_value,
        cast(null as double) as z_score,
        budget_ratio as ratio_to_baseline,
        {{ money('greatest(projected_usd - monthly_budget_usd, 0)') }} as estimated_excess_cost_usd,
        scope || ' ' || name || '/' || environment || ': ' || {{ format_usd('spend_to_date_usd') }}
            || ' spent this month by ' || {{ hour_label('hour_at') }} || ' UTC, on course for '
            || {{ format_usd('projected_usd') }} || ', ' || {{ format_decimal('100 * budget_ratio', 0) }}
            || ' % of the ' || {{ format_usd('monthly_budget_usd') }} || ' budget' as message
    from scored
    where hours_elapsed >= min_history_hours
        and budget_ratio >= warning_threshold
)

select * from final
