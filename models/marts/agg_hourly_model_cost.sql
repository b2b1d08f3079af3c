{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ delete_hour_window('hour_at') }}"
    )
}}
-- Grain: one row per (hour_at, provider, model, environment); model is the canonical model a
-- call's name resolved to (its own name when unpriced).
with calls as (
    select * from {{ ref('fct_llm_calls') }}
    where {{ hour_window_filter('hour_at') }}
),

final as (
    select
        hour_at,
        provider,
        canonical_model as model,
        environment,
        {{ hourly_call_metrics() }}
    from calls
    group by hour_at, provider, canonical_model, environment
)

select * from final
