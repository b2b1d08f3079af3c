-- One row per data-quality expectation and hour checked (orchestration/quality.py writes
-- ops.check_results), with the hour named hour_at like every other model.
with source as (
    select * from {{ source('ops', 'check_results') }}
),

renamed as (
    select
        cast(partition_hour as timestamp) as hour_at,
        asset,
        suite,
        check_name,
        suite || ':' || check_name as check_id,
        severity,
        passed,
        unexpected_count,
        element_count,
        observed_value,
        details,
        cast(checked_at as timestamp) as checked_at
    from source
)

select * from renamed
