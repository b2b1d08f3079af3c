{#- Dynamic baselines for any metric of a periodic series (Elementary-style: the history is
    data, the score is window functions over it). Every frame ends at `1 preceding`: the hour
    being scored is never part of its own baseline, its level or its spread.

    Real traffic is not Poisson noise around a smooth curve: it is overdispersed, drifts, shifts
    level overnight and bursts for an hour. So "the usual" and "significant" are estimated from
    the series itself, in three steps (docs/detection.md has the measurements):

    1. seasonal centre: the median of the same hour of week over `baseline_weeks` weeks (at
       least `min_hour_of_week_points`), else of the same hour of day over `baseline_days` days,
       else of the trailing `trailing_hours` (that kind only informs, it never alerts); with too
       little history the series is `warming_up`. The kind is chosen by the points `calls` has.
       Means per call and shares (cost per call, cache hit rate, retry rate) have no weekly
       cycle worth the noise of a few same-hour points: their centre is the median of the
       trailing `trailing_hours` (no level step: that median is the level).
    2. level: the median deviation of the previous hours from their own seasonal centres (log
       ratio for volumes and costs) over `level_hours[kind]` hours. The baseline is the centre
       moved by that level, so a series whose traffic doubled overnight and stayed is expected
       at its new level after half that window, whatever the weeks before said: 12 hours on an
       hour-of-week baseline (24-hour window), 3.5 days on an hour-of-day one, whose level
       spans a whole week (168 hours) because its centre does not know the weekday and a level
       taken from a Sunday would call Monday morning a spike. No level on `trailing`.
    3. spread: of the deviations from the baseline over the previous `spread_hours` hours (of
       hours with about as many calls, and scored by the same kind of baseline, once there are
       enough of them: see baseline_spread_scopes), the
       larger of 1.4826 × their median absolute value (MAD: the body) and their 99th percentile
       over its one-sided normal z, 2.326 (the upper tail: a series that bursts 2.5× a few
       times a fortnight is not surprised by 2.5×; dips and outages, which no detector of
       excess reads, do not blunt it; each residual capped at `spread_tail_cap` bodies, so a
       past incident widens the tail by at most that much), floored by the metric's sampling
       noise. The last `spread_lag_hours` are left out, so the first hours of an incident do
       not widen the spread its next hours are judged by (Poisson for counts, ~1/√n for sums and
       means over n calls, binomial for shares), so a flat history cannot make a wobble
       infinitely significant. z = deviation / spread; null until `min_spread_points` hours of
       deviations exist.

    Volumes and money are scored on the log scale (multiplicative noise; a pseudo-count of
    one call's worth keeps silent hours finite), shares on the linear scale without a level
    step (their thresholds are absolute). Means over the hour's calls (cost per call, shares:
    `per_call_of`) wobble with 1/sqrt(n): their residuals are scaled by sqrt(n) before the
    spread is taken and the spread scaled back by the scored hour's own n, so a 70-call night
    hour is not judged by the calmer 300-call afternoons. `<m>_stddev` is the spread in the metric's own units
    ((baseline + unit) × log spread for log metrics), `<m>_z` the deviation in spreads.
    stddev and z are rounded (9 and 6 decimals) so re-running an hour gives the same table.

    kinds: [{'name': 'hour_of_week', 'key': 'hour_of_week', 'span': 672, 'min_points': 3}, ...]
    metrics: [{'name': 'calls', 'scale': 'log', 'unit': '1', 'floor': '1 / sqrt({b} + 1)'}, ...]
      unit (log metrics) and floor are SQL; {s} stands for the metric's seasonal centre, {b}
      for its baseline, {n} for the baseline number of calls. The floor is in the scale the
      metric is scored on (relative for log metrics).
-#}

{% macro baseline_candidates(series, metrics, kinds, period='hour_index') -%}
    {%- set center = var('baseline_center') -%}
    {%- for kind in kinds -%}
        {%- set partition = (series + ([kind.key] if kind.key else [])) | join(', ') -%}
        {%- set frame = 'partition by ' ~ partition ~ ' order by ' ~ period ~ ' range between ' ~ kind.span ~ ' preceding and 1 preceding' -%}
        {%- for metric in metrics %}
        {{ window_center(metric.name, frame, center) }} as {{ metric.name }}__{{ kind.name }}__center,
        count({{ metric.name }}) over ({{ frame }}) as {{ metric.name }}__{{ kind.name }}__points
        {%- if not loop.last %},{% endif %}
        {%- endfor %}
        {%- if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}

