{#- The measures every hourly mart carries, over calls from fct_llm_calls. cost_usd sums the
    priced calls only; unpriced_calls says how many are missing from it. cache_hit_rate is the
    share of calls that read the prompt cache; cache_read_share the share of input tokens read
    from it. -#}

{% macro hourly_metric_inputs() -%}
    hour_at, is_priced, is_error, is_retry, input_tokens, output_tokens, cache_read_tokens,
    cache_write_tokens, reasoning_tokens, total_tokens, cost_usd, cache_savings_usd
{%- endmacro %}

{% macro hourly_call_metrics() -%}
        count(*) as calls,
        count(case when is_priced then 1 end) as priced_calls,
        count(case when not is_priced then 1 end) as unpriced_calls,
        count(case when is_error then 1 end) as error_calls,
        count(case when is_retry then 1 end) as retry_calls,
        count(case when cache_read_tokens > 0 then 1 end) as cache_hit_calls,
        cast(sum(input_tokens) as bigint) as input_tokens,
        cast(sum(output_tokens) as bigint) as output_tokens,
        cast(sum(cache_read_tokens) as bigint) as cache_read_tokens,
        cast(sum(cache_write_tokens) as bigint) as cache_write_tokens,
        cast(sum(reasoning_tokens) as bigint) as reasoning_tokens,
        cast(sum(total_tokens) as bigint) as total_tokens,
        {{ money('coalesce(sum(cost_usd), 0)') }} as cost_usd,
        {{ money('coalesce(sum(cache_savings_usd), 0)') }} as cache_savings_usd
{%- endmacro %}

{#- columns that are 0 in an hour without calls -#}
{% macro hourly_additive_columns() -%}
    {{ return(['calls', 'priced_calls', 'unpriced_calls', 'error_calls', 'retry_calls',
               'cache_hit_calls', 'input_tokens', 'output_tokens', 'cache_read_tokens',
               'cache_write_tokens', 'reasoning_tokens', 'total_tokens', 'cost_usd',
               'cache_savings_usd']) }}
{%- endmacro %}

{#- ratios: null in an hour without calls (nothing to divide) -#}
{% macro hourly_ratio_columns() -%}
        {{ money('cost_usd / nullif(priced_calls, 0)') }} as cost_per_call_usd,
        {{ safe_ratio('cache_hit_calls', 'calls') }} as cache_hit_rate,
        {{ safe_ratio('cache_read_tokens', 'input_tokens') }} as cache_read_share,
        {{ safe_ratio('retry_calls', 'calls') }} as retry_rate,
        {{ safe_ratio('error_calls', 'calls') }} as error_rate
{%- endmacro %}

{#- The same measures summed from finer rows of a mart (an hourly mart rolled up to days) -#}
{% macro rolled_up_call_metrics() -%}
    {%- for column in hourly_additive_columns() %}
        {% if column.endswith('_usd') -%}
        {{ money('sum(' ~ column ~ ')') }} as {{ column }}
        {%- else -%}
        cast(sum({{ column }}) as bigint) as {{ column }}
        {%- endif %}{% if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}

{#- A plain rollup of the `calls` CTE (columns of hourly_metric_inputs() and the series
    columns) per `period` and series, with the measures and their ratios: one row per series
    and period that had calls. `extra_measures`: more aggregates of the same rows (SQL). The dense, baselined series marts use hourly_series_mart. -#}
{% macro call_rollup(period, series, extra_measures='') -%}
{%- set keys = series | join(', ') -%}
rolled as (
    select
        {{ period }},
        {{ keys }},
        {{ hourly_call_metrics() }}{% if extra_measures %},
        {{ extra_measures }}{% endif %}
    from calls
    group by {{ period }}, {{ keys }}
),

measured as (
    select
        *,
        {{ hourly_ratio_columns() }}
    from rolled
)
{%- endmacro %}
