-- Grain: one row per (hour_at, feature, environment) for every feature active in the week
-- before (zeros when it was silent), with each monitored metric scored against its baseline.
with calls as (
    select {{ hourly_metric_inputs() }}, feature, environment
    from {{ ref('fct_llm_calls') }}
    where {{ series_mart_calls_filter('hour_at') }}
),

{{ hourly_series_mart(['feature', 'environment']) }}

select * from final
