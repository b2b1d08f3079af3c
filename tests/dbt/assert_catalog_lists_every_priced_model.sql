-- model_catalog.csv and model_prices.csv name the same models, and a model's released_on is the
-- day its first price row starts (`spendwatch prices sync` dates a new model's rows from it).
{{ config(meta={'dagster': {'ref': {'name': 'model_prices'}}}) }}

with catalog as (
    select lower(provider) as provider, model, released_on from {{ ref('model_catalog') }}
),

first_prices as (
    select lower(provider) as provider, model, min(valid_from) as first_valid_from
    from {{ ref('model_prices') }}
    group by lower(provider), model
),

final as (
    select
        coalesce(catalog.provider, first_prices.provider) as provider,
        coalesce(catalog.model, first_prices.model) as model,
        case
            when catalog.model is null then 'priced but not in model_catalog'
            when first_prices.model is null then 'in model_catalog but has no price rows'
            else 'released_on differs from the first price row'
        end as problem
    from catalog
    full outer join first_prices
        on first_prices.provider = catalog.provider
        and first_prices.model = catalog.model
    where catalog.model is null
        or first_prices.model is null
        or cast(first_prices.first_valid_from as date) <> cast(catalog.released_on as date)
)

select * from final
