-- Every name a priced model is known by: its own name, then declared aliases and prefixes.
with aliases as (
    select * from {{ ref('model_aliases') }}
),

prices as (
    select distinct provider, model from {{ ref('model_prices') }}
),

own_names as (
    select lower(provider) as provider, model as alias, model, 'own' as match_type
    from prices
),

declared as (
    select lower(provider) as provider, alias, model, lower(match_type) as match_type
    from aliases
),

final as (
    select * from own_names
    union all
    select * from declared
)

select * from final
