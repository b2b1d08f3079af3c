-- The floor of `make bench`: the core of what `spendwatch materialize` does, written by hand as
-- one DuckDB script — read the landing files, price every call with the price-list row valid at
-- occurred_at, aggregate per hour × feature × environment, and score each hour against a 7-day
-- trailing mean and standard deviation. No validation, no quarantine, no load log, no data-
-- quality checks, no detectors, no orchestration: the least the same work can cost.
--
-- Pricing is the warehouse's (int_llm_calls_priced): a name's own price rows first, else its
-- canonical model's (exact aliases of seeds/model_aliases.csv); uncached input, cache reads,
-- cache writes and output each at their price; the long-context tier when the input exceeds the
-- row's threshold; the batch discount for service_tier = 'batch'. Not done here: prefix aliases
-- (`claude-3-5-sonnet-...`): the generator only writes names that match exactly. Costs are
-- doubles, not DECIMAL(38, 15): they agree with the warehouse to far below a micro-dollar.
--
-- Inputs (set by the caller with SET VARIABLE): landing_glob, prices_csv, aliases_csv.
-- Output: the table floor_hourly.

create or replace temp table prices as
select
    lower(provider) as provider,
    model,
    cast(valid_from as timestamp) as valid_from,
    coalesce(cast(valid_to as timestamp), timestamp '9999-12-31') as valid_to,
    input_usd_per_mtok as input_price,
    output_usd_per_mtok as output_price,
    coalesce(cache_read_usd_per_mtok, input_usd_per_mtok) as cache_read_price,
    coalesce(cache_write_usd_per_mtok, input_usd_per_mtok) as cache_write_price,
    long_context_threshold_tokens as long_threshold,
    coalesce(long_input_usd_per_mtok, input_usd_per_mtok) as long_input_price,
    coalesce(long_output_usd_per_mtok, output_usd_per_mtok) as long_output_price,
    coalesce(long_cache_read_usd_per_mtok, cache_read_usd_per_mtok, long_input_usd_per_mtok,
             input_usd_per_mtok) as long_cache_read_price,
    coalesce(long_cache_write_usd_per_mtok, cache_write_usd_per_mtok, long_input_usd_per_mtok,
             input_usd_per_mtok) as long_cache_write_price,
    coalesce(batch_discount, 0) as batch_discount
from read_csv(getvariable('prices_csv'));

create or replace temp table aliases as
select lower(provider) as provider, alias, model
from read_csv(getvariable('aliases_csv'))
where lower(match_type) = 'exact';

create or replace table floor_hourly as
with calls as (
    select
        occurred_at,
        lower(trim(provider)) as provider,
        trim(model) as model,
        input_tokens,
        output_tokens,
        coalesce(cache_read_tokens, 0) as cache_read_tokens,
        coalesce(cache_write_tokens, 0) as cache_write_tokens,
        feature,
        lower(coalesce(environment, 'production')) as environment,
        lower(coalesce(service_tier, 'standard')) as service_tier
    from read_json(
        getvariable('landing_glob'),
        format = 'newline_delimited',
        hive_partitioning = false,
        columns = {
            occurred_at: 'timestamp', provider: 'varchar', model: 'varchar',
            input_tokens: 'bigint', output_tokens: 'bigint', cache_read_tokens: 'bigint',
            cache_write_tokens: 'bigint', feature: 'varchar', environment: 'varchar',
            service_tier: 'varchar'
        }
    )
),

matched as (
    select
        calls.*,
        own.model is not null as has_own,
        own.model is not null or canonical.model is not null as is_priced,
        case when own.model is not null then own.long_threshold else canonical.long_threshold end
            as long_threshold,
        coalesce(own.input_price, canonical.input_price) as input_price,
        coalesce(own.output_price, canonical.output_price) as output_price,
        coalesce(own.cache_read_price, canonical.cache_read_price) as cache_read_price,
        coalesce(own.cache_write_price, canonical.cache_write_price) as cache_write_price,
        coalesce(own.long_input_price, canonical.long_input_price) as long_input_price,
        coalesce(own.long_output_price, canonical.long_output_price) as long_output_price,
        coalesce(own.long_cache_read_price, canonical.long_cache_read_price)
            as long_cache_read_price,
        coalesce(own.long_cache_write_price, canonical.long_cache_write_price)
            as long_cache_write_price,
        coalesce(own.batch_discount, canonical.batch_discount) as batch_discount
    from calls
    left join aliases
        on aliases.provider = calls.provider and aliases.alias = calls.model
    left join prices as own
        on own.provider = calls.provider
        and own.model = calls.model
        and calls.occurred_at >= own.valid_from
        and calls.occurred_at < own.valid_to
    left join prices as canonical
        on canonical.provider = calls.provider
        and canonical.model = coalesce(aliases.model, calls.model)
        and calls.occurred_at >= canonical.valid_from
        and calls.occurred_at < canonical.valid_to
),

priced as (
    select
        date_trunc('hour', occurred_at) as hour_at,
        feature,
        environment,
        case when not is_priced then null else
            (case when service_tier = 'batch' then 1 - batch_discount else 1 end)
            * (
                (input_tokens - cache_read_tokens - cache_write_tokens)
                    * (case when input_tokens > long_threshold then long_input_price else input_price end)
                + cache_read_tokens
                    * (case when input_tokens > long_threshold then long_cache_read_price else cache_read_price end)
                + cache_write_tokens
                    * (case when input_tokens > long_threshold then long_cache_write_price else cache_write_price end)
                + output_tokens
                    * (case when input_tokens > long_threshold then long_output_price else output_price end)
            ) / 1e6
        end as cost_usd
    from matched
),

hourly as (
    select
        hour_at,
        feature,
        environment,
        count(*) as calls,
        coalesce(sum(cost_usd), 0) as cost_usd
    from priced
    group by hour_at, feature, environment
)

select
    *,
    avg(calls) over trailing_week as calls_baseline,
    stddev_samp(calls) over trailing_week as calls_stddev,
    avg(cost_usd) over trailing_week as cost_usd_baseline,
    stddev_samp(cost_usd) over trailing_week as cost_usd_stddev
from hourly
window trailing_week as (
    partition by feature, environment
    order by hour_at
    range between interval 168 hours preceding and interval 1 hour preceding
);
