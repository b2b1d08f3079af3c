{#- Dynamic baselines for any metric of a periodic series (Elementary-style: the history is
    data, the score is window functions over it).

    For each metric and each baseline kind (in order of preference) the candidates step computes
    the centre (median by default, robust to one past incident in the training set), the spread
    (sample stddev) and the number of points, over the previous periods only: every frame ends
    at `1 preceding`, so the period being scored is never part of its own baseline.

    The choice step picks, per row, the first kind with enough points of the primary metric
    (`calls`), and emits for every metric `<m>_baseline`, `<m>_stddev`, `<m>_z` and
    `<m>_baseline_points`, plus `baseline_kind`. The stddev is the spread floored by the
    metric's `min_stddev` (so a flat history — stddev 0 — cannot make any wobble infinitely
    significant), widened by sqrt(1 + 1/points) for the uncertainty of a baseline estimated
    from few points (a prediction interval rather than the spread of the history alone).
    stddev and z are rounded (9 and 6 decimals): window sums in floating point may differ in
    the last bit with the order rows arrive in, and re-running an hour must give the same table. Too little
    history in every kind → `warming_up` and null baselines: no score, no alert.

    kinds: [{'name': 'hour_of_week', 'key': 'hour_of_week', 'span': 672, 'min_points': 3}, ...]
      key = extra partition column (the seasonality key) or none; span = periods looked back.
    metrics: [{'name': 'calls', 'min_stddev': 'greatest(sqrt({b}), 1)'}, ...]
      min_stddev is SQL in which {b} stands for the baseline value and {n} for the baseline
      number of calls: the noise floor of a count is Poisson (sqrt of the count), of a sum or a
      mean over n calls about 1/sqrt(n) of it, of a share binomial (sqrt(p(1-p)/n)).
-#}

{% macro baseline_candidates(series, metrics, kinds, period='hour_index') -%}
    {%- set center = var('baseline_center', 'median') -%}
    {%- for kind in kinds -%}
        {%- set partition = (series + ([kind.key] if kind.key else [])) | join(', ') -%}
        {%- set frame = 'partition by ' ~ partition ~ ' order by ' ~ period ~ ' range between ' ~ kind.span ~ ' preceding and 1 preceding' -%}
        {%- for metric in metrics %}
        {{ window_center(metric.name, frame, center) }} as {{ metric.name }}__{{ kind.name }}__center,
        stddev_samp({{ metric.name }}) over ({{ frame }}) as {{ metric.name }}__{{ kind.name }}__spread,
        count({{ metric.name }}) over ({{ frame }}) as {{ metric.name }}__{{ kind.name }}__points
        {%- if not loop.last %},{% endif %}
        {%- endfor %}
        {%- if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}

{% macro baseline_kind(kinds, primary='calls') -%}
    {%- set forced = var('force_baseline_kind', none) -%}
    case
    {%- for kind in kinds %}
        {%- if not forced or forced == kind.name %}
        when {{ primary }}__{{ kind.name }}__points >= {{ kind.min_points }} then '{{ kind.name }}'
        {%- endif %}
    {%- endfor %}
        else 'warming_up'
    end
{%- endmacro %}

{% macro baseline_choice(metrics, kinds) -%}
    {%- for metric in metrics %}
        {%- set m = metric.name %}
        {%- for part, suffix in [('center', 'baseline'), ('spread', 'raw_stddev'), ('points', 'baseline_points')] %}
        case baseline_kind
            {%- for kind in kinds %}
            when '{{ kind.name }}' then {{ m }}__{{ kind.name }}__{{ part }}
            {%- endfor %}
        end as {{ m }}_{{ suffix }},
        {%- endfor %}
    {%- endfor %}
        1 as _baseline_choice_done
{%- endmacro %}

{% macro baseline_scores(metrics) -%}
    {%- for metric in metrics %}
        {%- set m = metric.name %}
        {%- set floor = metric.min_stddev | replace('{b}', 'abs(' ~ m ~ '_baseline)') | replace('{n}', 'greatest(coalesce(calls_baseline, 1), 1)') %}
        cast({{ m }}_baseline as double) as {{ m }}_baseline,
        {%- set spread = 'greatest(coalesce(' ~ m ~ '_raw_stddev, 0), ' ~ floor ~ ') * sqrt(1 + 1.0 / greatest(' ~ m ~ '_baseline_points, 1))' %}
        round(cast({{ spread }} as double), 9) as {{ m }}_stddev,
        round(cast(({{ m }} - {{ m }}_baseline) / ({{ spread }}) as double), 6) as {{ m }}_z,
        cast(coalesce({{ m }}_baseline_points, 0) as bigint) as {{ m }}_baseline_points
        {%- if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}

{% macro window_center(expression, frame, center='median') -%}
    {{ return(adapter.dispatch('window_center', 'spendwatch')(expression, frame, center)) }}
{%- endmacro %}

{% macro default__window_center(expression, frame, center) -%}
    {%- if center == 'mean' -%}
    avg({{ expression }}) over ({{ frame }})
    {%- else -%}
    median({{ expression }}) over ({{ frame }})
    {%- endif -%}
{%- endmacro %}

{% macro spark__window_center(expression, frame, center) -%}
    {%- if center == 'mean' -%}
    avg({{ expression }}) over ({{ frame }})
    {%- else -%}
    percentile_approx({{ expression }}, 0.5) over ({{ frame }})
    {%- endif -%}
{%- endmacro %}

{#- The default kinds and metric floors of the hourly marts, in one place. -#}
{% macro hourly_baseline_kinds() -%}
    {{ return([
        {'name': 'hour_of_week', 'key': 'hour_of_week', 'span': var('baseline_weeks') * 168, 'min_points': var('min_hour_of_week_points')},
        {'name': 'hour_of_day', 'key': 'hour_of_day', 'span': var('baseline_days') * 24, 'min_points': var('min_hour_of_day_points')},
        {'name': 'trailing', 'key': none, 'span': var('trailing_hours'), 'min_points': var('min_trailing_points')},
    ]) }}
{%- endmacro %}

{% macro hourly_baseline_metrics() -%}
    {{ return([
        {'name': 'calls', 'min_stddev': 'greatest(sqrt({b}), 1)'},
        {'name': 'total_tokens', 'min_stddev': 'greatest(0.05 * {b}, 1.5 * {b} / sqrt({n}), 1)'},
        {'name': 'cost_usd', 'min_stddev': 'greatest(0.05 * {b}, 1.5 * {b} / sqrt({n}), 0.0001)'},
        {'name': 'cost_per_call_usd', 'min_stddev': 'greatest(0.03 * {b}, 2 * {b} / sqrt({n}), 0.000001)'},
        {'name': 'cache_hit_rate', 'min_stddev': 'greatest(0.02, sqrt({b} * (1 - {b}) / {n}))'},
        {'name': 'retry_rate', 'min_stddev': 'greatest(0.02, sqrt({b} * (1 - {b}) / {n}))'},
    ]) }}
{%- endmacro %}

{#- How far back an hourly run must read: the longest baseline span plus the week of activity
    that decides whether a silent hour of a series is a zero row (see hourly_series_spine). -#}
{% macro hourly_lookback_hours() -%}
    {{ return(var('baseline_weeks') * 168 + 168) }}
{%- endmacro %}
