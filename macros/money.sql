{#- Money is DECIMAL(38, 15): prices are USD per 1M tokens, so a token costs price × 1e-6.
    Exact decimal arithmetic keeps sums over millions of calls free of float drift. -#}

{% macro usd_for_tokens(tokens, usd_per_mtok) -%}
    {{ return(adapter.dispatch('usd_for_tokens', 'spendwatch')(tokens, usd_per_mtok)) }}
{%- endmacro %}

{% macro default__usd_for_tokens(tokens, usd_per_mtok) -%}
    cast(cast({{ tokens }} as decimal(38, 0)) * cast({{ usd_per_mtok }} as decimal(18, 9)) * cast(0.000001 as decimal(7, 6)) as decimal(38, 15))
{%- endmacro %}

{% macro money(expression) -%}
    cast({{ expression }} as decimal(38, 15))
{%- endmacro %}

{#- a / b as a double, null when b is 0 or null -#}
{% macro safe_ratio(numerator, denominator) -%}
    cast({{ numerator }} as double) / nullif(cast({{ denominator }} as double), 0)
{%- endmacro %}
