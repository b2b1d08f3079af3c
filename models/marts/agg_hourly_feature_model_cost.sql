-- Grain: one row per (hour_at, feature, environment, provider, model) that had calls; model is
-- the canonical model a call's name resolved to (its own name when unpriced). Which models a
-- feature's calls went to in each hour and what share of its calls and cost each took: the
-- model mix, what model_drift reads, and each model's cost split into the measures the cost-change
-- decomposition multiplies (macros/cost_drivers.sql), what agg_hourly_feature_cost_drivers reads.
with calls as (
    select
        {{ hourly_metric_inputs() }}, input_cost_usd, cache_read_cost_usd, cache_write_cost_usd,
        output_cost_usd, feature, environment, provider, canonical_model as model
    from {{ ref('fct_llm_calls') }}
    where {{ hour_window_filter('hour_at') }}
),

{{ call_rollup('hour_at', ['feature', 'environment', 'provider', 'model'], cost_driver_measures()) }},

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
