{#- The measures every hourly mart carries, over calls from fct_llm_calls. cost_usd sums the
    priced calls only; unpriced_calls says how many are missing from it. -#}
{% macro hourly_call_metrics() -%}
        count(*) as calls,
        count(*) filter (where is_priced) as priced_calls,
        count(*) filter (where not is_priced) as unpriced_calls,
        count(*) filter (where is_error) as error_calls,
        count(*) filter (where is_retry) as retry_calls,
        cast(sum(input_tokens) as bigint) as input_tokens,
        cast(sum(output_tokens) as bigint) as output_tokens,
        cast(sum(cache_read_tokens) as bigint) as cache_read_tokens,
        cast(sum(cache_write_tokens) as bigint) as cache_write_tokens,
        cast(sum(reasoning_tokens) as bigint) as reasoning_tokens,
        cast(sum(total_tokens) as bigint) as total_tokens,
        {{ money('coalesce(sum(cost_usd), 0)') }} as cost_usd,
        {{ money('sum(cost_usd) / nullif(count(*) filter (where is_priced), 0)') }} as cost_per_call_usd,
        {{ money('coalesce(sum(cache_savings_usd), 0)') }} as cache_savings_usd,
        {{ safe_ratio('sum(cache_read_tokens)', 'sum(input_tokens)') }} as cache_hit_rate,
        {{ safe_ratio('count(*) filter (where is_retry)', 'count(*)') }} as retry_rate,
        {{ safe_ratio('count(*) filter (where is_error)', 'count(*)') }} as error_rate
{%- endmacro %}
