{#- The cost-change decomposition (LMDI), defined once. docs/detection.md, "Why the bill moved",
    has the identity and the derivation.

    These macros are plain Jinja on purpose: no ref(), var(), return() or adapter.dispatch, and
    only SQL both engines have (ln, abs, case, coalesce, row_number). dbt expands them in the
    mart `agg_hourly_feature_cost_drivers` (and the per-model measures in
    `agg_hourly_feature_model_cost`); `spendwatch explain` renders the same file with jinja2
    (spendwatch/explain.py) and runs the result on the warehouse read-only. One definition, two
    callers, no Python re-implementation. -#}

{#- The per-model measures the decomposition needs, summed over rows of fct_llm_calls (priced
    calls only: an unpriced call has no cost to explain). `with_calls`: also priced_calls (the
    hourly marts already have it). -#}
{% macro cost_driver_measures(with_calls=false) -%}
    {%- if with_calls %}
        count(case when is_priced then 1 end) as priced_calls,
    {%- endif %}
        count(case when is_priced and is_retry then 1 end) as priced_retry_calls,
        cast(sum(case when is_priced then input_tokens else 0 end) as bigint) as priced_input_tokens,
        cast(sum(case when is_priced then output_tokens else 0 end) as bigint) as priced_output_tokens,
        cast(sum(case when is_priced then cache_read_tokens else 0 end) as bigint) as priced_cache_read_tokens,
        cast(coalesce(sum(case when is_priced
            then input_cost_usd + cache_read_cost_usd + cache_write_cost_usd end), 0) as decimal(38, 15)) as input_cost_usd,
        cast(coalesce(sum(case when is_priced
            then input_cost_usd + cache_read_cost_usd + cache_write_cost_usd + cache_savings_usd end), 0) as decimal(38, 15)) as input_list_cost_usd,
        cast(coalesce(sum(case when is_priced then output_cost_usd end), 0) as decimal(38, 15)) as output_cost_usd
{%- endmacro %}

{#- A sum over rows that does not depend on their order: each term as decimal(38, 18) (exact
    sums), the total back as a double. A double sum's last bit depends on the order the engine
    meets the rows in, and a rounded result could then differ between two builds of one hour. -#}
{% macro exact_sum(expression) -%}
    cast(sum(cast({{ expression }} as decimal(38, 18))) as double)
{%- endmacro %}

{#- CTEs (append after `with ...,`) that decompose, per group of `keys`, the change of cost
    between two periods into the seven drivers, and end in the CTE `driver_rows`.

    `periods`: a relation with the columns `keys`, `period` (0 = the period compared with,
    1 = the period explained), provider, model, calls, retry_calls, input_tokens, output_tokens,
    cache_read_tokens, input_cost_usd, input_list_cost_usd, output_cost_usd (the measures of
    cost_driver_measures; several rows per model and period are summed).

    `driver_rows`: one row per group and driver, with usd (the driver's effect; the seven sum
    to total_change_usd), share (usd / total_change_usd), driver_rank (1 = largest |usd|),
    value_before / value_after (what the driver measures, in each period: requests, the top
    model's share of calls, tokens per call, the cache-read share of input tokens, the retry
    share of calls, the top model's blended list price per 1M tokens) and detail_model (the
    model whose mix or price effect is largest), cost_usd, compared_cost_usd, total_change_usd. -#}
{% macro cost_driver_effects(periods, keys) -%}
{%- set k = keys | join(', ') -%}
{%- set measures = ['calls', 'retry_calls', 'input_tokens', 'output_tokens', 'cache_read_tokens',
                    'input_cost_usd', 'input_list_cost_usd', 'output_cost_usd'] -%}
{%- set drivers = ['volume', 'model_mix', 'input_tokens_per_call', 'output_tokens_per_call',
                   'cache', 'retries', 'price'] -%}
driver_models as (
    -- each group's models, every measure in both periods (_0: compared with, _1: explained)
    select
        {{ k }},
        provider,
        model,
        {%- for m in measures %}
        {{ exact_sum('case when period = 0 then ' ~ m ~ ' else 0 end') }} as {{ m }}_0,
        {{ exact_sum('case when period = 1 then ' ~ m ~ ' else 0 end') }} as {{ m }}_1{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ periods }}
    group by {{ k }}, provider, model
),

driver_group_sums as (
    select
        {{ k }},
        {%- for m in measures %}
        {%- for side in ['0', '1'] %}
        {{ exact_sum(m ~ '_' ~ side) }} as group_{{ m }}_{{ side }},
        {%- endfor %}
        {%- endfor %}
        {{ exact_sum('input_cost_usd_0 + output_cost_usd_0') }} as compared_cost_usd,
        {{ exact_sum('input_cost_usd_1 + output_cost_usd_1') }} as cost_usd
    from driver_models
    group by {{ k }}
),

driver_groups as (
    -- volume = requests (first attempts) and the retry factor = calls / requests, so that
    -- requests × retry factor = calls. A period whose calls are all retries (no first attempt:
    -- the retry factor is unbounded) folds the retries into volume on both sides: volume =
    -- calls, retry factor 1, and the retries effect is 0.
    select
        *,
        (group_calls_0 > 0 and group_calls_0 - group_retry_calls_0 <= 0)
            or (group_calls_1 > 0 and group_calls_1 - group_retry_calls_1 <= 0) as retries_folded
    from driver_group_sums
),

driver_group_factors as (
    select
        *,
        {%- for side in ['0', '1'] %}
        case when retries_folded then group_calls_{{ side }}
            else group_calls_{{ side }} - group_retry_calls_{{ side }} end as volume_{{ side }},
        case when retries_folded or group_calls_{{ side }} = 0 then 1.0
            else group_calls_{{ side }} / (group_calls_{{ side }} - group_retry_calls_{{ side }}) end as retry_factor_{{ side }}{{ ',' if not loop.last }}
        {%- endfor %}
    from driver_groups
),

driver_components as (
    -- a model's cost is the sum of its input side (uncached input, cache reads and writes) and
    -- its output side; each side is a product of factors, so each is one LMDI term. (A cross
    -- join with the two sides, not a union of two selects: Spark inlines every reference to a
    -- CTE, and unions of this chain multiplied its plan until planning ran out of memory.)
    select
        {{ k }},
        provider,
        model,
        sides.component,
        calls_0,
        calls_1,
        {%- for side in ['0', '1'] %}
        case when sides.component = 'input' then input_tokens_{{ side }} else output_tokens_{{ side }} end as tokens_{{ side }},
        {%- endfor %}
        {%- for side in ['0', '1'] %}
        case when sides.component = 'input' then input_cost_usd_{{ side }} else output_cost_usd_{{ side }} end as cost_{{ side }},
        {%- endfor %}
        -- no cache on the output side: its list cost is its cost (cache factor 1)
        {%- for side in ['0', '1'] %}
        case when sides.component = 'input' then input_list_cost_usd_{{ side }} else output_cost_usd_{{ side }} end as list_{{ side }}{{ ',' if not loop.last }}
        {%- endfor %}
    from driver_models
    cross join (values ('input'), ('output')) as sides (component)
),

driver_cases as (
    select
        driver_components.*,
        driver_group_factors.group_calls_0,
        driver_group_factors.group_calls_1,
        driver_group_factors.volume_0,
        driver_group_factors.volume_1,
        driver_group_factors.retry_factor_0,
        driver_group_factors.retry_factor_1,
        driver_components.cost_0 > 0 and driver_components.cost_1 > 0
            and driver_components.list_0 > 0 and driver_components.list_1 > 0 as is_log_case,
        -- one side costs nothing: the whole change goes to the first factor that is zero on
        -- that side (the analytical limit of the LMDI term; docs/detection.md)
        case
            when driver_components.cost_0 > 0 and driver_components.cost_1 > 0
                and driver_components.list_0 > 0 and driver_components.list_1 > 0 then null
            when driver_components.cost_0 = 0 and driver_components.cost_1 = 0 then null
            {%- for side in ['0', '1'] %}
            when driver_components.cost_{{ side }} = 0 then case
                when driver_group_factors.group_calls_{{ side }} = 0 then 'volume'
                when driver_components.calls_{{ side }} = 0 then 'model_mix'
                when driver_components.tokens_{{ side }} = 0 then driver_components.component || '_tokens_per_call'
                when driver_components.list_{{ side }} > 0 then 'cache'
                else 'price'
            end
            {%- endfor %}
            -- both sides cost something but one has no list cost (a free input rate with a
            -- priced cache): the rate itself changed
            else 'price'
        end as zero_driver
    from driver_components
    inner join driver_group_factors
        on {% for key in keys %}driver_group_factors.{{ key }} = driver_components.{{ key }}{% if not loop.last %}
        and {% endif %}{% endfor %}
),

driver_weights as (
    select
        *,
        -- L(a, b) = (a - b) / (ln a - ln b), and L(a, a) = a: where the logs agree to 1e-12
        -- the mean of the two (L's limit, exact to far below a cent)
        case when is_log_case then
            case when abs(ln(cost_1) - ln(cost_0)) < 1e-12 then (cost_0 + cost_1) / 2
                else (cost_1 - cost_0) / (ln(cost_1) - ln(cost_0)) end
        end as log_mean
    from driver_cases
),

driver_terms as (
    select
        {{ k }},
        provider,
        model,
        component,
        cost_0,
        cost_1,
        {%- set logs = {
            'volume': 'ln(volume_1 / volume_0)',
            'retries': 'ln(retry_factor_1 / retry_factor_0)',
            'model_mix': 'ln((calls_1 / group_calls_1) / (calls_0 / group_calls_0))',
            'tokens': 'ln((tokens_1 / calls_1) / (tokens_0 / calls_0))',
            'cache': 'ln((cost_1 / list_1) / (cost_0 / list_0))',
            'price': 'ln((list_1 / tokens_1) / (list_0 / tokens_0))',
        } %}
        {%- for driver in drivers %}
        {%- if driver.endswith('_tokens_per_call') %}
        {%- set component = driver.replace('_tokens_per_call', '') %}
        case
            when is_log_case and component = '{{ component }}' then log_mean * {{ logs['tokens'] }}
            when zero_driver = '{{ driver }}' then cost_1 - cost_0
            else 0
        end as {{ driver }}_usd
        {%- else %}
        case
            when is_log_case then log_mean * {{ logs[driver] }}
            when zero_driver = '{{ driver }}' then cost_1 - cost_0
            else 0
        end as {{ driver }}_usd
        {%- endif %}{{ ',' if not loop.last }}
        {%- endfor %}
    from driver_weights
),

driver_model_effects as (
    -- per model (both sides summed), every effect as an exact decimal sum: the group's effects
    -- are their sums (order-independent), and the mix and price effects name a model
    select
        {{ k }},
        provider,
        model,
        {%- for driver in drivers %}
        sum(cast({{ driver }}_usd as decimal(38, 18))) as {{ driver }}_usd_exact,
        {%- endfor %}
        {{ exact_sum('model_mix_usd') }} as model_mix_usd,
        {{ exact_sum('price_usd') }} as price_usd
    from driver_terms
    group by {{ k }}, provider, model
),

driver_top_models as (
    select
        driver_model_effects.*,
        row_number() over (
            partition by {% for key in keys %}driver_model_effects.{{ key }}{{ ', ' if not loop.last }}{% endfor %}
            order by abs(driver_model_effects.model_mix_usd) desc, driver_model_effects.model, driver_model_effects.provider
        ) as mix_rank,
        row_number() over (
            partition by {% for key in keys %}driver_model_effects.{{ key }}{{ ', ' if not loop.last }}{% endfor %}
            order by abs(driver_model_effects.price_usd) desc, driver_model_effects.model, driver_model_effects.provider
        ) as price_rank,
        driver_models.calls_0,
        driver_models.calls_1,
        -- the model's blended list price per 1M tokens at the compared period's token mix, at
        -- each period's rates (a Laspeyres price: only the rates move)
        1e6 * (driver_models.input_list_cost_usd_0 + driver_models.output_cost_usd_0)
            / nullif(driver_models.input_tokens_0 + driver_models.output_tokens_0, 0) as list_price_0,
        1e6 * (
            driver_models.input_tokens_0 * driver_models.input_list_cost_usd_1 / nullif(driver_models.input_tokens_1, 0)
            + driver_models.output_tokens_0 * driver_models.output_cost_usd_1 / nullif(driver_models.output_tokens_1, 0)
        ) / nullif(driver_models.input_tokens_0 + driver_models.output_tokens_0, 0) as list_price_1
    from driver_model_effects
    inner join driver_models
        on {% for key in keys %}driver_models.{{ key }} = driver_model_effects.{{ key }}
        and {% endfor %}driver_models.provider = driver_model_effects.provider
        and driver_models.model = driver_model_effects.model
),

driver_group_models as (
    -- per group: the seven effects (sums over its models) and the models that moved the mix
    -- and the price most (rank 1: the other rows are null under max)
    select
        {{ k }},
        {%- for driver in drivers %}
        cast(sum({{ driver }}_usd_exact) as double) as {{ driver }}_usd,
        {%- endfor %}
        max(case when mix_rank = 1 then model end) as mix_model,
        max(case when mix_rank = 1 then calls_0 end) as mix_calls_0,
        max(case when mix_rank = 1 then calls_1 end) as mix_calls_1,
        max(case when price_rank = 1 then model end) as price_model,
        max(case when price_rank = 1 then list_price_0 end) as list_price_0,
        max(case when price_rank = 1 then list_price_1 end) as list_price_1
    from driver_top_models
    group by {{ k }}
),

driver_group_effects as (
    select
        driver_groups_totals.*,
        {%- for driver in drivers %}
        coalesce(effects.{{ driver }}_usd, 0) as {{ driver }}_usd,
        {%- endfor %}
        effects.mix_model,
        effects.mix_calls_0 / nullif(driver_groups_totals.group_calls_0, 0) as mix_share_0,
        effects.mix_calls_1 / nullif(driver_groups_totals.group_calls_1, 0) as mix_share_1,
        effects.price_model,
        effects.list_price_0,
        effects.list_price_1
    from driver_group_factors as driver_groups_totals
    left join driver_group_models as effects
        on {% for key in keys %}effects.{{ key }} = driver_groups_totals.{{ key }}{% if not loop.last %}
        and {% endif %}{% endfor %}
),

driver_long as (
    -- one row per group and driver (a cross join with the seven, not a union of seven selects:
    -- see driver_components)
    {%- set per_call = {
        'volume': ('volume_0', 'volume_1', 'cast(null as string)'),
        'model_mix': ('mix_share_0', 'mix_share_1', 'mix_model'),
        'input_tokens_per_call': ('group_input_tokens_0 / nullif(group_calls_0, 0)', 'group_input_tokens_1 / nullif(group_calls_1, 0)', 'cast(null as string)'),
        'output_tokens_per_call': ('group_output_tokens_0 / nullif(group_calls_0, 0)', 'group_output_tokens_1 / nullif(group_calls_1, 0)', 'cast(null as string)'),
        'cache': ('group_cache_read_tokens_0 / nullif(group_input_tokens_0, 0)', 'group_cache_read_tokens_1 / nullif(group_input_tokens_1, 0)', 'cast(null as string)'),
        'retries': ('group_retry_calls_0 / nullif(group_calls_0, 0)', 'group_retry_calls_1 / nullif(group_calls_1, 0)', 'cast(null as string)'),
        'price': ('list_price_0', 'list_price_1', 'price_model'),
    } %}
    select
        {%- for key in keys %}
        driver_group_effects.{{ key }},
        {%- endfor %}
        listed.driver,
        listed.driver_order,
        case listed.driver
            {%- for driver in drivers %}
            when '{{ driver }}' then {{ driver }}_usd
            {%- endfor %}
        end as usd,
        {%- for i, column in [(0, 'value_before'), (1, 'value_after')] %}
        cast(case listed.driver
            {%- for driver in drivers %}
            when '{{ driver }}' then {{ per_call[driver][i] }}
            {%- endfor %}
        end as double) as {{ column }},
        {%- endfor %}
        case listed.driver
            {%- for driver in drivers %}
            when '{{ driver }}' then {{ per_call[driver][2] }}
            {%- endfor %}
        end as detail_model,
        cost_usd,
        compared_cost_usd,
        cost_usd - compared_cost_usd as total_change_usd
    from driver_group_effects
    cross join (
        values {% for driver in drivers %}('{{ driver }}', {{ loop.index }}){{ ', ' if not loop.last }}{% endfor %}
    ) as listed (driver, driver_order)
),

driver_rows as (
    select
        *,
        -- a share of a change under a cent says nothing
        case when abs(total_change_usd) >= 0.005 then usd / total_change_usd end as share,
        row_number() over (
            partition by {{ k }} order by abs(usd) desc, driver_order
        ) as driver_rank
    from driver_long
)
{%- endmacro %}
