-- The dated price list with a stable id per row; an open valid_to means "still valid"
-- (is_current), stored as 9999-12-31 so range joins need no null case.
with prices as (
    select * from {{ ref('model_prices') }}
),

final as (
    select
        provider || '/' || model || '@' || cast(cast(valid_from as date) as string) as price_id,
        lower(provider) as provider,
        model,
        valid_from,
        coalesce(valid_to, cast('9999-12-31' as timestamp)) as valid_to,
        valid_to is null as is_current,
        input_usd_per_mtok,
        output_usd_per_mtok,
        coalesce(cache_read_usd_per_mtok, input_usd_per_mtok) as cache_read_usd_per_mtok,
        coalesce(cache_write_usd_per_mtok, input_usd_per_mtok) as cache_write_usd_per_mtok,
        long_context_threshold_tokens,
        coalesce(long_input_usd_per_mtok, input_usd_per_mtok) as long_input_usd_per_mtok,
        coalesce(long_output_usd_per_mtok, output_usd_per_mtok) as long_output_usd_per_mtok,
        coalesce(
            long_cache_read_usd_per_mtok, cache_read_usd_per_mtok, long_input_usd_per_mtok,
            input_usd_per_mtok
        ) as long_cache_read_usd_per_mtok,
        coalesce(
            long_cache_write_usd_per_mtok, cache_write_usd_per_mtok, long_input_usd_per_mtok,
            input_usd_per_mtok
        ) as long_cache_write_usd_per_mtok,
        coalesce(batch_discount, 0) as batch_discount,
        source
    from prices
)

select * from final
