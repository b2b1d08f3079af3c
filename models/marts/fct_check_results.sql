-- One row per data-quality expectation and hour checked (Great Expectations suites in
-- expectations/, run by the pipeline), for the hours of the window. The data_quality detector
-- reads the failed error-level rows; analysts see every outcome.
with results as (
    select * from {{ ref('stg_ops__check_results') }}
    where {{ hour_window_filter('hour_at') }}
)

select * from results