{% macro baseline_kind(kinds, primary='calls') -%}
    {%- set forced = var('force_baseline_kind') -%}
    case
    {%- for kind in kinds %}
        {%- if not forced or forced == kind.name %}
        when {{ primary }}__{{ kind.name }}__points >= {{ kind.min_points }} then '{{ kind.name }}'
        {%- endif %}
    {%- endfor %}
        else 'warming_up'
    end
{%- endmacro %}

{#- <m>_seasonal and <m>_baseline_points of the chosen kind. A metric declared
    `'center': 'trailing'` (a mean per call or a share: no weekly cycle worth the noise of
    two to four same-hour points) takes the median of the trailing window instead, once that
    has its min_points, whatever kind the row's calls chose; until then it has no centre. -#}
{% macro baseline_choice(metrics, kinds) -%}
    {%- set trailing = (kinds | selectattr('name', 'equalto', 'trailing') | list)[0] -%}
    {%- for metric in metrics %}
        {%- set m = metric.name %}
        {%- for part, suffix in [('center', 'seasonal'), ('points', 'baseline_points')] %}
        {%- if metric.center == 'trailing' %}
        case when baseline_kind <> 'warming_up' and {{ m }}__trailing__points >= {{ trailing.min_points }}
            then {{ m }}__trailing__{{ part }} end as {{ m }}_{{ suffix }}
        {%- else %}
        case baseline_kind
            {%- for kind in kinds %}
            when '{{ kind.name }}' then {{ m }}__{{ kind.name }}__{{ part }}
            {%- endfor %}
        end as {{ m }}_{{ suffix }}
        {%- endif %}{% if not (loop.last and metric == metrics[-1]) %},{% endif %}
        {%- endfor %}
    {%- endfor %}
{%- endmacro %}

{#- one call's worth of a log-scale metric (its pseudo-count) -#}
{% macro baseline_unit(metric) -%}
    {{ metric.unit | replace('{s}', metric.name ~ '_seasonal') }}
{%- endmacro %}

{#- step 2a: each hour's deviation from its seasonal centre -#}
{% macro baseline_deviations(metrics) -%}
    {%- for metric in metrics %}
        {%- set m = metric.name %}
        {%- if metric.scale == 'log' %}
        ln(({{ m }} + {{ baseline_unit(metric) }}) / nullif({{ m }}_seasonal + {{ baseline_unit(metric) }}, 0)) as {{ m }}__seasonal_dev
        {%- else %}
        {{ m }} - {{ m }}_seasonal as {{ m }}__seasonal_dev
        {%- endif %}
        {%- if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}

{#- step 2b: the level, the median seasonal deviation of the previous level_hours[kind] hours
    (log metrics; the kinds without a window get none) -#}
{% macro baseline_levels(series, metrics, period='hour_index') -%}
    {%- set windows = var('level_hours') -%}
    {%- for metric in metrics %}
        {%- set m = metric.name %}
        {%- if metric.scale == 'log' and windows and metric.center != 'trailing' %}
        case baseline_kind
            {%- for kind, hours in windows.items() %}
            {%- set frame = 'partition by ' ~ (series | join(', ')) ~ ' order by ' ~ period ~ ' range between ' ~ hours ~ ' preceding and 1 preceding' %}
            when '{{ kind }}' then case when count({{ m }}__seasonal_dev) over ({{ frame }}) >= {{ (hours / 2) | int }}
                then {{ window_center(m ~ '__seasonal_dev', frame, 'median') }} else 0 end
            {%- endfor %}
            else 0
        end as {{ m }}__level
        {%- else %}
        0 as {{ m }}__level
        {%- endif %}
        {%- if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}

{#- step 2c: the baseline (centre moved by the level) and the hour's residual from it -#}
{% macro baseline_residuals(metrics) -%}
    {%- for metric in metrics %}
        {%- set m = metric.name %}
        {%- if metric.scale == 'log' %}
        greatest(({{ m }}_seasonal + {{ baseline_unit(metric) }}) * exp({{ m }}__level) - {{ baseline_unit(metric) }}, 0) as {{ m }}_baseline,
        {{ baseline_unit(metric) }} as {{ m }}__unit,
        {%- else %}
        {{ m }}_seasonal + {{ m }}__level as {{ m }}_baseline,
        {%- endif %}
        {{ m }}__seasonal_dev - {{ m }}__level as {{ m }}__resid,
        {%- if metric.per_call_of %}
        sqrt(greatest(coalesce({{ metric.per_call_of }}, 0), 1)) as {{ m }}__weight
        {%- else %}
        1.0 as {{ m }}__weight
        {%- endif %}
        {%- if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}

{#- step 3a: the robust spread of the residuals of the previous spread_hours, learnt from the
    hours most like the scored one: how noisy an hour is depends on how many calls it holds (a
    mean over 20 night calls wobbles far more than one over 500), so the residuals come from
    hours of the same volume band (the expected calls within a factor of 4) and, once there
    are min_spread_points of those, of the same baseline kind (a fresh hour-of-week baseline
    is not judged by the wider misses of the hour-of-day one before it); with too few, from
    the band alone, then from every hour of the series. -#}
{% macro baseline_spread_scopes(series, period='hour_index') -%}
    {%- set tail = ' order by ' ~ period ~ ' range between ' ~ (var('spread_hours') + var('spread_lag_hours')) ~ ' preceding and ' ~ var('spread_lag_hours') ~ ' preceding' -%}
    {{ return([
        ('kind', 'partition by ' ~ ((series + ['volume_band', 'baseline_kind']) | join(', ')) ~ tail),
        ('band', 'partition by ' ~ ((series + ['volume_band']) | join(', ')) ~ tail),
        ('all', 'partition by ' ~ (series | join(', ')) ~ tail),
    ]) }}
{%- endmacro %}

{#- 3a: per scope, the body (1.4826 × median |residual|) and the number of residuals -#}
{% macro baseline_spread_bodies(series, metrics, period='hour_index') -%}
    {%- set scopes = baseline_spread_scopes(series, period) -%}
    {%- for metric in metrics %}
        {%- set m = metric.name %}
        {%- for scope, frame in scopes %}
        1.4826 * {{ window_center('abs(' ~ m ~ '__resid * ' ~ m ~ '__weight)', frame, 'median') }} as {{ m }}__{{ scope }}_mad,
        count({{ m }}__resid) over ({{ frame }}) as {{ m }}__{{ scope }}_points
        {%- if not (loop.last and metric == metrics[-1]) %},{% endif %}
        {%- endfor %}
    {%- endfor %}
{%- endmacro %}

{#- 3b: the first scope (kind, band, all) with min_spread_points residuals; and the residual
    capped at spread_tail_cap bodies, so one past incident cannot blunt the tail for weeks -#}
{% macro baseline_spread_choice(metrics) -%}
    {%- for metric in metrics %}
        {%- set m = metric.name %}
        case
            when {{ m }}__kind_points >= {{ var('min_spread_points') }} then 'kind'
            when {{ m }}__band_points >= {{ var('min_spread_points') }} then 'band'
            else 'all'
        end as {{ m }}__scope,
        {%- for part in ['mad', 'points'] %}
        case
            when {{ m }}__kind_points >= {{ var('min_spread_points') }} then {{ m }}__kind_{{ part }}
            when {{ m }}__band_points >= {{ var('min_spread_points') }} then {{ m }}__band_{{ part }}
            else {{ m }}__all_{{ part }}
        end as {{ m }}__spread_{{ part }}{% if not (loop.last and metric == metrics[-1]) %},{% endif %}
        {%- endfor %}
    {%- endfor %}
{%- endmacro %}

{% macro baseline_capped_residuals(metrics) -%}
    {%- for metric in metrics %}
        {%- set m = metric.name %}
        case when {{ m }}__spread_mad > 0
            then least({{ m }}__resid * {{ m }}__weight, {{ var('spread_tail_cap') }} * {{ m }}__spread_mad)
            else {{ m }}__resid * {{ m }}__weight end as {{ m }}__resid_capped{% if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}

{#- 3c: the upper tail of the capped residuals in the scope chosen for the body -#}
{% macro baseline_spread_tails(series, metrics, period='hour_index') -%}
    {%- set scopes = baseline_spread_scopes(series, period) -%}
    {%- for metric in metrics %}
        {%- set m = metric.name %}
        case {{ m }}__scope
            {%- for scope, frame in scopes %}
            when '{{ scope }}' then {{ window_quantile(m ~ '__resid_capped', frame, var('spread_tail_quantile')) }}
            {%- endfor %}
        end as {{ m }}__tail_quantile{% if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}

{#- the volume band of an hour: its expected calls within a factor of 4 -#}
{% macro volume_band(expected_calls) -%}
    cast(floor(ln(greatest(coalesce({{ expected_calls }}, 0), 0) + 1) / ln(4)) as integer)
{%- endmacro %}

{#- step 3b: the published columns <m>_baseline, <m>_stddev, <m>_z, <m>_baseline_points -#}
{% macro baseline_scores(metrics) -%}
    {%- for metric in metrics %}
        {%- set m = metric.name %}
        {%- set floor = metric.floor | replace('{b}', 'greatest(' ~ m ~ '_baseline, 0)') | replace('{n}', 'greatest(coalesce(calls_baseline, 1), 1)') %}
        {%- set tail = 'greatest(coalesce(' ~ m ~ '__tail_quantile, 0), 0) / ' ~ tail_quantile_z() %}
        {%- set spread = 'greatest(coalesce(' ~ m ~ '__spread_mad, 0) / ' ~ m ~ '__weight, ' ~ tail ~ ' / ' ~ m ~ '__weight, ' ~ floor ~ ')' %}
        cast({{ m }}_baseline as double) as {{ m }}_baseline,
        {%- if metric.scale == 'log' %}
        round(cast(({{ m }}_baseline + {{ m }}__unit) * {{ spread }} as double), 9) as {{ m }}_stddev,
        {%- else %}
        round(cast({{ spread }} as double), 9) as {{ m }}_stddev,
        {%- endif %}
        case when {{ m }}__spread_points >= {{ var('min_spread_points') }}
            then round(cast({{ m }}__resid / ({{ spread }}) as double), 6) end as {{ m }}_z,
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
    percentile({{ expression }}, 0.5) over ({{ frame }})
    {%- endif -%}
{%- endmacro %}

{% macro window_quantile(expression, frame, quantile) -%}
    {{ return(adapter.dispatch('window_quantile', 'spendwatch')(expression, frame, quantile)) }}
{%- endmacro %}

{% macro default__window_quantile(expression, frame, quantile) -%}
    quantile_cont({{ expression }}, {{ quantile }}) over ({{ frame }})
{%- endmacro %}

{% macro spark__window_quantile(expression, frame, quantile) -%}
    percentile({{ expression }}, {{ quantile }}) over ({{ frame }})
{%- endmacro %}

{#- The default kinds and metrics of the hourly marts, in one place; the vars are validated. -#}
{% macro hourly_baseline_kinds() -%}
    {%- do validate_baseline_vars() -%}
    {{ return([
        {'name': 'hour_of_week', 'key': 'hour_of_week', 'span': var('baseline_weeks') * 168, 'min_points': var('min_hour_of_week_points')},
        {'name': 'hour_of_day', 'key': 'hour_of_day', 'span': var('baseline_days') * 24, 'min_points': var('min_hour_of_day_points')},
        {'name': 'trailing', 'key': none, 'span': var('trailing_hours'), 'min_points': var('min_trailing_points')},
    ]) }}
{%- endmacro %}

{% macro hourly_baseline_metrics() -%}
    {{ return([
        {'name': 'calls', 'scale': 'log', 'unit': '1', 'floor': '1 / sqrt({b} + 1)'},
        {'name': 'total_tokens', 'scale': 'log', 'unit': '{s} / greatest(calls_seasonal, 1)', 'floor': 'greatest(0.05, 1.5 / sqrt({n}))'},
        {'name': 'cost_usd', 'scale': 'log', 'unit': '{s} / greatest(calls_seasonal, 1)', 'floor': 'greatest(0.05, 1.5 / sqrt({n}))'},
        {'name': 'cost_per_call_usd', 'scale': 'log', 'unit': '0.000000001', 'floor': 'greatest(0.03, 2 / sqrt({n}))', 'per_call_of': 'priced_calls', 'center': 'trailing'},
        {'name': 'cache_hit_rate', 'scale': 'linear', 'floor': 'greatest(0.02, sqrt({b} * (1 - {b}) / {n}))', 'per_call_of': 'calls', 'center': 'trailing'},
        {'name': 'retry_rate', 'scale': 'linear', 'floor': 'greatest(0.02, sqrt({b} * (1 - {b}) / {n}))', 'per_call_of': 'calls', 'center': 'trailing'},
    ]) }}
{%- endmacro %}

{#- How far back each stage of an hourly series mart needs rows so that every hour of the
    window is scored exactly as a build of all history scores it (hours before the window's
    first hour). Walking back from a scored hour: its spread tail reads the capped residuals of
    the previous spread_hours + spread_lag_hours (T); each of those is capped by its own spread
    body, which reads T more; each residual needs its level (the longest level window, Lv) of
    seasonal deviations, each deviation its centre (the longest kind span, S), and whether a
    row exists at all depends on the week of activity before it. The bodies stage also takes
    the scored hour's typical daily cost over the 168 hours before it.
      spreads (tails): T | bodies: B = max(2T, 168) | levels: B + Lv | centres: B + Lv + S |
      activity (the grid, and the history read): B + Lv + S + 168
    With the defaults: 360, 720, 888, 1560 and 1728 hours (72 days). -#}
{% macro hourly_stage_lookbacks() -%}
    {%- set tail = var('spread_hours') + var('spread_lag_hours') -%}
    {%- set level = (var('level_hours').values() | list + [0]) | max -%}
    {%- set span = [var('baseline_weeks') * 168, var('baseline_days') * 24, var('trailing_hours')] | max -%}
    {{ return({
        'tails': tail,
        'bodies': [2 * tail, 168] | max,
        'levels': [2 * tail, 168] | max + level,
        'centres': [2 * tail, 168] | max + level + span,
        'activity': [2 * tail, 168] | max + level + span + 168,
    }) }}
{%- endmacro %}

{#- How far back an hourly run reads (the hourly sums its scores need) -#}
{% macro hourly_lookback_hours() -%}
    {{ return(hourly_stage_lookbacks()['activity']) }}
{%- endmacro %}

{#- Invalid baseline configuration fails at compile time with the allowed values, instead of
    silently turning every series into warming_up. -#}
{% macro validate_baseline_vars() -%}
    {%- set kinds = ['hour_of_week', 'hour_of_day', 'trailing'] -%}
    {%- set forced = var('force_baseline_kind') -%}
    {%- if forced and forced not in kinds -%}
        {{ exceptions.raise_compiler_error("var force_baseline_kind = '" ~ forced ~ "' is not a baseline kind; use one of " ~ kinds | join(', ') ~ " (or null)") }}
    {%- endif -%}
    {%- if var('baseline_center') not in ['median', 'mean'] -%}
        {{ exceptions.raise_compiler_error("var baseline_center = '" ~ var('baseline_center') ~ "' is not allowed; use median or mean") }}
    {%- endif -%}
    {%- for kind in var('alerting_baseline_kinds') -%}
        {%- if kind not in kinds -%}
            {{ exceptions.raise_compiler_error("var alerting_baseline_kinds names '" ~ kind ~ "'; allowed: " ~ kinds | join(', ')) }}
        {%- endif -%}
    {%- endfor -%}
    {%- for kind, hours in var('level_hours').items() -%}
        {%- if kind not in kinds or hours is not number or hours < 2 -%}
            {{ exceptions.raise_compiler_error("var level_hours maps '" ~ kind ~ "' to " ~ hours ~ "; use baseline kinds (" ~ kinds | join(', ') ~ ") mapped to a number of hours >= 2") }}
        {%- endif -%}
    {%- endfor -%}
    {%- if var('spread_tail_cap') is not number or var('spread_tail_cap') < 0 -%}
        {{ exceptions.raise_compiler_error("var spread_tail_cap must be a number >= 0 (0: no tail term), got " ~ var('spread_tail_cap')) }}
    {%- endif -%}
    {%- for name in ['baseline_weeks', 'baseline_days', 'trailing_hours', 'spread_hours', 'spread_lag_hours', 'min_spread_points'] -%}
        {%- if var(name) is not number or var(name) < 1 -%}
            {{ exceptions.raise_compiler_error("var " ~ name ~ " must be a positive number, got " ~ var(name)) }}
        {%- endif -%}
    {%- endfor -%}
    {%- do tail_quantile_z() -%}
{%- endmacro %}

{#- the one-sided normal quantile of var spread_tail_quantile: the residual of a normal series
    exceeds its q-quantile as often as a z of this size -#}
{% macro tail_quantile_z() -%}
    {%- set table = {0.9: 1.282, 0.95: 1.645, 0.98: 2.054, 0.99: 2.326, 0.995: 2.576} -%}
    {%- set q = var('spread_tail_quantile') -%}
    {%- if q not in table -%}
        {{ exceptions.raise_compiler_error("var spread_tail_quantile = " ~ q ~ " is not allowed; use one of " ~ table.keys() | list | join(', ')) }}
    {%- endif -%}
    {{ return(table[q]) }}
{%- endmacro %}
