-- Grain: one row per (day_at, user_id, environment) that had calls (user_id null for calls
-- without a user): who spends, by UTC day. A run re-aggregates every day its window touches
-- from fct_llm_calls, so today's row grows hour by hour and a backfill gives the same rows.
with calls as (
    select
        {{ hourly_metric_inputs() }},
        date_trunc('day', hour_at) as day_at,
        user_id,
        environment,
        feature
    from {{ ref('fct_llm_calls') }}
    where {{ day_window_filter('hour_at') }}
),

rolled as (
    select
        day_at,
        user_id,
        environment,
        {{ hourly_call_metrics() }},
        count(distinct feature) as features
    from calls
    group by day_at, user_id, environment
),

final as (
    select *, {{ hourly_ratio_columns() }} from rolled
)

select * from final
