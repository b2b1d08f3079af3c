"""Jobs and the hourly schedule."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.assets.dbt import (
    spendwatch_dbt_detection,
    spendwatch_dbt_models,
    spendwatch_dbt_seeds,
)
from orchestration.defs.assets.raw import raw_llm_calls
from orchestration.defs.assets.report import spend_report
from orchestration.defs.project import HOURLY, WRITES_WAREHOUSE

hourly_pipeline = dg.define_asset_job(
    name="hourly_pipeline",
    selection=dg.AssetSelection.assets(
        raw_llm_calls, spendwatch_dbt_models, spendwatch_dbt_detection, spend_report
    ),
    partitions_def=HOURLY,
    tags=WRITES_WAREHOUSE,
    description="Load an hour window of landing files, build every mart for it, and re-render "
    "the dashboard (spend_report, unpartitioned: one file for the whole warehouse).",
)

reference_data = dg.define_asset_job(
    name="reference_data",
    selection=dg.AssetSelection.assets(spendwatch_dbt_seeds),
    tags=WRITES_WAREHOUSE,
    description="Reload the price list and the other seeds.",
)

# Each hour, five minutes past, materialize the hour that just ended.
hourly_schedule = dg.build_schedule_from_partitioned_job(
    hourly_pipeline,
    minute_of_hour=5,
    name="hourly_pipeline_schedule",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
