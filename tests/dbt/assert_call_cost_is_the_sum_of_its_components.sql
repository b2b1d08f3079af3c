-- Every priced call's cost is exactly the sum of its four components (uncached input, cache
-- reads, cache writes, output), and an unpriced call has no cost at all (never a silent $0).
-- Checks the run's window only, so an hourly run does not re-read all history. Returns the
-- calls that break it.
select event_id, hour_at, is_priced, input_cost_usd, cache_read_cost_usd, cache_write_cost_usd,
    output_cost_usd, cost_usd
from {{ ref('fct_llm_calls') }}
where {{ hour_window_filter('hour_at') }}
    and (
        (is_priced and (
            cost_usd is null
            or cost_usd <> input_cost_usd + cache_read_cost_usd + cache_write_cost_usd
                + output_cost_usd
        ))
        or (not is_priced and cost_usd is not null)
    )
