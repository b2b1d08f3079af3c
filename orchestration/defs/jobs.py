"""Jobs and the hourly schedule.

`hourly_pipeline` holds every asset a run may build; a run selects the partitioned ones (ingest,
tables, checks) and the report always, and the seeds and views only when they are stale
(`pipeline_selection`). Its partitions are days; the hour window a run builds travels in its
window tags (orchestration/defs/project.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from orchestration.defs.assets.checks import check_results
from orchestration.defs.assets.dbt import (
    spendwatch_dbt_reference,
    spendwatch_dbt_tables,
    stale_reference_keys,
)
from orchestration.defs.assets.raw import raw_llm_calls
from orchestration.defs.assets.report import spend_report
from orchestration.defs.project import HOUR, PARTITIONS, WRITES_WAREHOUSE, window_tags
from orchestration.defs.resources import SpendwatchHome

hourly_pipeline = dg.define_asset_job(
    name="hourly_pipeline",
    selection=dg.AssetSelection.assets(
        raw_llm_calls,
        spendwatch_dbt_reference,
        spendwatch_dbt_tables,
        check_results,
        spend_report,
    ),  # fmt: skip
    partitions_def=PARTITIONS,
    tags=WRITES_WAREHOUSE,
    description="Load an hour window of landing files, build every table for it (and the seeds "
    "and views whose SQL changed), check it, find its anomalies, and re-render the dashboard "
    "(spend_report, unpartitioned: one file for the whole warehouse).",
)

reference_data = dg.define_asset_job(
    name="reference_data",
    selection=dg.AssetSelection.assets(spendwatch_dbt_reference)
    & dg.AssetSelection.groups("reference_data"),
    tags=WRITES_WAREHOUSE,
    description="Reload the price list and the other seeds.",
)

#: what every run of hourly_pipeline builds; the seeds and views join when stale
EVERY_RUN = frozenset(
    {raw_llm_calls.key, *spendwatch_dbt_tables.keys, check_results.key, spend_report.key}
)


def pipeline_selection(instance: dg.DagsterInstance, warehouse_exists: bool) -> list[dg.AssetKey]:
    return sorted(EVERY_RUN | stale_reference_keys(instance, warehouse_exists))


def pipeline_request(
    instance: dg.DagsterInstance,
    spendwatch: SpendwatchHome,
    start: datetime,
    end: datetime,
    run_key: str | None = None,
    tags: dict[str, str] | None = None,
) -> dg.RunRequest:
    """A run of hourly_pipeline for the hours [start, end) of one day partition."""
    key = PARTITIONS.get_partition_key_for_timestamp(start.timestamp())
    if PARTITIONS.get_partition_key_for_timestamp((end - HOUR).timestamp()) != key:
        raise ValueError(f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} spans two partitions")
    return dg.RunRequest(
        run_key=run_key,
        partition_key=key,
        asset_selection=pipeline_selection(instance, spendwatch.paths().built),
        tags={**window_tags(start, end), **(tags or {})},
    )


def pending_run(instance: dg.DagsterInstance, start: datetime, end: datetime) -> str | None:
    """The id of a run of hourly_pipeline for exactly [start, end) that has not started yet
    (queued): it reads the hours' landing files when it starts, so files that land meanwhile
    need no run of their own. None when there is none."""
    runs = instance.get_runs(
        dg.RunsFilter(
            job_name="hourly_pipeline",
            statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED],
            tags=window_tags(start, end),
        ),
        limit=1,
    )
    return runs[0].run_id if runs else None


@dg.schedule(
    cron_schedule="5 * * * *",
    job=hourly_pipeline,
    name="hourly_pipeline_schedule",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Each hour, five minutes past, the hour that just ended (its day's partition).",
)
def hourly_schedule(context: dg.ScheduleEvaluationContext, spendwatch: SpendwatchHome):
    end = context.scheduled_execution_time.astimezone(UTC)
    end = end.replace(minute=0, second=0, microsecond=0)
    return pipeline_request(
        context.instance, spendwatch, end - HOUR, end, run_key=f"hour:{end - HOUR:%Y-%m-%d-%H:%M}"
    )
