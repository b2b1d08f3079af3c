{#- Generic test: no two rows share the given columns (the grain of a mart). Written here
    because dbt deps cannot reach the package hub for dbt_utils. -#}
{% test unique_combination(model, columns) %}
    select {{ columns | join(', ') }}, count(*) as rows_with_key
    from {{ model }}
    group by {{ columns | join(', ') }}
    having count(*) > 1
{% endtest %}
