-- Calls (or, when calls are normal, tokens) far above the baseline: the seasonal centre moved
-- to the series' recent level (agg_hourly_feature_cost), judged against its own real spread.
-- A candidate hour: >= warning × baseline, >= min_calls, z >= min_z / sqrt(2), money at stake.
-- Critical: >= critical × baseline with z >= min_z and an excess of at least
-- critical_min_excess_share of a usual day, in its first hour. Warning: a second
-- candidate hour (one of the two before) with combined evidence >= min_z, so a one-hour burst
-- of 1.5-2x — common in real traffic — stays quiet.
with {{ feature_hours_with_thresholds('volume_spike') }},

scored as (
    select
        *,
        calls / nullif(calls_baseline, 0) as calls_ratio,
        total_tokens / nullif(total_tokens_baseline, 0) as tokens_ratio,
        cost_usd - cost_usd_baseline as excess_usd
    from thresholded
),

candidates as (
    select
        *,
        {{ alerting_baseline() }} and calls >= min_calls and {{ is_material('excess_usd') }}
            as is_eligible
    from scored
),

flagged as (
    select
        *,
        is_eligible and calls_ratio >= warning_threshold and calls_z >= min_z / sqrt(2)
            as calls_candidate,
        is_eligible and tokens_ratio >= warning_threshold and total_tokens_z >= min_z / sqrt(2)
            as tokens_candidate
    from candidates
),

paired as (
    select
        *,
        {{ previous_candidate('calls_z', 'calls_candidate') }} as calls_z_before,
        {{ previous_candidate('total_tokens_z', 'tokens_candidate') }} as tokens_z_before
    from flagged
),

decided as (
    select
        *,
        calls_candidate and {{ has_evidence('calls_z', 'calls_z_before') }} as calls_fire,
        tokens_candidate and {{ has_evidence('total_tokens_z', 'tokens_z_before') }} as tokens_fire,
        {{ is_critical_material('excess_usd') }} as pages,
        calls_candidate and calls_ratio >= critical_threshold and calls_z >= min_z
            and {{ is_critical_material('excess_usd') }} as calls_critical,
        tokens_candidate and tokens_ratio >= critical_threshold and total_tokens_z >= min_z
            and {{ is_critical_material('excess_usd') }} as tokens_critical
    from paired
),

calls_spikes as (
    select
        hour_at,
        'volume_spike' as detector,
        case when calls_ratio >= critical_threshold and pages then 'critical' else 'warning' end
            as severity,
        feature,
        environment,
        cast(null as string) as model,
        cast(null as string) as team_id,
        {{ baselined_metric('calls') }},
        calls_ratio as ratio_to_baseline,
        {{ money('excess_usd') }} as estimated_excess_cost_usd,
        feature || '/' || environment || ': ' || {{ format_count('calls') }} || ' calls in '
            || {{ hour_label('hour_at') }} || ' UTC, ' || {{ format_decimal('calls_ratio') }}
            || '× the usual ' || {{ format_count('calls_baseline') }} || ' '
            || {{ baseline_phrase('baseline_kind', 'hour_at') }} as message
    from decided
    where calls_critical or calls_fire
),

token_spikes as (
    select
        hour_at,
        'volume_spike' as detector,
        case when tokens_ratio >= critical_threshold and pages then 'critical' else 'warning' end
            as severity,
        feature,
        environment,
        cast(null as string) as model,
        cast(null as string) as team_id,
        {{ baselined_metric('total_tokens') }},
        tokens_ratio as ratio_to_baseline,
        {{ money('excess_usd') }} as estimated_excess_cost_usd,
        feature || '/' || environment || ': ' || {{ format_count('total_tokens') }}
            || ' tokens in ' || {{ hour_label('hour_at') }} || ' UTC over '
            || {{ format_count('calls') }} || ' calls, ' || {{ format_decimal('tokens_ratio') }}
            || '× the usual ' || {{ format_count('total_tokens_baseline') }} || ' '
            || {{ baseline_phrase('baseline_kind', 'hour_at') }} as message
    from decided
    where (tokens_critical or tokens_fire) and not (calls_critical or calls_fire)
),

final as (
    select * from calls_spikes
    union all
    select * from token_spikes
)

select * from final
