-- Grain: one row per (hour_at, feature, environment) of agg_hourly_feature_cost that has a
-- seasonal baseline (not warming_up): why the hour's cost differs from its baseline, split into
-- the seven drivers by LMDI (macros/cost_drivers.sql; docs/detection.md, "Why the bill moved").
--
-- The baseline is the hourly mart's own: its volume is calls_baseline (the seasonal baseline the
-- volume detector reads), and its make-up per call (which models, tokens per call, cache reads,
-- retries, rates) is that of the hours the mart's chosen baseline kind reads — the same hour of
-- week over baseline_weeks weeks, else the same hour of day over baseline_days days, else the
-- trailing hours — pooled per model and scaled to calls_baseline calls. Each factor is thus
-- measured against its own usual value; baseline_cost_usd is what that baseline costs, and
-- the effects sum to cost_usd - baseline_cost_usd.
{%- set kinds = hourly_baseline_kinds() %}
{%- set lookback = kinds | map(attribute='span') | max %}
with feature_hours as (
    select
        hour_at,
        feature,
        environment,
        baseline_kind,
        cost_usd,
        calls_baseline,
        {{ hour_index('hour_at') }} as hour_index,
        hour_of_week,
        hour(hour_at) as hour_of_day
    from {{ ref('agg_hourly_feature_cost') }}
    where {{ hour_window_filter('hour_at') }}
        and baseline_kind <> 'warming_up'
        and calls_baseline is not null
),

model_hours as (
    -- the window's model rows and the history the baselines read before it
    select
        hour_at,
        {{ hour_index('hour_at') }} as hour_index,
        cast({{ day_of_week('hour_at') }} * 24 + hour(hour_at) as bigint) as hour_of_week,
        hour(hour_at) as hour_of_day,
        feature,
        environment,
        provider,
        model,
        calls as all_calls,
        priced_calls as calls,
        priced_retry_calls as retry_calls,
        priced_input_tokens as input_tokens,
        priced_output_tokens as output_tokens,
        priced_cache_read_tokens as cache_read_tokens,
        input_cost_usd,
        input_list_cost_usd,
        output_cost_usd
    from {{ ref('agg_hourly_feature_model_cost') }}
    where {{ lookback_window_filter('hour_at', lookback) }}
),

baseline_hours as (
    -- each scored hour's models over the hours its baseline kind reads (never itself)
    select
        feature_hours.hour_at,
        feature_hours.feature,
        feature_hours.environment,
        model_hours.provider,
        model_hours.model,
        {%- for m in ['all_calls', 'calls', 'retry_calls', 'input_tokens', 'output_tokens',
                      'cache_read_tokens', 'input_cost_usd', 'input_list_cost_usd', 'output_cost_usd'] %}
        sum(model_hours.{{ m }}) as {{ m }}{{ ',' if not loop.last }}
        {%- endfor %}
    from feature_hours
    inner join model_hours
        on model_hours.feature = feature_hours.feature
        and model_hours.environment = feature_hours.environment
        and model_hours.hour_index < feature_hours.hour_index
        and (
            {%- for kind in kinds %}
            (feature_hours.baseline_kind = '{{ kind.name }}'
                and model_hours.hour_index >= feature_hours.hour_index - {{ kind.span }}
                {%- if kind.key %}
                and model_hours.{{ kind.key }} = feature_hours.{{ kind.key }}
                {%- endif %})
            {%- if not loop.last %} or{% endif %}
            {%- endfor %}
        )
    group by
        feature_hours.hour_at, feature_hours.feature, feature_hours.environment,
        model_hours.provider, model_hours.model
),

baseline_scale as (
    -- pooled history → one hour of calls_baseline calls (0 when the history had no calls)
    select
        feature_hours.hour_at,
        feature_hours.feature,
        feature_hours.environment,
        case when sum(baseline_hours.all_calls) > 0
            then cast(feature_hours.calls_baseline as double) / cast(sum(baseline_hours.all_calls) as double)
            else 0 end as scale
    from feature_hours
    inner join baseline_hours
        on baseline_hours.hour_at = feature_hours.hour_at
        and baseline_hours.feature = feature_hours.feature
        and baseline_hours.environment = feature_hours.environment
    group by
        feature_hours.hour_at, feature_hours.feature, feature_hours.environment,
        feature_hours.calls_baseline
),

