{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ delete_hour_window('hour_at') }}"
    )
}}
-- Every detector's findings in one shape, one row per (hour, detector, metric, dimension).
-- anomaly_id is the same for the same hour, detector and dimension, so re-running never
-- duplicates; the hours of one finding share an incident_key (detector + dimension + first
-- hour; budget incidents by month) as long as no more than one quiet hour separates them, so
-- alerting can group them. A cost spike that another detector already explains (same feature
-- and hour) is left out.
{%- set detectors = ['volume_spike', 'cost_per_call', 'cost_spike', 'cache_efficiency',
                     'model_drift', 'retry_storm', 'budget_burn', 'telemetry_gap',
                     'data_quality'] %}
{%- set dimension = ['detector', 'metric', 'feature', 'environment', 'model', 'team_id'] %}
with detected as (
    {%- for detector in detectors %}
    select {{ anomaly_columns() | join(', ') }}
    from {{ ref('anomalies_' ~ detector) }}
    where {{ lookback_window_filter('hour_at', 168) }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

explained as (
    select distinct hour_at, feature, environment
    from detected
    where detector in ('volume_spike', 'cost_per_call', 'model_drift', 'retry_storm', 'cache_efficiency')
),

kept as (
    select detected.*
    from detected
    left join explained
        on explained.hour_at = detected.hour_at
        and explained.feature = detected.feature
        and explained.environment = detected.environment
    where not (detected.detector = 'cost_spike' and explained.hour_at is not null)
),

ordered as (
    select
        *,
        lag(hour_at) over (
            partition by {{ dimension | join(', ') }} order by hour_at
        ) as previous_hour_at
    from kept
),

islands as (
    -- a new incident starts after more than one quiet hour: one quiet hour inside an incident
    -- (a dip below the threshold) does not split it
    select
        *,
        sum(case when previous_hour_at is null
                or {{ hours_between('previous_hour_at', 'hour_at') }} > 2 then 1 else 0 end) over (
            partition by {{ dimension | join(', ') }} order by hour_at
            rows between unbounded preceding and current row
        ) as island
    from ordered
),

incidents as (
    select
        *,
        case
            when detector = 'budget_burn' then date_trunc('month', hour_at)
            else min(hour_at) over (partition by {{ dimension | join(', ') }}, island)
        end as incident_started_at
    from islands
),

final as (
    select
        {{ stable_id(dimension + ['hour_at']) }} as anomaly_id,
        {{ stable_id(dimension + ['incident_started_at']) }} as incident_key,
        incident_started_at,
        {{ anomaly_columns() | join(',\n        ') }}
    from incidents
    where {{ hour_window_filter('hour_at') }}
)

select * from final
