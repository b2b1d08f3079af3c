-- The hour's spend is far above its baseline (z-score), whatever the cause.
with hourly as (
    select * from {{ ref('agg_hourly_feature_cost') }}
    where {{ alerting_baseline() }}
),

{{ detector_thresholds('cost_spike') }},

scored as (
    select
        hourly.*,
        {{ threshold_columns(['warning_threshold', 'critical_threshold', 'min_cost_usd']) }}
    from hourly
    {{ join_thresholds('hourly.feature') }}
),

final as (
    select
        hour_at,
        'cost_spike' as detector,
        case when cost_usd_z >= critical_threshold then 'critical' else 'warning' end as severity,
        feature,
        environment,
        cast(null as varchar) as model,
        cast(null as varchar) as team_id,
        {{ baselined_metric('cost_usd') }},
        cost_usd / nullif(cost_usd_baseline, 0) as ratio_to_baseline,
        {{ money('cost_usd - cost_usd_baseline') }} as estimated_excess_cost_usd,
        feature || '/' || environment || ': ' || {{ format_usd('cost_usd') }} || ' spent in '
            || {{ hour_label('hour_at') }} || ' UTC against the usual '
            || {{ format_usd('cost_usd_baseline') }} || ' '
            || {{ baseline_phrase('baseline_kind', 'hour_at') }} || ' (z = '
            || {{ format_decimal('cost_usd_z') }} || ')' as message,
        {{ runbook('cost_spike') }} as runbook
    from scored
    where cost_usd >= min_cost_usd
        and cost_usd_z >= warning_threshold
)

select * from final
