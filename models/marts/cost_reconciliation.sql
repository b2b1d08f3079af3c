-- Grain: one row per (day_at, provider, model, token_kind) of a UTC day and provider that an
-- imported cost report covers: what the provider billed (cost report) against what the
-- warehouse computed from its calls, and the tokens on both sides where a usage report was
-- imported too. model is the warehouse's canonical model (provider names resolved through
-- the alias seed, as calls are); token_kind is input (uncached), cache_read, cache_write or
-- output, or 'unmapped' for a billed line the report names no model and token kind for (its
-- names in provider_line_items). A later report replaces an earlier one for the days both
-- cover. A run rebuilds every day its window touches, like the daily marts, so
-- `spendwatch reconcile import` (which runs this mart and marts.anomalies over the report's
-- days) and any re-pricing run over a range keep it current.
with reports as (
    select * from {{ ref('stg_provider_reports__costs') }}
    where {{ day_window_filter('day_at') }}
),

-- per provider, report kind and day, the file imported last
ranked_files as (
    select
        provider,
        report_kind,
        day_at,
        file_sha256,
        row_number() over (
            partition by provider, report_kind, day_at
            order by max(imported_at) desc, max(source_file) desc
        ) as file_rank
    from reports
    group by provider, report_kind, day_at, file_sha256
),

current_rows as (
    select reports.*
    from reports
    inner join ranked_files
        on ranked_files.provider = reports.provider
        and ranked_files.report_kind = reports.report_kind
        and ranked_files.day_at = reports.day_at
        and ranked_files.file_sha256 = reports.file_sha256
    where ranked_files.file_rank = 1
),

cost_coverage as (
    select distinct day_at, provider from current_rows where report_kind = 'cost'
),

usage_coverage as (
    select distinct day_at, provider from current_rows where report_kind = 'usage'
),

aliases as (
    select * from {{ ref('stg_seeds__model_aliases') }}
),

report_models as (
    select distinct provider, provider_model as model
    from current_rows
    where provider_model is not null
),

{{ resolved_model_names('report_models', 'aliases') }},

report_lines as (
    select
        current_rows.day_at,
        current_rows.provider,
        current_rows.report_kind,
        coalesce(resolved_models.canonical_model, current_rows.provider_model) as model,
        coalesce(current_rows.token_kind, 'unmapped') as token_kind,
        current_rows.line_item,
        current_rows.amount_usd,
        current_rows.tokens
    from current_rows
    left join resolved_models
        on resolved_models.provider = current_rows.provider
        and resolved_models.model = current_rows.provider_model
    where not current_rows.is_empty_bucket
),

billed as (
    select
        day_at,
        provider,
        model,
        token_kind,
        sum(amount_usd) as billed_usd,
        {{ string_list('line_item') }} as provider_line_items
    from report_lines
    where report_kind = 'cost'
    group by day_at, provider, model, token_kind
),

billed_tokens as (
    select day_at, provider, model, token_kind, sum(tokens) as billed_tokens
    from report_lines
    where report_kind = 'usage' and token_kind <> 'unmapped'
    group by day_at, provider, model, token_kind
),

calls as (
    select * from {{ ref('fct_llm_calls') }}
    where {{ day_window_filter('hour_at') }}
),

calls_by_model as (
    select
        date_trunc('day', hour_at) as day_at,
        provider,
        canonical_model as model,
        count(*) as calls,
        sum(case when is_priced then 0 else 1 end) as unpriced_calls,
        sum(uncached_input_tokens) as input_tokens,
        sum(cache_read_tokens) as cache_read_tokens,
        sum(cache_write_tokens) as cache_write_tokens,
        sum(output_tokens) as output_tokens,
        coalesce(sum(input_cost_usd), 0) as input_cost_usd,
        coalesce(sum(cache_read_cost_usd), 0) as cache_read_cost_usd,
        coalesce(sum(cache_write_cost_usd), 0) as cache_write_cost_usd,
        coalesce(sum(output_cost_usd), 0) as output_cost_usd
    from calls
    group by date_trunc('day', hour_at), provider, canonical_model
),

computed as (
    {%- for kind in ['input', 'cache_read', 'cache_write', 'output'] %}
    select
        day_at, provider, model, '{{ kind }}' as token_kind, calls, unpriced_calls,
        {{ kind }}_tokens as recorded_tokens,
        {{ kind }}_cost_usd as computed_usd
    from calls_by_model
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

sides as (
    select
        day_at, provider, model, token_kind,
        billed_usd,
        {{ money(0) }} as computed_usd,
        cast(null as bigint) as billed_tokens,
        cast(0 as bigint) as recorded_tokens,
        cast(0 as bigint) as calls,
        cast(0 as bigint) as unpriced_calls,
        provider_line_items
    from billed
    union all
    select
        day_at, provider, model, token_kind,
        {{ money(0) }}, {{ money(0) }}, billed_tokens, cast(0 as bigint), cast(0 as bigint),
        cast(0 as bigint), cast(null as string)
    from billed_tokens
    union all
    select
        day_at, provider, model, token_kind,
        {{ money(0) }}, {{ money('computed_usd') }}, cast(null as bigint), recorded_tokens,
        calls, unpriced_calls, cast(null as string)
    from computed
),

combined as (
    select
        sides.day_at,
        sides.provider,
        sides.model,
        sides.token_kind,
        {{ money('sum(sides.billed_usd)') }} as billed_usd,
        {{ money('sum(sides.computed_usd)') }} as computed_usd,
        case
            when usage_coverage.day_at is not null and sides.token_kind <> 'unmapped'
                then coalesce(sum(sides.billed_tokens), 0)
        end as billed_tokens,
        sum(sides.recorded_tokens) as recorded_tokens,
        max(sides.calls) as calls,
        max(sides.unpriced_calls) as unpriced_calls,
        max(sides.provider_line_items) as provider_line_items
    from sides
    inner join cost_coverage
        on cost_coverage.day_at = sides.day_at and cost_coverage.provider = sides.provider
    left join usage_coverage
        on usage_coverage.day_at = sides.day_at and usage_coverage.provider = sides.provider
    group by sides.day_at, sides.provider, sides.model, sides.token_kind, usage_coverage.day_at
),

scored as (
    select
        combined.*,
        {{ likely_cause('combined.token_kind', 'combined.billed_usd', 'combined.computed_usd',
                        'combined.billed_tokens', 'combined.recorded_tokens', 'combined.calls',
                        'combined.unpriced_calls') }} as likely_cause
    from combined
    {{ join_invoice_thresholds('combined.provider', 'combined.model') }}
    -- a token kind neither side has (OpenAI bills no cache writes) is no row
    where combined.billed_usd <> 0
        or combined.computed_usd <> 0
        or combined.recorded_tokens <> 0
        or coalesce(combined.billed_tokens, 0) <> 0
),

final as (
    select
        cast(day_at as date) as day,
        cast(day_at as timestamp) as day_at,
        provider,
        model,
        token_kind,
        billed_usd,
        computed_usd,
        {{ money('billed_usd - computed_usd') }} as difference_usd,
        {{ difference_pct('billed_usd', 'computed_usd') }} as difference_pct,
        cast(billed_tokens as bigint) as billed_tokens,
        cast(recorded_tokens as bigint) as recorded_tokens,
        cast(calls as bigint) as calls,
        cast(unpriced_calls as bigint) as unpriced_calls,
        likely_cause,
        provider_line_items
    from scored
)

select * from final
