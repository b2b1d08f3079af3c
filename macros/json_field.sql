{#- The text of one top-level key of a JSON object held as text (the calls' `tags`), null when
    absent: DuckDB's json_extract_string, Spark's get_json_object. -#}
{% macro json_text_field(column, key) -%}
    {{ return(adapter.dispatch('json_text_field', 'spendwatch')(column, key)) }}
{%- endmacro %}

{% macro default__json_text_field(column, key) -%}
    json_extract_string({{ column }}, '$.{{ key }}')
{%- endmacro %}

{% macro spark__json_text_field(column, key) -%}
    get_json_object({{ column }}, '$.{{ key }}')
{%- endmacro %}
