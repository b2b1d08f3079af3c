-- Each call costs much more than it usually does (prompt bloat, longer outputs, a pricier mix).
with hourly as (
    select * from {{ ref('agg_hourly_feature_cost') }}
    where {{ alerting_baseline() }}
),

{{ detector_thresholds('cost_per_call') }},

scored as (
    select
        hourly.*,
        {{ threshold_columns(['warning_threshold', 'critical_threshold', 'min_calls', 'min_z']) }},
        cost_per_call_usd / nullif(cost_per_call_usd_baseline, 0) as ratio
    from hourly
    {{ join_thresholds('hourly.feature') }}
),

final as (
    select
        hour_at,
        'cost_per_call' as detector,
        case when ratio >= critical_threshold then 'critical' else 'warning' end as severity,
        feature,
        environment,
        cast(null as varchar) as model,
        cast(null as varchar) as team_id,
        {{ baselined_metric('cost_per_call_usd') }},
        ratio as ratio_to_baseline,
        {{ money('(cost_per_call_usd - cost_per_call_usd_baseline) * priced_calls') }}
            as estimated_excess_cost_usd,
        feature || '/' || environment || ': ' || {{ format_usd('cost_per_call_usd') }}
            || ' per call in ' || {{ hour_label('hour_at') }} || ' UTC over '
            || {{ format_count('priced_calls') }} || ' calls, ' || {{ format_decimal('ratio') }}
            || '× the usual ' || {{ format_usd('cost_per_call_usd_baseline') }} || ' '
            || {{ baseline_phrase('baseline_kind', 'hour_at') }} as message,
        {{ runbook('cost_per_call') }} as runbook
    from scored
    where priced_calls >= min_calls
        and cost_per_call_usd_z >= min_z
        and ratio >= warning_threshold
)

select * from final
