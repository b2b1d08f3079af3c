{#- Hours and series: every (series, hour) where the series had at least one call in the
    previous week (the hour included) gets a row, with zeros when it was silent. A silent hour
    is then a measured zero — what volume baselines and the telemetry-gap detector need — and
    whether a row exists depends only on the data before it, never on the run's window. -#}

{% macro hour_series(start_expression, end_expression) -%}
    {{ return(adapter.dispatch('hour_series', 'spendwatch')(start_expression, end_expression)) }}
{%- endmacro %}

{% macro default__hour_series(start_expression, end_expression) -%}
    select unnest(generate_series({{ start_expression }}, {{ end_expression }}, interval 1 hour)) as hour_at
{%- endmacro %}

{% macro spark__hour_series(start_expression, end_expression) -%}
    select explode(sequence({{ start_expression }}, {{ end_expression }}, interval 1 hour)) as hour_at
{%- endmacro %}

{#- hours since the epoch: an integer period index for range frames on any engine -#}
{% macro hour_index(column) -%}
    {{ return(adapter.dispatch('hour_index', 'spendwatch')(column)) }}
{%- endmacro %}

{% macro default__hour_index(column) -%}
    cast(floor(epoch({{ column }}) / 3600) as bigint)
{%- endmacro %}

{% macro spark__hour_index(column) -%}
    cast(floor(unix_timestamp({{ column }}) / 3600) as bigint)
{%- endmacro %}

{#- 0 = Monday .. 6 = Sunday -#}
{% macro day_of_week(column) -%}
    {{ return(adapter.dispatch('day_of_week', 'spendwatch')(column)) }}
{%- endmacro %}

{% macro default__day_of_week(column) -%}
    cast(isodow({{ column }}) - 1 as integer)
{%- endmacro %}

{% macro spark__day_of_week(column) -%}
    cast(weekday({{ column }}) as integer)
{%- endmacro %}

{#- the run's window widened backwards by `lookback_hours` (all of time without vars) -#}
{% macro lookback_window_filter(column, lookback_hours) -%}
    {%- set start_hour = run_start_hour() -%}
    {%- set end_hour = run_end_hour() -%}
    {%- if start_hour and end_hour -%}
        {{ column }} >= cast('{{ start_hour }}' as timestamp) - interval {{ lookback_hours }} hour and {{ column }} < cast('{{ end_hour }}' as timestamp)
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{#- The `lookback_hours` before the run's window, the window itself left out (nothing without
    window vars) -#}
{% macro history_window_filter(column, lookback_hours) -%}
    {%- set start_hour = run_start_hour() -%}
    {%- set end_hour = run_end_hour() -%}
    {%- if start_hour and end_hour -%}
        {{ column }} >= cast('{{ start_hour }}' as timestamp) - interval {{ lookback_hours }} hour and {{ column }} < cast('{{ start_hour }}' as timestamp)
    {%- else -%}
        1 = 0
    {%- endif -%}
{%- endmacro %}

{#- From the start of the month of the run's window widened backwards by `lookback_hours`
    (month-to-date figures need the whole month; all of time without vars) -#}
{% macro month_window_filter(column, lookback_hours) -%}
    {%- set start_hour = run_start_hour() -%}
    {%- set end_hour = run_end_hour() -%}
    {%- if start_hour and end_hour -%}
        {{ column }} >= date_trunc('month', cast('{{ start_hour }}' as timestamp) - interval {{ lookback_hours }} hour) and {{ column }} < cast('{{ end_hour }}' as timestamp)
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{#- The last hour a run covers: the window's last hour, or the newest hour in `relation`. -#}
{% macro window_last_hour(relation, column) -%}
    {%- set end_hour = run_end_hour() -%}
    {%- if end_hour -%}
        cast('{{ end_hour }}' as timestamp) - interval 1 hour
    {%- else -%}
        (select max({{ column }}) from {{ relation }})
    {%- endif -%}
{%- endmacro %}

{% macro hours_between(start_column, end_column) -%}
    {{ return(adapter.dispatch('hours_between', 'spendwatch')(start_column, end_column)) }}
{%- endmacro %}

{% macro default__hours_between(start_column, end_column) -%}
    cast(date_diff('hour', {{ start_column }}, {{ end_column }}) as bigint)
{%- endmacro %}

{% macro spark__hours_between(start_column, end_column) -%}
    cast((unix_timestamp({{ end_column }}) - unix_timestamp({{ start_column }})) / 3600 as bigint)
{%- endmacro %}

{% macro month_end(month_start_column) -%}
    {{ return(adapter.dispatch('month_end', 'spendwatch')(month_start_column)) }}
{%- endmacro %}

{% macro default__month_end(month_start_column) -%}
    ({{ month_start_column }} + interval 1 month)
{%- endmacro %}

{% macro spark__month_end(month_start_column) -%}
    add_months({{ month_start_column }}, 1)
{%- endmacro %}
