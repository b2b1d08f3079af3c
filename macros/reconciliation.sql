{#- Shared pieces of marts.cost_reconciliation and the invoice_drift detector. -#}

{#- The invoice_drift thresholds of a row with provider and model columns: joins the seed's
    default row ('*', '*'), the provider's row (model '*') and the model's row; then
    invoice_threshold('warning_pct') is the most specific non-empty value. -#}
{% macro join_invoice_thresholds(provider, model) -%}
    cross join (
        select * from {{ ref('invoice_drift_thresholds') }} where provider = '*' and model = '*'
    ) as default_thresholds
    left join (
        select * from {{ ref('invoice_drift_thresholds') }} where provider <> '*' and model = '*'
    ) as provider_thresholds
        on provider_thresholds.provider = {{ provider }}
    left join (
        select * from {{ ref('invoice_drift_thresholds') }} where provider <> '*' and model <> '*'
    ) as model_thresholds
        on model_thresholds.provider = {{ provider }} and model_thresholds.model = {{ model }}
{%- endmacro %}

{% macro invoice_threshold(column) -%}
    coalesce(model_thresholds.{{ column }}, provider_thresholds.{{ column }}, default_thresholds.{{ column }})
{%- endmacro %}

{#- (billed − computed) as a percentage of the computed cost; null when nothing was computed -#}
{% macro difference_pct(billed, computed) -%}
    100 * cast({{ billed }} - {{ computed }} as double) / nullif(cast({{ computed }} as double), 0)
{%- endmacro %}

{#- A gap that reaches both warning floors (percent and dollars); an unpriced model (computed
    $0) counts as any percentage. Needs the thresholds joined (join_invoice_thresholds). -#}
{% macro is_invoice_gap(billed, computed) -%}
    (abs({{ billed }} - {{ computed }}) >= {{ invoice_threshold('warning_usd') }}
        and coalesce(abs({{ difference_pct(billed, computed) }}) >= {{ invoice_threshold('warning_pct') }}, true))
{%- endmacro %}

{#- Why billed and computed differ, where the data shows it (first that applies): a line the
    report does not name a model and token kind for; nothing material; calls of the model that
    the price list could not price; the warehouse recorded fewer tokens than were billed
    (usage report) — or none at all — (missing instrumentation) or more (duplicate
    recording); tokens equal within the tolerance, dollars not (price or tier: a price that
    changed, a tier or cache-write TTL priced flat). Null when a usage report would be needed
    to tell. -#}
{% macro likely_cause(token_kind, billed, computed, billed_tokens, recorded_tokens, calls, unpriced_calls) -%}
    case
        when {{ token_kind }} = 'unmapped' then 'unmapped line item'
        when not {{ is_invoice_gap(billed, computed) }} then null
        when {{ unpriced_calls }} > 0 then 'price list'
        when {{ billed_tokens }} is null and coalesce({{ calls }}, 0) = 0 then 'missing instrumentation'
        when {{ billed_tokens }} is null then null
        when {{ recorded_tokens }} < {{ billed_tokens }} * (1 - {{ invoice_threshold('token_tolerance_pct') }} / 100.0)
            then 'missing instrumentation'
        when {{ recorded_tokens }} > {{ billed_tokens }} * (1 + {{ invoice_threshold('token_tolerance_pct') }} / 100.0)
            then 'duplicate recording'
        else 'price or tier'
    end
{%- endmacro %}

{#- 'a, b, c': the distinct values of a string column in a group, sorted -#}
{% macro string_list(column) -%}
    {{ return(adapter.dispatch('string_list', 'spendwatch')(column)) }}
{%- endmacro %}

{% macro default__string_list(column) -%}
    string_agg(distinct {{ column }}, ', ' order by {{ column }})
{%- endmacro %}

{% macro spark__string_list(column) -%}
    nullif(array_join(array_sort(collect_set({{ column }})), ', '), '')
{%- endmacro %}
