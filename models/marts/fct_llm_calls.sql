-- One row per priced LLM call (int_llm_calls_priced has the rules), for the run's window.
with priced as (
    select * from {{ ref('int_llm_calls_priced') }}
    where {{ hour_window_filter('hour_at') }}
)

select * from priced
