-- Grain: one row per (hour_at, feature, endpoint, environment) that had calls (endpoint null
-- where the caller did not say): which route of a feature the spend comes from.
with calls as (
    select {{ hourly_metric_inputs() }}, feature, endpoint, environment
    from {{ ref('fct_llm_calls') }}
    where {{ hour_window_filter('hour_at') }}
),

{{ call_rollup('hour_at', ['feature', 'endpoint', 'environment']) }}

select * from measured
