"""The spendwatch code location: `dagster dev -m orchestration.definitions`."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.alerts import alert_backlog, alerts_job, alerts_on_anomalies
from orchestration.defs.assets.checks import check_results, priced_share
from orchestration.defs.assets.dbt import spendwatch_dbt_reference, spendwatch_dbt_tables
from orchestration.defs.assets.raw import lines_reconcile, raw_llm_calls
from orchestration.defs.assets.report import spend_report
from orchestration.defs.exports import exports_on_marts, metric_exports, metric_exports_job
from orchestration.defs.jobs import hourly_pipeline, hourly_schedule, reference_data
from orchestration.defs.resources import build_resources
from orchestration.defs.sensors import late_landing_files

defs = dg.Definitions(
    assets=[
        raw_llm_calls,
        spendwatch_dbt_reference,
        spendwatch_dbt_tables,
        check_results,
        spend_report,
        metric_exports,
    ],
    asset_checks=[lines_reconcile, priced_share],
    jobs=[hourly_pipeline, reference_data, alerts_job, metric_exports_job],
    schedules=[hourly_schedule],
    sensors=[late_landing_files, alerts_on_anomalies, alert_backlog, exports_on_marts],
    resources=build_resources(),
    executor=dg.in_process_executor,
)