periods as (
    select
        baseline_hours.hour_at,
        baseline_hours.feature,
        baseline_hours.environment,
        0 as period,
        baseline_hours.provider,
        baseline_hours.model,
        {%- for m in ['calls', 'retry_calls', 'input_tokens', 'output_tokens', 'cache_read_tokens',
                      'input_cost_usd', 'input_list_cost_usd', 'output_cost_usd'] %}
        cast(baseline_hours.{{ m }} as double) * baseline_scale.scale as {{ m }}{{ ',' if not loop.last }}
        {%- endfor %}
    from baseline_hours
    inner join baseline_scale
        on baseline_scale.hour_at = baseline_hours.hour_at
        and baseline_scale.feature = baseline_hours.feature
        and baseline_scale.environment = baseline_hours.environment
    where baseline_scale.scale > 0
    union all
    select
        model_hours.hour_at,
        model_hours.feature,
        model_hours.environment,
        1 as period,
        model_hours.provider,
        model_hours.model,
        model_hours.calls,
        model_hours.retry_calls,
        model_hours.input_tokens,
        model_hours.output_tokens,
        model_hours.cache_read_tokens,
        model_hours.input_cost_usd,
        model_hours.input_list_cost_usd,
        model_hours.output_cost_usd
    from model_hours
    inner join feature_hours
        on feature_hours.hour_at = model_hours.hour_at
        and feature_hours.feature = model_hours.feature
        and feature_hours.environment = model_hours.environment
),

{{ cost_driver_effects('periods', ['hour_at', 'feature', 'environment']) }},

wide as (
    select
        hour_at,
        feature,
        environment,
        {%- for driver in cost_driver_names() %}
        max(case when driver = '{{ driver }}' then usd end) as {{ driver }}_usd,
        {%- endfor %}
        max(compared_cost_usd) as baseline_cost_usd,
        max(case when driver_rank = 1 and usd <> 0 then driver end) as top_driver,
        max(case when driver_rank = 1 and usd <> 0 then usd end) as top_driver_usd,
        {%- for rank in range(1, 8) %}
        max(case when driver_rank = {{ rank }} then {{ driver_json('driver', 'usd', 'share') }} end) as json_{{ rank }},
        max(case when driver_rank = {{ rank }} then {{ driver_phrase(rank) }} end) as phrase_{{ rank }}{{ ',' if not loop.last }}
        {%- endfor %}
    from driver_rows
    group by hour_at, feature, environment
),

final as (
    select
        feature_hours.hour_at,
        feature_hours.feature,
        feature_hours.environment,
        feature_hours.baseline_kind,
        feature_hours.cost_usd,
        {{ money('round(coalesce(wide.baseline_cost_usd, 0), 12)') }} as baseline_cost_usd,
        {{ money('feature_hours.cost_usd - ' ~ money('round(coalesce(wide.baseline_cost_usd, 0), 12)')) }} as cost_change_usd,
        {%- for driver in cost_driver_names() %}
        -- (+ 0 turns a -0.0 into 0.0)
        round(coalesce(wide.{{ driver }}_usd, 0), 9) + 0 as {{ driver }}_usd,
        {%- endfor %}
        wide.top_driver,
        round(wide.top_driver_usd, 9) as top_driver_usd,
        case when wide.hour_at is null then '[]'
            else '[' || {% for rank in range(1, 8) %}wide.json_{{ rank }}{{ " || ', ' || " if not loop.last }}{% endfor %} || ']'
        end as drivers,
        -- the phrases of the drivers that move at least 5 % of the change, biggest first (3 at most)
        case when wide.top_driver is not null then
            {{ driver_phrase_head() }}
        end as explanation
    from feature_hours
    left join wide
        on wide.hour_at = feature_hours.hour_at
        and wide.feature = feature_hours.feature
        and wide.environment = feature_hours.environment
)

select * from final
