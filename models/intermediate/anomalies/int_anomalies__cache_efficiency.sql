-- Fewer calls read the prompt cache than they should, on features whose policy expects caching.
-- The thresholds are absolute (hit rate < warning / < critical); where the series has a
-- scored baseline the rate must also have fallen from it (z <= -min_z), so a feature that
-- always caches little is not flagged every hour. Critical in its first hour; a warning waits
-- for a second candidate hour (warning_confirm_hours).
with {{ feature_hours_with_thresholds('cache_efficiency') }},

caching_features as (
    select feature from {{ ref('feature_model_policy') }}
    group by feature
    having bool_or(expects_caching)
),

scored as (
    select
        thresholded.*,
        cost_usd - calls * cost_per_call_usd_baseline as excess_usd
    from thresholded
    inner join caching_features on caching_features.feature = thresholded.feature
),

flagged as (
    select
        *,
        calls >= min_calls
            and cache_hit_rate < warning_threshold
            and coalesce(cache_hit_rate_z <= -min_z, true)
            and {{ is_material('excess_usd') }} as is_candidate
    from scored
),

paired as (
    select *, {{ previous_candidate('1', 'is_candidate') }} as candidate_before
    from flagged
),

final as (
    select
        hour_at,
        'cache_efficiency' as detector,
        case when cache_hit_rate < critical_threshold then 'critical' else 'warning' end
            as severity,
        feature,
        environment,
        cast(null as string) as model,
        cast(null as string) as team_id,
        {{ baselined_metric('cache_hit_rate') }},
        cache_hit_rate / nullif(cache_hit_rate_baseline, 0) as ratio_to_baseline,
        {{ money('excess_usd') }} as estimated_excess_cost_usd,
        feature || '/' || environment || ': ' || {{ format_decimal('100 * cache_hit_rate', 0) }}
            || ' % of ' || {{ format_count('calls') }} || ' calls read the prompt cache in '
            || {{ hour_label('hour_at') }} || ' UTC (usually '
            || coalesce({{ format_decimal('100 * cache_hit_rate_baseline', 0) }} || ' %', 'unknown')
            || '; alert below ' || {{ format_decimal('100 * warning_threshold', 0) }} || ' %)'
            as message
    from paired
    where is_candidate
        and (
            cache_hit_rate < critical_threshold
            or coalesce(warning_confirm_hours, 1) <= 1
            or candidate_before is not null
        )
)

select * from final
