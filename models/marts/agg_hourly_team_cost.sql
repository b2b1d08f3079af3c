-- Grain: one row per (hour_at, team_id, environment) that had calls (team_id null for calls
-- attributed to no team): team spend by hour, what team budgets burn against and what
-- agg_daily_team_cost rolls up.
with calls as (
    select {{ hourly_metric_inputs() }}, team_id, environment
    from {{ ref('fct_llm_calls') }}
    where {{ hour_window_filter('hour_at') }}
),

{{ call_rollup('hour_at', ['team_id', 'environment']) }}

select * from measured
