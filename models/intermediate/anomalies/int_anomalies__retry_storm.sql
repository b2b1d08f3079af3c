-- A large share of calls are retries: an upstream failing, rate limits, a retry loop.
-- The thresholds are absolute (retry share >= warning / >= critical); where the series has a
-- scored baseline the share must also have risen from it (z >= min_z), so a feature that
-- always retries a lot is not flagged every hour. Critical in its first hour; a warning waits
-- for a second candidate hour (warning_confirm_hours).
with {{ feature_hours_with_thresholds('retry_storm') }},

scored as (
    select
        *,
        (retry_calls - calls * coalesce(retry_rate_baseline, 0)) * coalesce(cost_per_call_usd, 0)
            as excess_usd
    from thresholded
),

flagged as (
    select
        *,
        calls >= min_calls
            and retry_rate >= warning_threshold
            and coalesce(retry_rate_z >= min_z, true)
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
        'retry_storm' as detector,
        case when retry_rate >= critical_threshold then 'critical' else 'warning' end as severity,
        feature,
        environment,
        cast(null as string) as model,
        cast(null as string) as team_id,
        {{ baselined_metric('retry_rate') }},
        retry_rate / nullif(retry_rate_baseline, 0) as ratio_to_baseline,
        {{ money('excess_usd') }} as estimated_excess_cost_usd,
        feature || '/' || environment || ': ' || {{ format_count('retry_calls') }} || ' of '
            || {{ format_count('calls') }} || ' calls in ' || {{ hour_label('hour_at') }}
            || ' UTC were retries (' || {{ format_decimal('100 * retry_rate', 0) }}
            || ' %; usually ' || coalesce({{ format_decimal('100 * retry_rate_baseline', 0) }}, '?')
            || ' %), ' || {{ format_count('error_calls') }} || ' failed' as message
    from paired
    where is_candidate
        and (
            retry_rate >= critical_threshold
            or coalesce(warning_confirm_hours, 1) <= 1
            or candidate_before is not null
        )
)

select * from final
