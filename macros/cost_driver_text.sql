{#- How the mart `agg_hourly_feature_cost_drivers` (and through it marts.anomalies) words the
    decomposition of macros/cost_drivers.sql. dbt only (the engines' number formats differ);
    `spendwatch explain` words the same rows in Python. -#}

{#- the seven drivers, in the order of docs/detection.md -#}
{% macro cost_driver_names() -%}
    {{ return(['volume', 'model_mix', 'input_tokens_per_call', 'output_tokens_per_call', 'cache',
               'retries', 'price']) }}
{%- endmacro %}

{#- a signed amount: '+$41.20' (sign='always'), '-$2.00', '$33.10' -#}
{% macro signed_usd(expression, sign='negative') -%}
    case when {{ expression }} < 0 then '-' else '{{ "+" if sign == "always" else "" }}' end || {{ format_usd('abs(' ~ expression ~ ')') }}
{%- endmacro %}

{#- '2.8×' (two decimals near 1, where one would say 1.0×) -#}
{% macro driver_ratio(after, before) -%}
    case when {{ before }} > 0 and {{ after }} > 0 then
        case when {{ after }} / {{ before }} between 0.9 and 1.1
            then {{ format_decimal(after ~ ' / ' ~ before, 2) }}
            else {{ format_decimal(after ~ ' / ' ~ before, 1) }} end || '×'
    end
{%- endmacro %}

{% macro driver_percent(expression) -%}
    {{ format_decimal('100 * ' ~ expression, 0) }} || ' %'
{%- endmacro %}

{#- what a driver row of driver_rows says: 'input tokens per call 2.8×', 'model mix → claude-3-opus' -#}
{% macro driver_label() -%}
    case driver
        when 'volume' then 'volume' || coalesce(' ' || {{ driver_ratio('value_after', 'value_before') }}, '')
        when 'model_mix' then 'model mix' || coalesce(
            case when value_after > coalesce(value_before, 0) then ' → ' else ' away from ' end || detail_model, '')
        when 'input_tokens_per_call' then 'input tokens per call' || coalesce(' ' || {{ driver_ratio('value_after', 'value_before') }}, '')
        when 'output_tokens_per_call' then 'output tokens per call' || coalesce(' ' || {{ driver_ratio('value_after', 'value_before') }}, '')
        when 'cache' then 'cache' || coalesce(' reads ' || {{ driver_percent('value_before') }} || ' → ' || {{ driver_percent('value_after') }} || ' of input tokens', '')
        when 'retries' then 'retries' || coalesce(' ' || {{ driver_percent('value_before') }} || ' → ' || {{ driver_percent('value_after') }} || ' of calls', '')
        when 'price' then 'price' || coalesce(' of ' || detail_model || coalesce(' ' || {{ driver_ratio('value_after', 'value_before') }}, ''), '')
    end
{%- endmacro %}

{#- one driver of the explanation: the first names the change ('$33.10 of +$41.20: input tokens
    per call 2.8×'), the next ones only their part ('$6.30: model mix → claude-3-opus'). A
    driver is worded when it is the biggest or moves at least 5 % of the change. -#}
{% macro driver_phrase(rank) -%}
    case when usd <> 0 and ({{ rank }} = 1 or abs(usd) >= 0.05 * abs(total_change_usd)) then
        {{ signed_usd('usd') }}
        {%- if rank == 1 %} || ' of ' || {{ signed_usd('total_change_usd', 'always') }}{% endif %}
        || ': ' || {{ driver_label() }}
    end
{%- endmacro %}

{#- the explanation: the first three phrases (of the pivoted phrase_<rank> columns) -#}
{% macro driver_phrase_head() -%}
    wide.phrase_1 || coalesce('; ' || wide.phrase_2, '') || coalesce('; ' || wide.phrase_3, '')
{%- endmacro %}

{#- one driver as JSON: {"driver": "cache", "usd": 12.34, "share": 0.4321} (share null when the
    change is under a cent) -#}
{% macro driver_json(driver, usd, share) -%}
    '{"driver": "' || {{ driver }} || '", "usd": ' || cast(cast(round({{ usd }}, 2) as decimal(38, 2)) as string)
        || ', "share": ' || coalesce(cast(cast(round({{ share }}, 4) as decimal(38, 4)) as string), 'null') || '}'
{%- endmacro %}
