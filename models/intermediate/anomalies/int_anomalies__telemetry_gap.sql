-- A series with steady traffic reports nothing: an instrumentation, shipping or ingest break.
-- Warning at the first silent hour, critical when `critical_threshold` hours in a row are silent;
-- only where at least min_calls were expected, silence is far outside the series' own spread
-- (calls_z <= -min_z) and the series is steady: silent in at most max_silent_share of its
-- previous spread_hours (this silence aside). A series that often goes quiet is not broken
-- when it goes quiet again.
with hourly as (
    select * from {{ ref('agg_hourly_feature_cost') }}
),

runs as (
    select
        *,
        sum(case when calls > 0 then 1 else 0 end) over (
            partition by feature, environment
            order by hour_at
            rows between unbounded preceding and current row
        ) as active_so_far
    from hourly
),

streaks as (
    -- silent hours since the series last had calls, this one included (an active series has a
    -- row for every hour, so the rows after its last busy hour are exactly the silent ones;
    -- before its first busy row every row is silent)
    select
        *,
        row_number() over (partition by feature, environment, active_so_far order by hour_at)
            - case when active_so_far > 0 then 1 else 0 end as silent_hours_in_a_row
    from runs
),

{{ detector_thresholds('telemetry_gap') }},

thresholded as (
    select
        streaks.*,
        {{ threshold_columns(['warning_threshold', 'critical_threshold', 'min_z',
            'max_silent_share']) }},
        {{ threshold('min_calls') }} as min_expected_calls
    from streaks
    {{ join_thresholds('streaks.feature') }}
),

scored as (
    -- how often the series fell silent where calls were expected, in the window before this
    -- silence began (its own earlier hours are taken out)
    select
        *,
        count(case when calls = 0 and calls_baseline >= min_expected_calls then 1 end) over (
            partition by feature, environment
            order by {{ hour_index('hour_at') }}
            range between {{ var('spread_hours') }} preceding and 1 preceding
        ) - (silent_hours_in_a_row - 1) as earlier_silent_hours
    from thresholded
),

final as (
    select
        hour_at,
        'telemetry_gap' as detector,
        case when silent_hours_in_a_row >= critical_threshold then 'critical' else 'warning' end
            as severity,
        feature,
        environment,
        cast(null as string) as model,
        cast(null as string) as team_id,
        {{ baselined_metric('calls') }},
        cast(0 as double) as ratio_to_baseline,
        cast(null as decimal(38, 15)) as estimated_excess_cost_usd,
        feature || '/' || environment || ': no calls reported in ' || {{ hour_label('hour_at') }}
            || ' UTC (' || cast(silent_hours_in_a_row as string)
            || ' silent hour(s) in a row) where ' || {{ format_count('calls_baseline') }}
            || ' are usual ' || {{ baseline_phrase('baseline_kind', 'hour_at') }} as message
    from scored
    where calls = 0
        and {{ alerting_baseline() }}
        and calls_baseline >= min_expected_calls
        and coalesce(calls_z <= -min_z, true)
        and earlier_silent_hours <= coalesce(max_silent_share, 1) * {{ var('spread_hours') }}
        and silent_hours_in_a_row >= warning_threshold
)

select * from final
