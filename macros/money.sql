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

{#- Spark keeps at most 38 digits and, by default, drops scale to fit (decimal(38,0) ×
    decimal(18,9) would keep 6 decimals: a call's cost rounded to the micro-dollar). Here the
    price per token is exact in decimal(18,15) and tokens × it fits decimal(38,15) without
    loss. The spark target also sets spark.sql.decimalOperations.allowPrecisionLoss=false, so
    the sums and factors after this keep their 15 decimals too (profiles.yml). -#}
{% macro spark__usd_for_tokens(tokens, usd_per_mtok) -%}
    cast(cast({{ tokens }} as decimal(19, 0)) * cast(cast({{ usd_per_mtok }} as decimal(18, 9)) * cast(0.000001 as decimal(7, 6)) as decimal(18, 15)) as decimal(38, 15))
{%- endmacro %}
