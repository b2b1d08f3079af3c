"""The Dagster side of the metric exports: the asset `ops/metric_exports`, its job and the
sensor that starts it after every pipeline run that built the hourly model mart.

The asset pushes the hourly mart figures to every configured destination (Datadog when
`SPENDWATCH_DATADOG_API_KEY` is set, CloudWatch when `SPENDWATCH_CLOUDWATCH_NAMESPACE` is set)
through `orchestration.lib.exports.run.export_metrics`, the code path of `spendwatch export`.
With none configured it logs one line and records that it skipped. A failed export never fails
the run: it is recorded in `ops.metric_exports` (and the run's metadata) and retried by the next
run. It runs in its own job, not in `hourly_pipeline`, so a slow or dead metrics endpoint never
holds the pipeline (or the next hour's run) back; the job writes ops.metric_exports, so it
carries the warehouse-write tag and the run queue serializes it with the pipeline.

On the spark target the export reads the DuckDB warehouse, as the dashboard does, so it records
that it skipped (docs/architecture.md, "The Spark target").
"""

import dagster as dg

from orchestration.defs.assets.dbt import spendwatch_dbt_tables
from orchestration.defs.project import WRITES_WAREHOUSE
from orchestration.defs.resources import SpendwatchHome
from orchestration.lib.exports.run import Redactor, export_metrics
from spendwatch.config import export_settings, target

#: the mart the figures come from, as the dbt translator names it
MODEL_MART_ASSET = next(
    k for k in spendwatch_dbt_tables.keys if k.path[-1] == "agg_hourly_feature_model_cost"
)
SOURCE_RUN_TAG = "spendwatch/mart_run_id"
SENSOR_INTERVAL_SECONDS = 30
SPARK_SKIP = "metric exports read the DuckDB warehouse; not on the spark target yet"
NOT_CONFIGURED = (
    "no metrics destination configured (set SPENDWATCH_DATADOG_API_KEY and/or "
    "SPENDWATCH_CLOUDWATCH_NAMESPACE): skipped"
)


@dg.asset(
    key=["ops", "metric_exports"],
    group_name="exports",
    deps=[MODEL_MART_ASSET],
    kinds={"duckdb", "datadog", "aws"},
    description=(
        "The hourly mart figures pushed as metrics (llm.calls, llm.tokens, llm.cost_usd, "
        "llm.cost_per_call_usd, llm.cache_hit_rate by feature, model, provider, environment) "
        "to Datadog and/or CloudWatch: every complete hour of the last 7 days not sent yet; "
        "ops.metric_exports logs each hour and destination. Skipped when nothing is configured."
    ),
)
def metric_exports(
    context: dg.AssetExecutionContext, spendwatch: SpendwatchHome
) -> dg.MaterializeResult:
    if target() == "spark":
        context.log.info(f"metric_exports: {SPARK_SKIP}")
        return dg.MaterializeResult(metadata={"skipped": SPARK_SKIP})
    try:
        settings = export_settings()
    except ValueError as exc:  # a malformed URL: said once, the run goes on
        context.log.error(f"metric_exports: settings invalid, nothing exported: {exc}")
        return dg.MaterializeResult(metadata={"skipped": f"settings invalid: {exc}"})
    destinations = settings.configured()
    if not destinations:
        context.log.info(f"metric_exports: {NOT_CONFIGURED}")
        return dg.MaterializeResult(metadata={"skipped": NOT_CONFIGURED})
    redact = Redactor(settings.secrets())
    metadata: dict[str, object] = {"destinations": ", ".join(destinations)}
    for destination in destinations:
        try:
            report = export_metrics(
                spendwatch.paths().warehouse, destination, settings,
                run_id=context.run_id, logger=context.log,
            )  # fmt: skip
        except Exception as exc:  # never fail the run: the next one tries again
            error = redact(f"{type(exc).__name__}: {exc}")
            context.log.error(f"{destination}: export not done: {error}")
            metadata[destination] = dg.MetadataValue.json({"error": error})
            continue
        metadata[destination] = dg.MetadataValue.json(report.metadata())
    return dg.MaterializeResult(metadata=metadata)


metric_exports_job = dg.define_asset_job(
    name="metric_exports",
    selection=dg.AssetSelection.assets(metric_exports),
    tags={"spendwatch/kind": "exports", **WRITES_WAREHOUSE},
    description="Push the hourly mart figures to Datadog / CloudWatch (ops.metric_exports "
    "logs every hour and destination; failed hours are retried by the next run).",
)


@dg.asset_sensor(
    asset_key=MODEL_MART_ASSET,
    job=metric_exports_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="The hourly model mart was built → a metric_exports run (one per pipeline "
    "run), when a destination is configured.",
)
def exports_on_marts(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    if target() == "spark":
        return dg.SkipReason(SPARK_SKIP)
    try:
        configured = export_settings().configured()
    except ValueError as exc:
        return dg.SkipReason(f"export settings invalid: {exc}")
    if not configured:
        return dg.SkipReason(NOT_CONFIGURED)
    source = asset_event.run_id or f"event-{asset_event.timestamp:.0f}"
    return dg.RunRequest(
        run_key=f"exports:{source}",
        tags={SOURCE_RUN_TAG: asset_event.run_id} if asset_event.run_id else {},
    )
