-- A call must match at most one price row: no two rows of one (provider, model) are valid at the
-- same instant, and every row's range [valid_from, valid_to) is non-empty. Returns the culprits.
with prices as (
    select
        row_number() over (order by provider, model, valid_from, valid_to) as row_id,
        lower(provider) as provider,
        model,
        valid_from,
        coalesce(valid_to, cast('9999-12-31' as timestamp)) as valid_to
    from {{ ref('model_prices') }}
),

overlapping as (
    select
        earlier.provider,
        earlier.model,
        earlier.valid_from,
        earlier.valid_to,
        'overlaps the row valid from ' || cast(later.valid_from as string) as problem
    from prices as earlier
    inner join prices as later
        on earlier.provider = later.provider
        and earlier.model = later.model
        and earlier.row_id < later.row_id
        and earlier.valid_from < later.valid_to
        and later.valid_from < earlier.valid_to
),

empty_ranges as (
    select
        provider,
        model,
        valid_from,
        valid_to,
        'valid_to is not after valid_from' as problem
    from prices
    where valid_to <= valid_from
),

final as (
    select * from overlapping
    union all
    select * from empty_ranges
)

select * from final
