-- Imported provider cost and usage report rows (raw.provider_costs, written by
-- `spendwatch reconcile import`), typed. Ephemeral on purpose: the table exists only once a
-- report was imported (and never on the Spark target, where the import does not write), so the
-- check for it must happen each time the reconciliation mart is built, not once when a view
-- is created; without the table this reads as empty, with the same columns.
{{ config(materialized='ephemeral') }}
{%- set relation = source('provider_reports', 'provider_costs') %}
{%- set found = adapter.get_relation(relation.database, relation.schema, relation.identifier) if execute else none %}
{%- set columns = [
    ('source_file', 'string'), ('file_sha256', 'string'), ('report_shape', 'string'),
    ('report_kind', 'string'), ('provider', 'string'), ('result_index', 'int'),
    ('day_at', 'timestamp'), ('provider_model', 'string'), ('token_kind', 'string'),
    ('line_item', 'string'), ('amount_usd', 'decimal(38, 15)'), ('tokens', 'bigint'),
    ('imported_at', 'timestamp')] %}
with renamed as (
    select
        {%- for name, type in columns %}
        cast({{ name if found is not none else 'null' }} as {{ type }}) as {{ name }},
        {%- endfor %}
        {{ 'result_index is null' if found is not none else 'false' }} as is_empty_bucket
    {%- if found is not none %}
    from {{ relation }}
    {%- else %}
    from (select 1 as no_report) as nothing
    where 1 = 0
    {%- endif %}
)

select * from renamed
