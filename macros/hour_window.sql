{#- The hour window a run builds, from the vars Dagster passes (`start_hour`, `end_hour`,
    UTC, end exclusive). Without them the window is all of time. -#}

{% macro hour_window_filter(column) -%}
    {%- set start_hour = var('start_hour', none) -%}
    {%- set end_hour = var('end_hour', none) -%}
    {%- if start_hour and end_hour -%}
        {{ column }} >= cast('{{ start_hour }}' as timestamp) and {{ column }} < cast('{{ end_hour }}' as timestamp)
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{#- pre_hook of the hourly incremental models: delete the window about to be re-inserted, so
    re-running an hour replaces it (rows that vanished from the source vanish here too). -#}
{% macro delete_hour_window(column='hour_at') -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ hour_window_filter(column) }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
