{#- The hour window a run builds (UTC, end exclusive): the vars `start_hour` / `end_hour` when
    given (`dbt build --vars ...` by hand), else the environment variables
    SPENDWATCH_WINDOW_START / SPENDWATCH_WINDOW_END, which the Dagster assets set. Not vars
    there: dbt re-parses the whole project whenever its vars change (~5 s of CPU on 2 cores,
    every hourly invocation). The env vars are read only when dbt executes (`execute`), never
    while it parses, so partial parsing does not track them and a new window re-parses
    nothing. Without either the window is all of time. -#}

{% macro run_start_hour() -%}
    {{ return(var('start_hour', none) or (env_var('SPENDWATCH_WINDOW_START', '') if execute else '') or none) }}
{%- endmacro %}

{% macro run_end_hour() -%}
    {{ return(var('end_hour', none) or (env_var('SPENDWATCH_WINDOW_END', '') if execute else '') or none) }}
{%- endmacro %}

{% macro hour_window_filter(column) -%}
    {%- set start_hour = run_start_hour() -%}
    {%- set end_hour = run_end_hour() -%}
    {%- if start_hour and end_hour -%}
        {{ column }} >= cast('{{ start_hour }}' as timestamp) and {{ column }} < cast('{{ end_hour }}' as timestamp)
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{#- The days a run's window touches, whole: a daily mart re-aggregates each of them from
    every hour of that day already loaded, so an hourly run refreshes today's row and a
    backfill gives the same rows. `column` is an hour (hour_at) or a day (day_at). -#}
{% macro day_window_filter(column) -%}
    {%- set start_hour = run_start_hour() -%}
    {%- set end_hour = run_end_hour() -%}
    {%- if start_hour and end_hour -%}
        {{ column }} >= date_trunc('day', cast('{{ start_hour }}' as timestamp))
        and {{ column }} < date_trunc('day', cast('{{ end_hour }}' as timestamp) - interval 1 hour) + interval 1 day
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{#- pre-hook of every mart (dbt_project.yml): delete the window about to be re-inserted, so
    re-running it replaces it (rows that vanished from the source vanish here too). Hourly
    marts delete their hours (hour_at); a mart with meta.window_grain = day deletes the days
    the window touches (day_at). -#}
{% macro delete_run_window() -%}
    {%- if is_incremental() -%}
        {{ return(adapter.dispatch('delete_run_window', 'spendwatch')(window_column())) }}
    {%- else -%}
        {{ return('select 1') }}
    {%- endif -%}
{%- endmacro %}

{%- macro window_column() -%}
    {{ return('day_at' if (model.config.meta or {}).get('window_grain') == 'day' else 'hour_at') }}
{%- endmacro %}

{% macro default__delete_run_window(column) -%}
    {%- if column == 'day_at' -%}
    delete from {{ this }} where {{ day_window_filter('day_at') }}
    {%- else -%}
    delete from {{ this }} where {{ hour_window_filter('hour_at') }}
    {%- endif -%}
{%- endmacro %}

{#- Spark: a Parquet table has no DELETE. Marts are partitioned by their window column there
    (dbt_project.yml: partition_by), so the window's partitions are dropped — every hour (or
    day) of the window, whether it holds rows or not — and the model's rows are appended: the
    same replace as DuckDB's delete + insert. Without a window the whole table is emptied. -#}
{% macro spark__delete_run_window(column) -%}
    {%- set start_hour = run_start_hour() -%}
    {%- set end_hour = run_end_hour() -%}
    {%- if not (start_hour and end_hour) -%}
        {{ return('truncate table ' ~ this) }}
    {%- endif -%}
    {%- set fmt = '%Y-%m-%d %H:%M:%S' -%}
    {%- set lo = modules.datetime.datetime.strptime(start_hour[:19] | replace('T', ' '), fmt) -%}
    {%- set hi = modules.datetime.datetime.strptime(end_hour[:19] | replace('T', ' '), fmt) -%}
    {%- if column == 'day_at' -%}
        {%- set step = modules.datetime.timedelta(days=1) -%}
        {%- set lo = lo.replace(hour=0, minute=0, second=0) -%}
        {%- set hi = (hi - modules.datetime.timedelta(hours=1)).replace(hour=0, minute=0, second=0) + step -%}
    {%- else -%}
        {%- set step = modules.datetime.timedelta(hours=1) -%}
    {%- endif -%}
    {%- set partitions = [] -%}
    {%- set count = ((hi - lo).total_seconds() // step.total_seconds()) | int -%}
    {%- for i in range(count) -%}
        {%- do partitions.append("partition (" ~ column ~ " = timestamp'" ~ (lo + step * i).strftime(fmt) ~ "')") -%}
    {%- endfor -%}
    {%- if partitions -%}
    alter table {{ this }} drop if exists {{ partitions | join(', ') }}
    {%- else -%}
    select 1
    {%- endif -%}
{%- endmacro %}
