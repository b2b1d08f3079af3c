-- Each call costs much more than it usually does (prompt bloat, longer outputs, a pricier mix).
-- Candidate hour: cost per call >= warning × baseline, >= min_calls priced calls,
-- z >= min_z / sqrt(2), money at stake. Critical (>= critical × baseline, z >= min_z, an
-- excess of critical_min_excess_share of a usual day) in its first hour; a warning waits for a
-- second candidate hour (see anomalies_volume_spike).
with {{ feature_hours_with_thresholds('cost_per_call') }},

scored as (
    select
        *,
        cost_per_call_usd / nullif(cost_per_call_usd_baseline, 0) as ratio,
        (cost_per_call_usd - cost_per_call_usd_baseline) * priced_calls as excess_usd
    from thresholded
),

flagged as (
    select
        *,
        {{ alerting_baseline() }}
            and priced_calls >= min_calls
            and {{ is_material('excess_usd') }}
            and ratio >= warning_threshold
            and cost_per_call_usd_z >= min_z / sqrt(2) as is_candidate
    from scored
),

paired as (
    select *, {{ previous_candidate('cost_per_call_usd_z', 'is_candidate') }} as z_before
    from flagged
),

final as (
    select
        hour_at,
        'cost_per_call' as detector,
        case when ratio >= critical_threshold and {{ is_critical_material('excess_usd') }}
            then 'critical' else 'warning' end as severity,
        feature,
        environment,
        cast(null as string) as model,
        cast(null as string) as team_id,
        {{ baselined_metric('cost_per_call_usd') }},
        ratio as ratio_to_baseline,
        {{ money('excess_usd') }} as estimated_excess_cost_usd,
        feature || '/' || environment || ': ' || {{ format_usd('cost_per_call_usd') }}
            || ' per call in ' || {{ hour_label('hour_at') }} || ' UTC over '
            || {{ format_count('priced_calls') }} || ' calls, ' || {{ format_decimal('ratio') }}
            || '× the usual ' || {{ format_usd('cost_per_call_usd_baseline') }} || ' '
            || {{ baseline_phrase('baseline_kind', 'hour_at') }} as message
    from paired
    where is_candidate
        and (
            (ratio >= critical_threshold and cost_per_call_usd_z >= min_z
                and {{ is_critical_material('excess_usd') }})
            or {{ has_evidence('cost_per_call_usd_z', 'z_before') }}
        )
)

select * from final
