{#- CTEs resolving model names to the warehouse's canonical model, written once for the calls
    (int_llm_calls_priced) and the provider reports (cost_reconciliation): `names` is a CTE of
    distinct (provider, model), `aliases` one of stg_seeds__model_aliases. A declared exact
    alias wins, then the name itself when it has price rows ('own'), then the longest declared
    prefix. Ends with the CTE `resolved_models` (provider, model, canonical_model — null when
    nothing matches — and own_model, the name itself when it has price rows). -#}
{% macro resolved_model_names(names, aliases) -%}
candidates as (
    select
        {{ names }}.provider,
        {{ names }}.model,
        {{ aliases }}.model as resolved_model,
        {{ aliases }}.match_type,
        case {{ aliases }}.match_type when 'exact' then 3 when 'own' then 2 else 1 end as match_rank,
        length({{ aliases }}.alias) as alias_length
    from {{ names }}
    inner join {{ aliases }}
        on {{ aliases }}.provider = {{ names }}.provider
        and (
            (
                {{ aliases }}.match_type in ('own', 'exact')
                and lower({{ aliases }}.alias) = lower({{ names }}.model)
            )
            or (
                {{ aliases }}.match_type = 'prefix'
                and lower(substr({{ names }}.model, 1, length({{ aliases }}.alias))) = lower({{ aliases }}.alias)
            )
        )
),

ranked_candidates as (
    select
        *,
        row_number() over (
            partition by provider, model
            order by match_rank desc, alias_length desc, resolved_model
        ) as candidate_rank
    from candidates
),

resolved_models as (
    select
        provider,
        model,
        max(case when candidate_rank = 1 then resolved_model end) as canonical_model,
        max(case when match_type = 'own' then resolved_model end) as own_model
    from ranked_candidates
    group by provider, model
)
{%- endmacro %}
