-- Grain: one row per (hour_at, provider, model, feature, environment, usage_detail) whose calls'
-- usage was reported incompletely in a way that can change their price. Today one kind:
-- 'no_cache_breakdown', a call whose source (an OpenTelemetry instrumentation that records no
-- cached-token attribute, marked by the import in its tags) said nothing of prompt caching, for
-- a model whose price list prices cache reads apart from input: such a call is priced as if
-- nothing was cached, so its cost is an upper bound. Calls of models that price cache reads as
-- input (or not at all) lose nothing and are not counted. The report's data-quality section
-- shows this mart; series_calls puts the count beside all calls of the same series and hour.
with calls as (
    select
        hour_at,
        provider,
        canonical_model as model,
        feature,
        environment,
        price_id,
        input_tokens,
        cost_usd,
        {{ json_text_field('tags', 'usage_detail') }} as reported_detail
    from {{ ref('fct_llm_calls') }}
    where {{ hour_window_filter('hour_at') }}
),

prices as (
    select price_id, input_usd_per_mtok, cache_read_usd_per_mtok
    from {{ ref('stg_seeds__model_prices') }}
),

marked as (
    select
        calls.*,
        case
            when calls.reported_detail = 'no_cache_breakdown'
                and prices.cache_read_usd_per_mtok <> prices.input_usd_per_mtok
                then 'no_cache_breakdown'
        end as usage_detail
    from calls
    left join prices
        on prices.price_id = calls.price_id
),

series as (
    select hour_at, provider, model, feature, environment, count(*) as series_calls
    from marked
    group by hour_at, provider, model, feature, environment
),

incomplete as (
    select
        hour_at,
        provider,
        model,
        feature,
        environment,
        usage_detail,
        count(*) as calls,
        cast(sum(input_tokens) as bigint) as input_tokens,
        {{ money('sum(cost_usd)') }} as cost_usd
    from marked
    where usage_detail is not null
    group by hour_at, provider, model, feature, environment, usage_detail
),

final as (
    select
        incomplete.hour_at,
        incomplete.provider,
        incomplete.model,
        incomplete.feature,
        incomplete.environment,
        incomplete.usage_detail,
        incomplete.calls,
        series.series_calls,
        incomplete.input_tokens,
        incomplete.cost_usd
    from incomplete
    inner join series
        on series.hour_at = incomplete.hour_at
        and series.provider = incomplete.provider
        and series.model = incomplete.model
        and series.feature = incomplete.feature
        and series.environment = incomplete.environment
)

select * from final
