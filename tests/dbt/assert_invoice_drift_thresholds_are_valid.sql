-- Fails (returns rows) when seeds/invoice_drift_thresholds.csv is inconsistent: no default row
-- ('*', '*'), an override row for a model without a provider, a default with an empty cell, or
-- a critical floor milder than the warning one once overrides are resolved.
with thresholds as (
    select * from {{ ref('invoice_drift_thresholds') }}
),

defaults as (
    select * from thresholds where provider = '*' and model = '*'
),

missing_default as (
    select 'no default row (provider = *, model = *)' as problem
    from (select count(*) as default_rows from defaults) as counted
    where default_rows = 0
),

empty_default as (
    select 'the default row has an empty cell' as problem
    from defaults
    where warning_pct is null or warning_usd is null or critical_pct is null
        or critical_usd is null or token_tolerance_pct is null
),

model_without_provider as (
    select 'model ' || model || ' overridden without a provider' as problem
    from thresholds
    where provider = '*' and model <> '*'
),

resolved as (
    select
        specific.provider,
        specific.model,
        coalesce(specific.warning_pct, by_provider.warning_pct, defaults.warning_pct) as warning_pct,
        coalesce(specific.critical_pct, by_provider.critical_pct, defaults.critical_pct) as critical_pct,
        coalesce(specific.warning_usd, by_provider.warning_usd, defaults.warning_usd) as warning_usd,
        coalesce(specific.critical_usd, by_provider.critical_usd, defaults.critical_usd) as critical_usd
    from thresholds as specific
    cross join defaults
    left join thresholds as by_provider
        on by_provider.provider = specific.provider and by_provider.model = '*'
),

misordered as (
    select 'critical milder than warning for ' || provider || '/' || model as problem
    from resolved
    where critical_pct < warning_pct or critical_usd < warning_usd
)

select * from missing_default
union all
select * from empty_default
union all
select * from model_without_provider
union all
select * from misordered
