-- A failed error-level data-quality check (Great Expectations suites in expectations/, their
-- outcomes in ops.check_results, published as marts.fct_check_results) is an incident too:
-- numbers built on broken telemetry are a blind spot. It reads the staged outcomes, not the
-- mart, so that a run builds the mart and the anomalies in one dbt invocation after the checks
-- (both are downstream of the checks; neither waits for the other).
with results as (
    select * from {{ ref('stg_ops__check_results') }}
    where severity = 'error' and not passed
),

final as (
    select
        hour_at,
        'data_quality' as detector,
        'warning' as severity,
        cast(null as string) as feature,
        cast(null as string) as environment,
        cast(null as string) as model,
        cast(null as string) as team_id,
        check_id as metric,
        cast(unexpected_count as double) as observed_value,
        cast(0 as double) as baseline_value,
        cast(null as double) as stddev_value,
        cast(null as double) as z_score,
        cast(null as double) as ratio_to_baseline,
        cast(null as decimal(38, 15)) as estimated_excess_cost_usd,
        'data quality: ' || check_name || ' (' || suite || ') failed for '
            || {{ hour_label('hour_at') }} || ' UTC'
            || coalesce(': ' || cast(unexpected_count as string) || ' of '
                || cast(element_count as string) || ' rows unexpected', '')
            || coalesce(', observed ' || observed_value, '') as message
    from results
)

select * from final
