{#- Schemas are the layer names of DESIGN.md (raw, staging, intermediate, marts), not
    `<target schema>_<custom>` as dbt does by default. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
