{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ delete_hour_window('hour_at') }}"
    )
}}
-- One row per priced LLM call. Incremental by hour: a run deletes and re-inserts its window.
with priced as (
    select * from {{ ref('int_llm_calls_priced') }}
    where {{ hour_window_filter('hour_at') }}
),

final as (
    select
        event_id,
        occurred_at,
        hour_at,
        provider,
        model,
        canonical_model,
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
        is_priced,
        is_long_context,
        input_cost_usd,
        cache_read_cost_usd,
        cache_write_cost_usd,
        output_cost_usd,
        cost_usd,
        cache_savings_usd,
        cost_usd_reported,
        cast(tags as varchar) as tags
    from priced
)

select * from final
