-- One row per call, typed and normalised: lower-case provider, trimmed names, UTC hour.
with source as (
    select * from {{ source('raw', 'llm_calls') }}
),

renamed as (
    select
        event_id,
        -- timestamps are naive UTC on every engine (a Spark table may hold timestamp_ntz)
        cast(occurred_at as timestamp) as occurred_at,
        cast(date_trunc('hour', occurred_at) as timestamp) as hour_at,
        lower(trim(provider)) as provider,
        trim(model) as model,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
        reasoning_tokens,
        input_tokens - cache_read_tokens - cache_write_tokens as uncached_input_tokens,
        input_tokens + output_tokens as total_tokens,
        feature,
        endpoint,
        lower(environment) as environment,
        team_id,
        user_id,
        prompt_version,
        lower(service_tier) as service_tier,
        status,
        status = 'error' as is_error,
        attempt,
        attempt > 1 as is_retry,
        latency_ms,
        cost_usd_reported,
        tags,
        schema_version,
        source_file,
        line_number
    from source
)

select * from renamed
