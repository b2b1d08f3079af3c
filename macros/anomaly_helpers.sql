{#- Shared pieces of the detector models (models/intermediate/anomalies/). -#}

{#- thresholds of one detector: `thresholds` (the default row) and, per feature, its override -#}
{% macro detector_thresholds(detector) -%}
default_thresholds as (
    select * from {{ ref('alert_thresholds') }}
    where detector = '{{ detector }}' and feature = '*'
),

feature_thresholds as (
    select * from {{ ref('alert_thresholds') }}
    where detector = '{{ detector }}' and feature <> '*'
)
{%- endmacro %}

{#- every threshold column of the seed -#}
{% macro threshold_names() -%}
    {{ return(['warning_threshold', 'critical_threshold', 'min_calls', 'min_z', 'min_cost_usd',
               'min_excess_usd', 'min_excess_share', 'critical_min_excess_share',
               'warning_confirm_hours', 'max_silent_share', 'min_history_hours']) }}
{%- endmacro %}

{#- CTE `thresholded`: the hours of agg_hourly_feature_cost (the series the feature detectors
    watch) with hour_index and every threshold of `detector` resolved as a column (a feature's
    row over the default, column by column). `omit`: threshold columns the detector defines
    itself. -#}
{% macro feature_hours_with_thresholds(detector, omit=[]) -%}
{{ detector_thresholds(detector) }},

thresholded as (
    select
        hourly.*,
        {{ hour_index('hourly.hour_at') }} as hour_index,
        {{ threshold_columns(threshold_names() | reject('in', omit) | list) }}
    from {{ ref('agg_hourly_feature_cost') }} as hourly
    {{ join_thresholds('hourly.feature') }}
)
{%- endmacro %}

{#- join both onto a relation with a feature column; then threshold('min_calls') etc. -#}
{% macro join_thresholds(feature_column) -%}
    cross join default_thresholds
    left join feature_thresholds on feature_thresholds.feature = {{ feature_column }}
{%- endmacro %}

{% macro threshold(column) -%}
    coalesce(feature_thresholds.{{ column }}, default_thresholds.{{ column }})
{%- endmacro %}

{#- the resolved thresholds as columns: threshold_columns(['warning_threshold', 'min_calls']) -#}
{% macro threshold_columns(columns) -%}
    {%- for column in columns %}
        {{ threshold(column) }} as {{ column }}{% if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}

{#- Money at stake: the hour's estimated excess cost reaches both floors of the detector's
    threshold row, `min_excess_usd` (USD per hour) and `min_excess_share` of what the series
    usually spends in a day. An empty floor (or an unknown excess) does not hold a finding back. -#}
{% macro is_material(excess) -%}
    (coalesce({{ excess }} >= min_excess_usd, true)
        and coalesce({{ excess }} >= min_excess_share * typical_daily_cost_usd, true))
{%- endmacro %}

{#- A page needs money on the scale of the series' day: the hour's excess reaches
    `critical_min_excess_share` of its usual daily spend (an empty floor holds nothing back).
    A critical ratio below it is reported as a warning. -#}
{% macro is_critical_material(excess) -%}
    coalesce({{ excess }} >= critical_min_excess_share * typical_daily_cost_usd, true)
{%- endmacro %}

{#- A warning waits for a second hour of evidence (threshold column warning_confirm_hours = 2):
    this is the strongest `expression` among the hours of the two before the scored one that
    were candidates too (null when neither was), so one quiet hour inside an incident does not
    reset it. Needs an `hour_index` column; rows are (hour, series). -#}
{% macro previous_candidate(expression, candidate, series=['feature', 'environment']) -%}
    max(case when {{ candidate }} then {{ expression }} end) over (
        partition by {{ series | join(', ') }} order by hour_index
        range between 2 preceding and 1 preceding
    )
{%- endmacro %}

{#- Evidence of a z-scored finding: a critical needs z >= min_z in its own hour; a warning
    needs it too when warning_confirm_hours <= 1, else two candidate hours whose combined
    evidence (z + z_before) / sqrt(2) reaches min_z. -#}
{% macro has_evidence(z, z_before) -%}
    ({{ z }} >= min_z
        and coalesce(warning_confirm_hours, 1) <= 1
        or ({{ z }} + {{ z_before }}) / sqrt(2) >= min_z)
{%- endmacro %}

{#- Rows whose baseline may raise an alert. A trailing baseline is computed and shown in the
    marts, but it cannot tell a morning ramp or a Monday from a spike, so by default only the
    seasonal kinds alert (var alerting_baseline_kinds). -#}
{% macro alerting_baseline() -%}
    baseline_kind in ({% for kind in var('alerting_baseline_kinds') %}'{{ kind }}'{% if not loop.last %}, {% endif %}{% endfor %})
{%- endmacro %}

{#- How far back marts.anomalies reads the detectors to group hours into incidents (an
    incident that started this long before the run's window keeps its key) -#}
{% macro incident_lookback_hours() -%}
    {{ return(168) }}
{%- endmacro %}

{#- 9412 → '9,412' -#}
{% macro format_count(expression) -%}
    {{ return(adapter.dispatch('format_count', 'spendwatch')(expression)) }}
{%- endmacro %}

{% macro default__format_count(expression) -%}
    format('{:,}', cast(round({{ expression }}) as bigint))
{%- endmacro %}

{% macro spark__format_count(expression) -%}
    format_number(cast(round({{ expression }}) as bigint), 0)
{%- endmacro %}

{#- 1234.5 → '$1,234.50'; small amounts keep 4 decimals -#}
{% macro format_usd(expression) -%}
    {{ return(adapter.dispatch('format_usd', 'spendwatch')(expression)) }}
{%- endmacro %}

{% macro default__format_usd(expression) -%}
    case when abs({{ expression }}) >= 1 then format('${:,.2f}', cast({{ expression }} as double))
         else format('${:.4f}', cast({{ expression }} as double)) end
{%- endmacro %}

{% macro spark__format_usd(expression) -%}
    concat('$', format_number(cast({{ expression }} as double), case when abs({{ expression }}) >= 1 then 2 else 4 end))
{%- endmacro %}

{% macro format_decimal(expression, digits=1) -%}
    {{ return(adapter.dispatch('format_decimal', 'spendwatch')(expression, digits)) }}
{%- endmacro %}

{% macro default__format_decimal(expression, digits) -%}
    format('{:.{{ digits }}f}', cast({{ expression }} as double))
{%- endmacro %}

{% macro spark__format_decimal(expression, digits) -%}
    format_string('%.{{ digits }}f', cast({{ expression }} as double))
{%- endmacro %}

{#- '14:00' and 'Friday 14:00' -#}
{% macro hour_label(column) -%}
    {{ return(adapter.dispatch('hour_label', 'spendwatch')(column)) }}
{%- endmacro %}

{% macro default__hour_label(column) -%}
    strftime({{ column }}, '%H:00')
{%- endmacro %}

{% macro spark__hour_label(column) -%}
    date_format({{ column }}, 'HH:00')
{%- endmacro %}

{% macro day_name(column) -%}
    {{ return(adapter.dispatch('day_name', 'spendwatch')(column)) }}
{%- endmacro %}

{% macro default__day_name(column) -%}
    dayname({{ column }})
{%- endmacro %}

{% macro spark__day_name(column) -%}
    date_format({{ column }}, 'EEEE')
{%- endmacro %}

{#- "for a Friday 14:00" / "for 14:00" / "over the last 24 hours": what the baseline is -#}
{% macro baseline_phrase(kind_column, hour_column) -%}
    case {{ kind_column }}
        when 'hour_of_week' then 'for a ' || {{ day_name(hour_column) }} || ' ' || {{ hour_label(hour_column) }}
        when 'hour_of_day' then 'for ' || {{ hour_label(hour_column) }}
        else 'over the previous hours'
    end
{%- endmacro %}

{#- a stable id from parts (md5 of the parts joined by '|', nulls as '') -#}
{% macro stable_id(parts) -%}
    md5({% for part in parts %}coalesce(cast({{ part }} as string), ''){% if not loop.last %} || '|' || {% endif %}{% endfor %})
{%- endmacro %}

{#- metric, observed_value, baseline_value, stddev_value, z_score of an anomaly row, for a
    metric scored in the hourly marts (its `<m>_baseline`, `<m>_stddev`, `<m>_z` columns) -#}
{% macro baselined_metric(metric) -%}
        '{{ metric }}' as metric,
        cast({{ metric }} as double) as observed_value,
        {{ metric }}_baseline as baseline_value,
        {{ metric }}_stddev as stddev_value,
        {{ metric }}_z as z_score
{%- endmacro %}

{#- The columns every detector model returns, in order -#}
{% macro detector_columns() -%}
    {{ return(['hour_at', 'detector', 'severity', 'feature', 'environment', 'model', 'team_id',
               'metric', 'observed_value', 'baseline_value', 'stddev_value', 'z_score',
               'ratio_to_baseline', 'estimated_excess_cost_usd', 'message']) }}
{%- endmacro %}

{#- ... and of a marts.anomalies row after its ids (the runbook comes from the detectors seed) -#}
{% macro anomaly_columns() -%}
    {{ return(detector_columns() + ['runbook']) }}
{%- endmacro %}
