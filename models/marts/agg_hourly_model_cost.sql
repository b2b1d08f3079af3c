-- Grain: one row per (hour_at, provider, model, environment) for every model used in the week
-- before; model is the canonical model a call's name resolved to (its own name when unpriced).
with calls as (
    select {{ hourly_metric_inputs() }}, provider, canonical_model as model, environment
    from {{ ref('fct_llm_calls') }}
    where {{ series_mart_calls_filter('hour_at') }}
),

{{ hourly_series_mart(['provider', 'model', 'environment']) }}

select * from final
