-- The price each priced model has now: its row with an open valid_to (is_current). The list
-- price is input + output USD per 1M tokens, the yardstick model_drift compares a fallback with.
with prices as (
    select * from {{ ref('stg_seeds__model_prices') }}
),

current_rows as (
    select * from prices where is_current
),

final as (
    select
        provider,
        model,
        price_id,
        valid_from,
        input_usd_per_mtok,
        output_usd_per_mtok,
        input_usd_per_mtok + output_usd_per_mtok as list_usd_per_mtok
    from current_rows
)

select * from final
