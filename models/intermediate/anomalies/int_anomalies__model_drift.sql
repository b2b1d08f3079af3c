-- Calls of a feature went to a model outside its allowed set (a fallback, a config change).
-- Warning for any unexpected model (an unpriced one included, with a null price ratio);
-- critical when its list price (input + output per 1M) is `critical_threshold` times the
-- dearest allowed model's.
with per_model as (
    select hour_at, feature, environment, provider, model, calls, cost_usd
    from {{ ref('agg_hourly_feature_model_cost') }}
),

policy as (
    select * from {{ ref('feature_model_policy') }}
),

current_prices as (
    select provider, model, list_usd_per_mtok as list_price
    from {{ ref('int_model_prices_current') }}
),

allowed_price as (
    select policy.feature, max(current_prices.list_price) as list_price
    from policy
    left join current_prices on current_prices.model = policy.model
    group by policy.feature
),

unexpected as (
    select per_model.*
    from per_model
    inner join (select distinct feature from policy) as governed
        on governed.feature = per_model.feature
    left join policy
        on policy.feature = per_model.feature and policy.model = per_model.model
    where policy.model is null
),

feature_hours as (
    select hour_at, feature, environment, calls as feature_calls, cost_per_call_usd_baseline
    from {{ ref('agg_hourly_feature_cost') }}
),

{{ detector_thresholds('model_drift') }},

scored as (
    select
        unexpected.*,
        feature_hours.feature_calls,
        feature_hours.cost_per_call_usd_baseline,
        current_prices.list_price / nullif(allowed_price.list_price, 0) as price_ratio,
        {{ threshold_columns(['critical_threshold', 'min_calls']) }}
    from unexpected
    left join current_prices
        on current_prices.provider = unexpected.provider
        and current_prices.model = unexpected.model
    left join allowed_price on allowed_price.feature = unexpected.feature
    left join feature_hours
        on feature_hours.hour_at = unexpected.hour_at
        and feature_hours.feature = unexpected.feature
        and feature_hours.environment = unexpected.environment
    {{ join_thresholds('unexpected.feature') }}
),

final as (
    select
        hour_at,
        'model_drift' as detector,
        case when price_ratio >= critical_threshold then 'critical' else 'warning' end as severity,
        feature,
        environment,
        model,
        cast(null as string) as team_id,
        'calls' as metric,
        cast(calls as double) as observed_value,
        cast(0 as double) as baseline_value,
        cast(null as double) as stddev_value,
        cast(null as double) as z_score,
        price_ratio as ratio_to_baseline,
        {{ money('cost_usd - calls * coalesce(cost_per_call_usd_baseline, 0)') }}
            as estimated_excess_cost_usd,
        feature || '/' || environment || ': ' || {{ format_count('calls') }} || ' of '
            || {{ format_count('feature_calls') }} || ' calls in ' || {{ hour_label('hour_at') }}
            || ' UTC went to ' || model || ', which the feature is not meant to use'
            || coalesce(' (' || {{ format_decimal('price_ratio') }}
                || '× the price of its dearest allowed model)', ' (no price known)') as message
    from scored
    where calls >= min_calls
)

select * from final
