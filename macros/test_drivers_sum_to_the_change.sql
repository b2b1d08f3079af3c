{#- Generic test of agg_hourly_feature_cost_drivers: the seven effects of every row add up to its
    cost change to the cent (LMDI is exact; this catches a term the SQL lost). -#}
{% test drivers_sum_to_the_change(model) %}
    select *
    from {{ model }}
    where abs(
        {% for driver in cost_driver_names() %}{{ driver }}_usd{{ ' + ' if not loop.last }}{% endfor %}
        - cast(cost_change_usd as double)
    ) >= 0.005
{% endtest %}
