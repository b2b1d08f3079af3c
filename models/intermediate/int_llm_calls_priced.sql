-- Every call priced once, here. A call's model name resolves to its canonical model (a declared
-- exact alias first, then the name itself when it has price rows, then the longest declared
-- prefix). It is priced with the row valid at occurred_at of the name itself when that name has
-- its own rows then (a snapshot priced apart from its alias, e.g. gpt-4o-2024-05-13 still at
-- $5/$15 after gpt-4o dropped to $2.50/$10), else of its canonical model. The long-context tier
-- prices the whole call when the input (cache reads and writes included) exceeds the threshold,
-- as providers bill; batch calls get the row's batch discount. A call without a price keeps null
-- costs and is_priced = false: never a silent $0.
-- A view holds no run window: fct_llm_calls filters its window on top (DuckDB and Spark push the
-- filter down to the calls; only the distinct model names are read over all of them), so a run
-- without window vars re-prices all of history.
with calls as (
    select * from {{ ref('stg_raw__llm_calls') }}
),

prices as (
    select * from {{ ref('stg_seeds__model_prices') }}
),

aliases as (
    select * from {{ ref('stg_seeds__model_aliases') }}
),

-- the model names to resolve, read apart from `calls`: a CTE used twice is materialized whole,
-- and a run's hour filter on this view would no longer reach the calls it prices
call_models as (
    select distinct provider, model from {{ ref('stg_raw__llm_calls') }}
),

{{ resolved_model_names('call_models', 'aliases') }},

matched as (
    select
        calls.*,
        resolved_models.canonical_model,
        coalesce(own_prices.price_id, canonical_prices.price_id) as price_id
    from calls
    left join resolved_models
        on calls.provider = resolved_models.provider
        and calls.model = resolved_models.model
    left join prices as own_prices
        on own_prices.provider = calls.provider
        and own_prices.model = resolved_models.own_model
        and calls.occurred_at >= own_prices.valid_from
        and calls.occurred_at < own_prices.valid_to
    left join prices as canonical_prices
        on canonical_prices.provider = calls.provider
        and canonical_prices.model = resolved_models.canonical_model
        and calls.occurred_at >= canonical_prices.valid_from
        and calls.occurred_at < canonical_prices.valid_to
),

joined as (
    select
        matched.*,
        prices.long_context_threshold_tokens,
        prices.long_context_threshold_tokens is not null
            and matched.input_tokens > prices.long_context_threshold_tokens as is_long_context,
        prices.input_usd_per_mtok,
        prices.output_usd_per_mtok,
        prices.cache_read_usd_per_mtok,
        prices.cache_write_usd_per_mtok,
        prices.long_input_usd_per_mtok,
        prices.long_output_usd_per_mtok,
        prices.long_cache_read_usd_per_mtok,
        prices.long_cache_write_usd_per_mtok,
        case when matched.service_tier = 'batch' then 1 - prices.batch_discount else 1 end
            as price_factor
    from matched
    left join prices
        on prices.price_id = matched.price_id
),

tiered as (
    select
        *,
        case when is_long_context then long_input_usd_per_mtok else input_usd_per_mtok end
            as applied_input_usd_per_mtok,
        case when is_long_context then long_output_usd_per_mtok else output_usd_per_mtok end
            as applied_output_usd_per_mtok,
        case when is_long_context then long_cache_read_usd_per_mtok else cache_read_usd_per_mtok end
            as applied_cache_read_usd_per_mtok,
        case when is_long_context then long_cache_write_usd_per_mtok else cache_write_usd_per_mtok end
            as applied_cache_write_usd_per_mtok
    from joined
),

components as (
    select
        *,
        {{ money(usd_for_tokens('uncached_input_tokens', 'applied_input_usd_per_mtok') ~ ' * price_factor') }}
            as input_cost_usd,
        {{ money(usd_for_tokens('cache_read_tokens', 'applied_cache_read_usd_per_mtok') ~ ' * price_factor') }}
            as cache_read_cost_usd,
        {{ money(usd_for_tokens('cache_write_tokens', 'applied_cache_write_usd_per_mtok') ~ ' * price_factor') }}
            as cache_write_cost_usd,
        {{ money(usd_for_tokens('output_tokens', 'applied_output_usd_per_mtok') ~ ' * price_factor') }}
            as output_cost_usd,
        {{ money(usd_for_tokens('cache_read_tokens + cache_write_tokens', 'applied_input_usd_per_mtok') ~ ' * price_factor') }}
            as cached_at_full_price_usd
    from tiered
),

final as (
    select
        event_id,
        occurred_at,
        hour_at,
        provider,
        model,
        coalesce(canonical_model, model) as canonical_model,
        feature,
        endpoint,
        environment,
        team_id,
        user_id,
        prompt_version,
        service_tier,
        status,
        is_error,
        attempt,
        is_retry,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
        reasoning_tokens,
        uncached_input_tokens,
        total_tokens,
        latency_ms,
        price_id,
        price_id is not null as is_priced,
        coalesce(is_long_context, false) as is_long_context,
        input_cost_usd,
        cache_read_cost_usd,
        cache_write_cost_usd,
        output_cost_usd,
        {{ money('input_cost_usd + cache_read_cost_usd + cache_write_cost_usd + output_cost_usd') }}
            as cost_usd,
        {{ money('cached_at_full_price_usd - cache_read_cost_usd - cache_write_cost_usd') }}
            as cache_savings_usd,
        cost_usd_reported,
        cast(tags as string) as tags
    from components
)

select * from final
