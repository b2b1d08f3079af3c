-- Fails (returns rows) when seeds/alert_thresholds.csv is inconsistent: a detector without its
-- default ('*') row, or a critical threshold milder than the warning one.
with thresholds as (
    select * from {{ ref('alert_thresholds') }}
),

detectors as (
    select distinct detector from thresholds
),

missing_default as (
    select detectors.detector, 'no default row (feature = *)' as problem
    from detectors
    left join thresholds
        on thresholds.detector = detectors.detector and thresholds.feature = '*'
    where thresholds.detector is null
),

resolved as (
    select
        specific.detector,
        specific.feature,
        coalesce(specific.warning_threshold, defaults.warning_threshold) as warning_threshold,
        coalesce(specific.critical_threshold, defaults.critical_threshold) as critical_threshold
    from thresholds as specific
    left join thresholds as defaults
        on defaults.detector = specific.detector and defaults.feature = '*'
),

misordered as (
    select detector, 'critical threshold milder than warning for feature ' || feature as problem
    from resolved
    where (detector = 'cache_efficiency' and critical_threshold > warning_threshold)
        or (detector <> 'cache_efficiency' and critical_threshold < warning_threshold)
        or warning_threshold is null
)

select * from missing_default
union all
select * from misordered
