-- A large share of calls are retries: an upstream failing, rate limits, a retry loop.
with hourly as (
    select * from {{ ref('agg_hourly_feature_cost') }}
),

{{ detector_thresholds('retry_storm') }},

scored as (
    select
        hourly.*,
        {{ threshold_columns(['warning_threshold', 'critical_threshold', 'min_calls']) }}
    from hourly
    {{ join_thresholds('hourly.feature') }}
),

final as (
    select
        hour_at,
        'retry_storm' as detector,
        case when retry_rate >= critical_threshold then 'critical' else 'warning' end as severity,
        feature,
        environment,
        cast(null as varchar) as model,
        cast(null as varchar) as team_id,
        {{ baselined_metric('retry_rate') }},
        retry_rate / nullif(retry_rate_baseline, 0) as ratio_to_baseline,
        {{ money('(retry_calls - calls * coalesce(retry_rate_baseline, 0)) * coalesce(cost_per_call_usd, 0)') }}
            as estimated_excess_cost_usd,
        feature || '/' || environment || ': ' || {{ format_count('retry_calls') }} || ' of '
            || {{ format_count('calls') }} || ' calls in ' || {{ hour_label('hour_at') }}
            || ' UTC were retries (' || {{ format_decimal('100 * retry_rate', 0) }}
            || ' %; usually ' || coalesce({{ format_decimal('100 * retry_rate_baseline', 0) }}, '?')
            || ' %), ' || {{ format_count('error_calls') }} || ' failed' as message,
        {{ runbook('retry_storm') }} as runbook
    from scored
    where calls >= min_calls
        and retry_rate >= warning_threshold
)

select * from final
