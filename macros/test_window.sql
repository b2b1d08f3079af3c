{#- dbt's data tests on an incremental table check the hours the run built, not the whole table:
    a test of an hourly run then costs the same with a week of history or a year, like the
    models it tests (Elementary scopes its tests to the time window the same way). Tests run
    without a window (a plain `dbt build`, `dbt test`) check everything. A duplicate across two
    windows is not caught here: event ids are kept unique at load (the ingest), and
    `dbt test` checks the whole table when wanted.

    Overrides dbt's `default__get_where_subquery` (the root project's macros come first in the
    `dbt` namespace); the test's own `where` config still applies. -#}
{% macro default__get_where_subquery(relation) -%}
    {%- set clauses = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}{%- do clauses.append(where) -%}{%- endif -%}
    {%- set window = tested_window_filter(relation) -%}
    {%- if window -%}{%- do clauses.append(window) -%}{%- endif -%}
    {%- if clauses -%}
        {%- set filtered -%}
            (select * from {{ relation }} where ({{ clauses | join(') and (') }})) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{#- The run's window on the tested relation when it is an incremental model of this project
    (hour_at, or day_at for meta.window_grain = day), or a view with an hour_at column (the
    calls: the filter reaches the calls under it, so a not_null test on int_llm_calls_priced
    prices the window's calls, not all of them); '' otherwise or without a window. -#}
{% macro tested_window_filter(relation) -%}
    {%- if not (execute and run_start_hour() and run_end_hour()) -%}{{ return('') }}{%- endif -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model' and node.package_name == project_name
              and node.config.materialized == 'incremental'
              and (node.alias or node.name) | lower == (relation.identifier or '') | lower
              and node.schema | lower == (relation.schema or '') | lower -%}
            {%- if (node.config.meta or {}).get('window_grain') == 'day' -%}
                {{ return(day_window_filter('day_at')) }}
            {%- else -%}
                {{ return(hour_window_filter('hour_at')) }}
            {%- endif -%}
        {%- elif node.resource_type == 'model' and node.package_name == project_name
              and node.config.materialized == 'view'
              and (node.alias or node.name) | lower == (relation.identifier or '') | lower
              and node.schema | lower == (relation.schema or '') | lower -%}
            {%- set columns = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
            {%- if 'hour_at' in columns -%}{{ return(hour_window_filter('hour_at')) }}{%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return('') }}
{%- endmacro %}
