"""The data-quality results as an asset in the graph: `ops.check_results`.

The raw suites run inside the ingest (they judge the load itself); this asset runs the suite
over the marts (expectations/fct_llm_calls.json) for the run's window and records its outcomes
in the same table. dbt's `ops.check_results` source is this asset (the translator maps it), so
lineage alone orders the run: marts → this asset → fct_check_results → the data_quality
detector → marts.anomalies, and an error-level failure of the hour reaches the anomalies of the
same run. The `priced_share` check shows the recorded outcome on fct_llm_calls in the UI.
"""

from datetime import UTC, datetime

import dagster as dg

from orchestration.defs.assets.dbt import CHECK_RESULTS, INGEST_ASSET
from orchestration.defs.assets.raw import check_result
from orchestration.defs.project import PARTITIONS, run_window
from orchestration.defs.resources import SparkServer, SpendwatchHome
from orchestration.lib.quality import (
    SuiteOutcome,
    outcome_from_dict,
    recorded_outcome,
    run_fct_suite,
)
from spendwatch.config import target

FCT_LLM_CALLS = dg.AssetKey(["marts", "fct_llm_calls"])
MODEL_HOURS = dg.AssetKey(["marts", "agg_hourly_model_cost"])
FCT_SUITE = "fct_llm_calls"


@dg.asset(
    key=CHECK_RESULTS,
    group_name="quality",
    partitions_def=PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    # the ingest's raw suites write here too; the marts suite counts with the model mart's
    # priced_calls, not the calls again
    deps=[INGEST_ASSET, FCT_LLM_CALLS, MODEL_HOURS],
    kinds={"great_expectations", "duckdb", "spark"},
    description="One row per data-quality expectation and hour (ops.check_results): the raw "
    "suites written by the ingest, and the GX suite expectations/fct_llm_calls.json run here "
    "over the hourly model mart's priced_calls / calls (at least 99 % of each hour's calls "
    "have a known provider/model and a price valid at their time).",
)
def check_results(
    context: dg.AssetExecutionContext, spendwatch: SpendwatchHome, spark: SparkServer
) -> dg.MaterializeResult:
    start, end = run_window(context.run.tags, context.partition_time_window)
    p = spendwatch.paths()
    if target() == "spark":
        outcome = outcome_from_dict(
            spark.run(
                "orchestration.lib.quality:run_fct_suite_spark",
                start=start.isoformat(),
                end=end.isoformat(),
                now=datetime.now(UTC).isoformat(),
            )
        )
    else:
        outcome = run_fct_suite(p.warehouse, start, end, datetime.now(UTC))
    failed = [o.check_name for o in outcome.failed]
    if failed:
        context.log.warning(f"{FCT_SUITE} suite: {len(failed)} expectation(s) failed: {failed}")
    return dg.MaterializeResult(
        metadata={
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "suite": FCT_SUITE,
            "expectations": len(outcome.outcomes),
            "failed": dg.MetadataValue.json(failed),
        }
    )


@dg.asset_check(
    asset=FCT_LLM_CALLS,
    additional_deps=[CHECK_RESULTS],
    name="priced_share",
    description="The outcome of the GX suite expectations/fct_llm_calls.json for the run's "
    "window, as recorded in ops.check_results: at least 99 % of each hour's calls priced.",
)
def priced_share(
    context: dg.AssetCheckExecutionContext, spendwatch: SpendwatchHome, spark: SparkServer
) -> dg.AssetCheckResult:
    start, end = run_window(context.run.tags, _partitions_window(context))
    p = spendwatch.paths()
    if target() == "spark":
        outcome: SuiteOutcome = outcome_from_dict(
            spark.run(
                "orchestration.lib.quality:recorded_outcome_spark",
                suite=FCT_SUITE,
                start=start.isoformat(),
                end=end.isoformat(),
            )
        )
    else:
        outcome = recorded_outcome(p.warehouse, FCT_SUITE, start, end)
    return check_result(outcome, "priced_share", asset_key=FCT_LLM_CALLS)


def _partitions_window(context: dg.AssetCheckExecutionContext) -> dg.TimeWindow | None:
    """The time window of the run's partitions (a check has no partition of its own)."""
    tags = context.run.tags
    if "dagster/asset_partition_range_start" in tags:
        first = PARTITIONS.time_window_for_partition_key(
            tags["dagster/asset_partition_range_start"]
        )
        last = PARTITIONS.time_window_for_partition_key(tags["dagster/asset_partition_range_end"])
        return dg.TimeWindow(first.start, last.end)
    if "dagster/partition" in tags:
        return PARTITIONS.time_window_for_partition_key(tags["dagster/partition"])
    return None
