"""The ingest asset: landing files of an hour window → raw.llm_calls (+ quarantine, load log),
with its checks: lines reconcile, and the Great Expectations completeness suites."""

import os
from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from orchestration.defs.project import PARTITIONS, run_window
from orchestration.defs.resources import SparkServer, SpendwatchHome
from orchestration.lib.ingest import connect, load_window
from orchestration.lib.ingest.load import RECONCILE_SQL, RECONCILE_TOTALS_SQL
from orchestration.lib.ingest.spark_load import load_result
from orchestration.lib.quality import SuiteOutcome, outcome_from_dict, run_raw_suites
from spendwatch.config import target

RAW_SUITES = {"raw_load_hours": "telemetry_completeness"}


def check_result(outcome: SuiteOutcome, check_name: str, asset_key=None) -> dg.AssetCheckResult:
    """A GX suite outcome as a Dagster check: fails with ERROR when an error-level expectation
    failed, WARN when only warn-level ones did; `level` in the metadata says which. Neither
    blocks the downstream assets: the data_quality detector must see the failure."""
    has_error = any(o.severity == "error" for o in outcome.failed)
    metadata = outcome.metadata()
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=not outcome.failed,
        severity=dg.AssetCheckSeverity.ERROR if has_error else dg.AssetCheckSeverity.WARN,
        metadata={
            **{k: v for k, v in metadata.items() if k != "failures"},
            "failures": dg.MetadataValue.json(metadata["failures"]),
            "level": "error" if has_error else ("warn" if outcome.failed else "ok"),
        },
    )


#: Set to 1 to let a load delete the rows of hours whose landing files are gone
#: (`spendwatch materialize --allow-empty` sets it for its run).
ALLOW_EMPTY_ENV = "SPENDWATCH_ALLOW_EMPTY_RELOAD"


class RawLoadConfig(dg.Config):
    allow_empty_reload: bool = Field(
        default=False,
        description="Delete the loaded rows of hours whose landing files are gone (otherwise "
        "they are kept and the landing_files_present check fails). Also "
        "SPENDWATCH_ALLOW_EMPTY_RELOAD=1.",
    )


def allow_empty_reload(config: RawLoadConfig) -> bool:
    return config.allow_empty_reload or os.environ.get(ALLOW_EMPTY_ENV, "").strip().lower() in (
        "1", "true", "yes")  # fmt: skip


@dg.asset(
    name="raw_llm_calls",
    group_name="ingest",
    partitions_def=PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"duckdb", "spark", "python"},
    check_specs=[
        dg.AssetCheckSpec(
            "telemetry_completeness",
            asset="raw_llm_calls",
            description="GX suite expectations/raw_load_hours.json: every hour of the window has "
            "landing files, none broken or gone since they loaded, and at most 1 % of its lines "
            "rejected (error); its newest event is at "
            "most two hours old and it loaded at least a fifth of its usual lines (warning).",
        ),
    ],
    description=(
        "Landing files (`landing/calls/date=/hour=/*.jsonl[.gz]`) loaded into raw.llm_calls; "
        "every line it cannot accept goes to raw.llm_calls_rejected with its reason. Re-running "
        "an hour replaces it in one transaction."
    ),
)
def raw_llm_calls(
    context: dg.AssetExecutionContext,
    config: RawLoadConfig,
    spendwatch: SpendwatchHome,
    spark: SparkServer,
):
    start, end = run_window(context.run.tags, context.partition_time_window)
    p = spendwatch.paths()
    if target() == "spark":  # the Spark load and the raw suites, in one Spark process
        done = spark.run(
            "orchestration.lib.spark_steps:ingest",
            start=start.isoformat(),
            end=end.isoformat(),
            now=datetime.now(UTC).isoformat(),
            allow_empty=allow_empty_reload(config),
        )
        result = load_result(done["load"])
        outcomes = [outcome_from_dict(o) for o in done["suites"]]
    else:
        result = load_window(
            p.warehouse, p.landing, start, end, allow_empty=allow_empty_reload(config)
        )
        outcomes = None
    for warning in result.warnings():
        context.log.warning(warning)
    context.log.info(
        f"{start:%Y-%m-%d %H:00} → {end:%Y-%m-%d %H:00}: {result.files} files, "
        f"{result.lines} lines, {result.loaded} loaded, {result.rejected} rejected"
    )
    yield dg.MaterializeResult(
        metadata={
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "files": result.files,
            "lines_read": result.lines,
            "rows_loaded": result.loaded,
            "rows_rejected": result.rejected,
            "rejected_by_reason": dg.MetadataValue.json(result.rejected_by_reason),
            "kept_hours": dg.MetadataValue.json(
                {f"{hour:%Y-%m-%dT%H}": rows for hour, rows in result.kept_hours.items()}
            ),
            "quarantined_files": dg.MetadataValue.json(result.file_errors),
        }
    )
    if outcomes is None:
        outcomes = run_raw_suites(p.warehouse, start, end, datetime.now(UTC))
    for outcome in outcomes:
        yield check_result(outcome, RAW_SUITES[outcome.suite])


@dg.asset_check(
    asset=raw_llm_calls,
    name="lines_reconcile",
    blocking=True,
    description="Every landing file: lines read = rows loaded + rows rejected, and the raw tables "
    "hold exactly those rows.",
)
def lines_reconcile(spendwatch: SpendwatchHome, spark: SparkServer) -> dg.AssetCheckResult:
    p = spendwatch.paths()
    if target() == "spark":
        found = spark.run("orchestration.lib.spark_steps:reconcile")
        mismatched, files, lines = found["mismatched"], *found["totals"]
    else:
        con = connect(p.warehouse)
        try:
            mismatched = con.execute(RECONCILE_SQL).fetchall()
            files, lines = con.execute(RECONCILE_TOTALS_SQL).fetchone()
        finally:
            con.close()
    return dg.AssetCheckResult(
        passed=not mismatched,
        metadata={
            "files_checked": files,
            "lines_checked": int(lines),
            "mismatched_files": dg.MetadataValue.json([list(map(str, row)) for row in mismatched]),
        },
    )
