-- The detectors seed, the detector models (intermediate/anomalies/int_anomalies__<detector>) and
-- the models marts.anomalies unions are one set: a detector added in one place and not the
-- others returns a row naming where it is missing.
{%- set prefix = 'int_anomalies__' -%}
{%- set models = [] -%}
{%- set unioned = [] -%}
{%- if execute -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model' and node.name.startswith(prefix) -%}
            {%- do models.append(node.name[prefix | length:]) -%}
        {%- endif -%}
        {%- if node.resource_type == 'model' and node.name == 'anomalies' -%}
            {%- for parent in node.depends_on.nodes -%}
                {%- set name = parent.split('.')[-1] -%}
                {%- if name.startswith(prefix) -%}
                    {%- do unioned.append(name[prefix | length:]) -%}
                {%- endif -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endfor -%}
{%- endif %}
with seeded as (
    select detector from {{ ref('detectors') }}
),

{%- for name, items in [('modelled', models), ('unioned', unioned)] %}

{{ name }} as (
    {%- if items %}
    {%- for item in items | sort %}
    select '{{ item }}' as detector{% if not loop.last %} union all{% endif %}
    {%- endfor %}
    {%- else %}
    select cast(null as string) as detector where 1 = 0
    {%- endif %}
),
{%- endfor %}

everything as (
    select detector from seeded
    union
    select detector from modelled
    union
    select detector from unioned
),

final as (
    select
        everything.detector,
        seeded.detector is not null as in_seed,
        modelled.detector is not null as has_model,
        unioned.detector is not null as in_anomalies
    from everything
    left join seeded on seeded.detector = everything.detector
    left join modelled on modelled.detector = everything.detector
    left join unioned on unioned.detector = everything.detector
)

select * from final
where not (in_seed and has_model and in_anomalies)
