-- Grain: one row per (day_at, team_id, environment) that had calls: team spend by UTC day, for
-- chargeback. A run re-aggregates every day its window touches from the hourly team mart, so
-- today's row grows hour by hour and a backfill gives the same rows.
with hourly as (
    select * from {{ ref('agg_hourly_team_cost') }}
    where {{ day_window_filter('hour_at') }}
),

rolled as (
    select
        date_trunc('day', hour_at) as day_at,
        team_id,
        environment,
        {{ rolled_up_call_metrics() }}
    from hourly
    group by date_trunc('day', hour_at), team_id, environment
),

final as (
    select *, {{ hourly_ratio_columns() }} from rolled
)

select * from final
