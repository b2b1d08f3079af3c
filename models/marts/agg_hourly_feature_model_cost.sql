-- Grain: one row per (hour_at, feature, environment, provider, model) that had calls; model is
-- the canonical model a call's name resolved to (its own name when unpriced). Which models a
-- feature's calls went to in each hour and what share of its calls and cost each took: the
-- model mix, what model_drift reads.
with calls as (
    select {{ hourly_metric_inputs() }}, feature, environment, provider, canonical_model as model
    from {{ ref('fct_llm_calls') }}
    where {{ hour_window_filter('hour_at') }}
),

{{ call_rollup('hour_at', ['feature', 'environment', 'provider', 'model']) }},

final as (
    select
        *,
        {{ safe_ratio('calls', 'sum(calls) over (partition by hour_at, feature, environment)') }}
            as share_of_feature_calls,
        {{ safe_ratio('cost_usd', 'sum(cost_usd) over (partition by hour_at, feature, environment)') }}
            as share_of_feature_cost
    from measured
)

select * from final
