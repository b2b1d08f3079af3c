-- Every call priced once, here: the price row valid at occurred_at for the model the call's
-- name resolves to, the long-context tier when the input exceeds its threshold (the whole call
-- at the tier price, as providers bill), and the batch discount. A call without a price keeps
-- null costs and is_priced = false: never a silent $0.
with calls as (
    select * from {{ ref('stg_llm_calls') }}
    where {{ hour_window_filter('hour_at') }}
),

prices as (
    select * from {{ ref('stg_model_prices') }}
),

aliases as (
    select * from {{ ref('stg_model_aliases') }}
),

call_models as (
    select distinct provider, model from calls
),

candidates as (
    select
        call_models.provider,
        call_models.model,
        aliases.model as priced_model,
        case aliases.match_type when 'own' then 3 when 'exact' then 2 else 1 end as match_rank,
        length(aliases.alias) as alias_length
    from call_models
    inner join aliases
        on aliases.provider = call_models.provider
        and (
            (aliases.match_type in ('own', 'exact') and aliases.alias = call_models.model)
            or (
                aliases.match_type = 'prefix'
                and substr(call_models.model, 1, length(aliases.alias)) = aliases.alias
            )
        )
),

ranked_candidates as (
    select
        *,
        row_number() over (
            partition by provider, model order by match_rank desc, alias_length desc
        ) as candidate_rank
    from candidates
),

resolved_models as (
    select provider, model, priced_model from ranked_candidates where candidate_rank = 1
),

joined as (
    select
        calls.*,
        resolved_models.priced_model,
        prices.price_id,
        prices.long_context_threshold_tokens,
        prices.long_context_threshold_tokens is not null
            and calls.input_tokens > prices.long_context_threshold_tokens as is_long_context,
        prices.input_usd_per_mtok,
        prices.output_usd_per_mtok,
        prices.cache_read_usd_per_mtok,
        prices.cache_write_usd_per_mtok,
        prices.long_input_usd_per_mtok,
        prices.long_output_usd_per_mtok,
        prices.long_cache_read_usd_per_mtok,
        prices.long_cache_write_usd_per_mtok,
        case when calls.service_tier = 'batch' then 1 - prices.batch_discount else 1 end
            as price_factor
    from calls
    left join resolved_models
        on calls.provider = resolved_models.provider
        and calls.model = resolved_models.model
    left join prices
        on prices.provider = calls.provider
        and prices.model = resolved_models.priced_model
        and calls.occurred_at >= prices.valid_from
        and calls.occurred_at < prices.valid_to
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
        coalesce(priced_model, model) as canonical_model,
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
        tags,
        source_file,
        line_number
    from components
)

select * from final
