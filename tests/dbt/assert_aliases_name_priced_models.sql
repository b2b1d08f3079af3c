-- Every alias points at a model that has price rows under the same provider, and no alias is
-- declared twice: a typo in model_aliases.csv would otherwise leave calls silently unpriced.
{{ config(meta={'dagster': {'ref': {'name': 'model_prices'}}}) }}

with aliases as (
    select lower(provider) as provider, alias, model, lower(match_type) as match_type
    from {{ ref('model_aliases') }}
),

priced as (
    select distinct lower(provider) as provider, model from {{ ref('model_prices') }}
),

dangling as (
    select
        aliases.provider,
        aliases.alias,
        aliases.model,
        'names a model without price rows' as problem
    from aliases
    left join priced
        on priced.provider = aliases.provider
        and priced.model = aliases.model
    where priced.model is null
),

duplicated as (
    select
        provider,
        lower(alias) as alias,
        min(model) as model,
        'declared ' || cast(count(*) as string) || ' times' as problem
    from aliases
    group by provider, lower(alias), match_type
    having count(*) > 1
),

final as (
    select * from dangling
    union all
    select * from duplicated
)

select * from final
