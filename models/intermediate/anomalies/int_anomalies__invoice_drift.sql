-- A day on which what a provider billed for a model (an imported cost report) differs from
-- what the warehouse computed for it by at least the warning floors of the
-- invoice_drift_thresholds seed, in percent of the computed cost and in dollars (critical: both
-- critical floors). One row per (day, provider, model), at the day's first hour; reads
-- marts.cost_reconciliation, summed over its token kinds (lines without a model or token kind
-- are not drift of a model: the mart lists them as unmapped). The likely cause is named by
-- the same rule as the mart's rows, on the model's totals.
with reconciled as (
    select * from {{ ref('cost_reconciliation') }}
    where token_kind <> 'unmapped' and model is not null
),

by_model as (
    select
        day_at,
        provider,
        model,
        sum(billed_usd) as billed_usd,
        sum(computed_usd) as computed_usd,
        sum(billed_tokens) as billed_tokens,
        sum(recorded_tokens) as recorded_tokens,
        max(calls) as calls,
        max(unpriced_calls) as unpriced_calls
    from reconciled
    group by day_at, provider, model
),

scored as (
    select
        by_model.*,
        {{ difference_pct('billed_usd', 'computed_usd') }} as difference_pct,
        {{ likely_cause("'all'", 'billed_usd', 'computed_usd', 'billed_tokens',
                        'recorded_tokens', 'calls', 'unpriced_calls') }} as likely_cause,
        {{ is_invoice_gap('billed_usd', 'computed_usd') }} as is_gap,
        abs(billed_usd - computed_usd) >= {{ invoice_threshold('critical_usd') }}
            and coalesce(abs({{ difference_pct('billed_usd', 'computed_usd') }})
                >= {{ invoice_threshold('critical_pct') }}, true) as is_critical
    from by_model
    {{ join_invoice_thresholds('by_model.provider', 'by_model.model') }}
),

final as (
    select
        day_at as hour_at,
        'invoice_drift' as detector,
        case when is_critical then 'critical' else 'warning' end as severity,
        cast(null as string) as feature,
        cast(null as string) as environment,
        model,
        cast(null as string) as team_id,
        'billed_usd' as metric,
        cast(billed_usd as double) as observed_value,
        cast(computed_usd as double) as baseline_value,
        cast(null as double) as stddev_value,
        cast(null as double) as z_score,
        {{ safe_ratio('billed_usd', 'computed_usd') }} as ratio_to_baseline,
        {{ money('abs(billed_usd - computed_usd)') }} as estimated_excess_cost_usd,
        'invoice drift ' || provider || '/' || model || ' on ' || cast(cast(day_at as date) as string)
            || ': billed ' || {{ format_usd('billed_usd') }} || ', computed '
            || {{ format_usd('computed_usd') }} || ' ('
            || case when billed_usd >= computed_usd then '+' else '-' end
            || {{ format_usd('abs(billed_usd - computed_usd)') }}
            || coalesce(', ' || case when difference_pct >= 0 then '+' else '' end
                || {{ format_decimal('difference_pct', 1) }} || ' %', '')
            || ')'
            || coalesce('; likely cause: ' || likely_cause, '')
            || case
                when billed_tokens > 0 then ', ' || {{ format_decimal('100 * ' ~ safe_ratio('recorded_tokens', 'billed_tokens'), 1) }}
                    || ' % of the billed tokens recorded'
                when billed_tokens is null and likely_cause is null
                    then '; import the usage report to tell missing calls from a price difference'
                else ''
            end
            || case when unpriced_calls > 0 then ', ' || {{ format_count('unpriced_calls') }}
                || ' calls unpriced' else '' end as message
    from scored
    where is_gap
)

select * from final
