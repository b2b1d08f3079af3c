-- Every detector's findings in one shape, one row per (hour, detector, metric, dimension).
-- anomaly_id is the same for the same hour, detector and dimension, so re-running never
-- duplicates; the hours of one finding share an incident_key (detector + dimension + first
-- hour; detectors whose incident_period is month, budgets, by month) as long as no more than
-- one quiet hour separates them, so alerting can group them. A cost spike that a detector
-- which explains cost spikes already found (same feature and hour) is left out. What is
-- known of each detector (runbook, incident period, whether it explains a cost spike) is the
-- `detectors` seed; the singular test assert_detectors_seed_matches_models keeps the seed,
-- the detector models and this union the same set.
{%- set detectors = ['volume_spike', 'cost_per_call', 'cost_spike', 'cache_efficiency',
                     'model_drift', 'retry_storm', 'budget_burn', 'telemetry_gap',
                     'data_quality',
                     'invoice_drift'] %}
{%- set dimension = ['detector', 'metric', 'feature', 'environment', 'model', 'team_id'] %}
with detected as (
    {%- for detector in detectors %}
    select {{ detector_columns() | join(', ') }}
    from {{ ref('int_anomalies__' ~ detector) }}
    where {{ lookback_window_filter('hour_at', incident_lookback_hours()) }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

detectors as (
    select * from {{ ref('detectors') }}
),

-- the explained cost spikes: one read of `detected` with a window, not a self-join (Spark
-- inlines each reference to a CTE; reading the ten detectors' union twice doubled its plan)
flagged as (
    select
        detected.*,
        case when detected.feature is not null and detected.environment is not null then
            max(case when detectors.explains_cost_spike then 1 else 0 end) over (
                partition by detected.hour_at, detected.feature, detected.environment
            )
        end as explained
    from detected
    inner join detectors on detectors.detector = detected.detector
),

kept as (
    select {{ detector_columns() | join(', ') }}
    from flagged
    where not (detector = 'cost_spike' and coalesce(explained, 0) = 1)
),

ordered as (
    select
        *,
        lag(hour_at) over (
            partition by {{ dimension | join(', ') }} order by hour_at
        ) as previous_hour_at
    from kept
),

islands as (
    -- a new incident starts after more than one quiet hour: one quiet hour inside an incident
    -- (a dip below the threshold) does not split it
    select
        *,
        sum(case when previous_hour_at is null
                or {{ hours_between('previous_hour_at', 'hour_at') }} > 2 then 1 else 0 end) over (
            partition by {{ dimension | join(', ') }} order by hour_at
            rows between unbounded preceding and current row
        ) as island
    from ordered
),

incidents as (
    select
        islands.*,
        case
            when detectors.incident_period = 'month' then date_trunc('month', islands.hour_at)
            else min(islands.hour_at) over (
                partition by {% for column in dimension %}islands.{{ column }}, {% endfor %}islands.island
            )
        end as incident_started_at,
        detectors.runbook
    from islands
    inner join detectors on detectors.detector = islands.detector
),

final as (
    select
        {{ stable_id(dimension + ['hour_at']) }} as anomaly_id,
        {{ stable_id(dimension + ['incident_started_at']) }} as incident_key,
        incident_started_at,
        {{ anomaly_columns() | join(',\n        ') }}
    from incidents
    where {{ hour_window_filter('hour_at') }}
),

cost_drivers as (
    select * from {{ ref('agg_hourly_feature_cost_drivers') }}
    where {{ hour_window_filter('hour_at') }}
),

-- A finding with money at stake on a feature's hour carries that hour's cost drivers
-- (agg_hourly_feature_cost_drivers): the biggest, all of them, and the explanation appended to
-- its message. Also when the hour's total fell: "$0.24 of -$0.03: model mix → claude-3-5-sonnet;
-- -$0.23: volume 0.8×" says what the finding added and what hid it.
with_drivers as (
    select
        {%- for column in ['anomaly_id', 'incident_key', 'incident_started_at'] + anomaly_columns() %}
        {%- if column == 'message' %}
        case when cost_drivers.hour_at is not null
            then final.message || ' — ' || cost_drivers.explanation
            else final.message end as message,
        {%- else %}
        final.{{ column }},
        {%- endif %}
        {%- endfor %}
        cost_drivers.top_driver,
        cost_drivers.top_driver_usd,
        cost_drivers.drivers
    from final
    left join cost_drivers
        on cost_drivers.hour_at = final.hour_at
        and cost_drivers.feature = final.feature
        and cost_drivers.environment = final.environment
        and final.estimated_excess_cost_usd > 0
        and cost_drivers.top_driver is not null
)

select * from with_drivers
