-- The hour's spend is far above its baseline, whatever the cause: z of cost_usd against the
-- seasonal centre moved to the recent level, over the series' own spread. Warning from
-- z >= warning_threshold over two candidate hours (combined evidence), critical at
-- z >= critical_threshold in one hour with an excess of critical_min_excess_share of a usual
-- day; the hour must cost >= min_cost_usd and the excess be material. marts.anomalies drops it where a more specific detector explains the hour.
with {{ feature_hours_with_thresholds('cost_spike', omit=['min_z']) }},

scored as (
    select
        *,
        warning_threshold as min_z,
        cost_usd - cost_usd_baseline as excess_usd
    from thresholded
),

flagged as (
    select
        *,
        {{ alerting_baseline() }}
            and cost_usd >= min_cost_usd
            and {{ is_material('excess_usd') }}
            and cost_usd_z >= min_z / sqrt(2) as is_candidate
    from scored
),

paired as (
    select *, {{ previous_candidate('cost_usd_z', 'is_candidate') }} as z_before
    from flagged
),

final as (
    select
        hour_at,
        'cost_spike' as detector,
        case when cost_usd_z >= critical_threshold and {{ is_critical_material('excess_usd') }}
            then 'critical' else 'warning' end as severity,
        feature,
        environment,
        cast(null as string) as model,
        cast(null as string) as team_id,
        {{ baselined_metric('cost_usd') }},
        cost_usd / nullif(cost_usd_baseline, 0) as ratio_to_baseline,
        {{ money('excess_usd') }} as estimated_excess_cost_usd,
        feature || '/' || environment || ': ' || {{ format_usd('cost_usd') }} || ' spent in '
            || {{ hour_label('hour_at') }} || ' UTC against the usual '
            || {{ format_usd('cost_usd_baseline') }} || ' '
            || {{ baseline_phrase('baseline_kind', 'hour_at') }} || ' (z = '
            || {{ format_decimal('cost_usd_z') }} || ')' as message
    from paired
    where is_candidate
        and (
            (cost_usd_z >= critical_threshold and {{ is_critical_material('excess_usd') }})
            or {{ has_evidence('cost_usd_z', 'z_before') }}
        )
)

select * from final
