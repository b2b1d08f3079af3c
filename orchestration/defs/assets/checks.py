"""Great Expectations checks on the marts (the raw suites run inside the ingest asset)."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from orchestration.defs.assets.raw import check_result
from orchestration.defs.project import HOURLY, RANGE_END_TAG, RANGE_START_TAG
from orchestration.defs.resources import SpendwatchHome
from orchestration.lib.quality import run_fct_suite

FCT_LLM_CALLS = dg.AssetKey(["marts", "fct_llm_calls"])
MODEL_HOURS = dg.AssetKey(["marts", "agg_hourly_model_cost"])


def run_window(context) -> tuple[datetime, datetime]:
    """The hour window of the run a check executes in (a partition, a range), or the last day."""
    tags = context.run.tags
    if RANGE_START_TAG in tags:
        start = HOURLY.time_window_for_partition_key(tags[RANGE_START_TAG]).start
        end = HOURLY.time_window_for_partition_key(tags[RANGE_END_TAG]).end
        return start, end
    if "dagster/partition" in tags:
        window = HOURLY.time_window_for_partition_key(tags["dagster/partition"])
        return window.start, window.end
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return end - timedelta(days=1), end


@dg.asset_check(
    asset=FCT_LLM_CALLS,
    additional_deps=[MODEL_HOURS],  # it counts with the mart's priced_calls, not the calls again
    name="priced_share",
    # blocking orders it before the detectors in the same run; it reports WARN so a failure
    # never stops them: its error-level failures must reach marts.anomalies as data_quality.
    blocking=True,
    description="GX suite expectations/fct_llm_calls.json over the hourly model mart's "
    "priced_calls / calls: at least 99 % of each hour's calls have a known provider/model and a "
    "price valid at their time.",
)
def priced_share(context: dg.AssetCheckExecutionContext, spendwatch: SpendwatchHome):
    start, end = run_window(context)
    outcome = run_fct_suite(spendwatch.paths().warehouse, start, end, datetime.now(UTC))
    return check_result(outcome, "priced_share", asset_key=FCT_LLM_CALLS, never_blocks=True)
