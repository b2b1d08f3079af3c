-- Calls (or, when calls are normal, tokens) far above the seasonal baseline.
-- Fires when value >= warning × baseline, z >= min_z and calls >= min_calls.
with hourly as (
    select * from {{ ref('agg_hourly_feature_cost') }}
    where {{ alerting_baseline() }}
),

{{ detector_thresholds('volume_spike') }},

scored as (
    select
        hourly.*,
        {{ threshold_columns(['warning_threshold', 'critical_threshold']) }},
        calls >= {{ threshold('min_calls') }} as has_volume,
        {{ threshold_columns(['min_z']) }},
        calls / nullif(calls_baseline, 0) as calls_ratio,
        total_tokens / nullif(total_tokens_baseline, 0) as tokens_ratio
    from hourly
    {{ join_thresholds('hourly.feature') }}
),

flagged as (
    select
        *,
        has_volume and calls_z >= min_z and calls_ratio >= warning_threshold as calls_fire,
        has_volume and total_tokens_z >= min_z and tokens_ratio >= warning_threshold
            as tokens_fire
    from scored
),

calls_spikes as (
    select
        hour_at,
        'volume_spike' as detector,
        case when calls_ratio >= critical_threshold then 'critical' else 'warning' end as severity,
        feature,
        environment,
        cast(null as varchar) as model,
        cast(null as varchar) as team_id,
        {{ baselined_metric('calls') }},
        calls_ratio as ratio_to_baseline,
        {{ money('cost_usd - cost_usd_baseline') }} as estimated_excess_cost_usd,
        feature || '/' || environment || ': ' || {{ format_count('calls') }} || ' calls in '
            || {{ hour_label('hour_at') }} || ' UTC, ' || {{ format_decimal('calls_ratio') }}
            || '× the usual ' || {{ format_count('calls_baseline') }} || ' '
            || {{ baseline_phrase('baseline_kind', 'hour_at') }} as message,
        {{ runbook('volume_spike') }} as runbook
    from flagged
    where calls_fire
),

token_spikes as (
    select
        hour_at,
        'volume_spike' as detector,
        case when tokens_ratio >= critical_threshold then 'critical' else 'warning' end as severity,
        feature,
        environment,
        cast(null as varchar) as model,
        cast(null as varchar) as team_id,
        {{ baselined_metric('total_tokens') }},
        tokens_ratio as ratio_to_baseline,
        {{ money('cost_usd - cost_usd_baseline') }} as estimated_excess_cost_usd,
        feature || '/' || environment || ': ' || {{ format_count('total_tokens') }}
            || ' tokens in ' || {{ hour_label('hour_at') }} || ' UTC over '
            || {{ format_count('calls') }} || ' calls, ' || {{ format_decimal('tokens_ratio') }}
            || '× the usual ' || {{ format_count('total_tokens_baseline') }} || ' '
            || {{ baseline_phrase('baseline_kind', 'hour_at') }} as message,
        {{ runbook('volume_spike') }} as runbook
    from flagged
    where tokens_fire and not calls_fire
),

final as (
    select * from calls_spikes
    union all
    select * from token_spikes
)

select * from final
