-- Fewer calls read the prompt cache than they should, on features whose policy expects caching.
with hourly as (
    select * from {{ ref('agg_hourly_feature_cost') }}
),

caching_features as (
    select feature from {{ ref('feature_model_policy') }}
    group by feature
    having bool_or(expects_caching)
),

{{ detector_thresholds('cache_efficiency') }},

scored as (
    select
        hourly.*,
        {{ threshold_columns(['warning_threshold', 'critical_threshold', 'min_calls']) }}
    from hourly
    inner join caching_features on caching_features.feature = hourly.feature
    {{ join_thresholds('hourly.feature') }}
),

final as (
    select
        hour_at,
        'cache_efficiency' as detector,
        case when cache_hit_rate < critical_threshold then 'critical' else 'warning' end
            as severity,
        feature,
        environment,
        cast(null as varchar) as model,
        cast(null as varchar) as team_id,
        {{ baselined_metric('cache_hit_rate') }},
        cache_hit_rate / nullif(cache_hit_rate_baseline, 0) as ratio_to_baseline,
        {{ money('cost_usd - calls * cost_per_call_usd_baseline') }} as estimated_excess_cost_usd,
        feature || '/' || environment || ': ' || {{ format_decimal('100 * cache_hit_rate', 0) }}
            || ' % of ' || {{ format_count('calls') }} || ' calls read the prompt cache in '
            || {{ hour_label('hour_at') }} || ' UTC (usually '
            || coalesce({{ format_decimal('100 * cache_hit_rate_baseline', 0) }} || ' %', 'unknown')
            || '; alert below ' || {{ format_decimal('100 * warning_threshold', 0) }} || ' %)'
            as message,
        {{ runbook('cache_efficiency') }} as runbook
    from scored
    where calls >= min_calls
        and cache_hit_rate < warning_threshold
)

select * from final
