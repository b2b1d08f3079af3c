"""The dashboard as an asset: `$SPENDWATCH_HOME/report.html`, re-rendered at the end of every
run of the hourly pipeline (and of every backfill range), so `make ui` shows when it was last
built and the file always describes the warehouse as it stands.

Unpartitioned on purpose: the report is one file about the whole warehouse up to its latest
hour, not a slice of one hour. Partitioning it would record 672 "materialized" partitions for a
28-day backfill when only one file exists; as an unpartitioned asset downstream of the hourly
assets it runs once per run, after the detectors, whatever range the run covers.
"""

import dagster as dg

from orchestration.defs.assets.dbt import INGEST_ASSET
from orchestration.defs.resources import SpendwatchHome
from spendwatch.config import target
from spendwatch.report import DEFAULT_DAYS, build_report

READS = [
    dg.AssetKey(["marts", "anomalies"]),
    dg.AssetKey(["marts", "fct_llm_calls"]),
    dg.AssetKey(["marts", "agg_hourly_feature_cost"]),
    INGEST_ASSET,  # raw.llm_calls_rejected and raw.load_log
]


@dg.asset(
    name="spend_report",
    group_name="report",
    deps=READS,
    kinds={"html", "duckdb"},
    description=(
        "Self-contained HTML dashboard ($SPENDWATCH_HOME/report.html): KPIs, spend over time "
        f"by feature and model (last {DEFAULT_DAYS} days hourly, the month daily), top cost "
        "drivers, incidents with their delivery state, prompt cache, data quality and a "
        "model-cost calculator. Aggregated in DuckDB (read-only, closed after the queries); "
        "the page makes no network request."
    ),
)
def spend_report(
    context: dg.AssetExecutionContext, spendwatch: SpendwatchHome
) -> dg.MaterializeResult:
    p = spendwatch.paths()
    if target() == "spark":
        # the dashboard's queries run on the DuckDB warehouse; on Spark the marts are queried
        # with Spark SQL (docs/architecture.md, "The Spark target")
        context.log.info("spend_report: not built on the spark target (it reads DuckDB)")
        return dg.MaterializeResult(metadata={"skipped": "the dashboard reads DuckDB"})
    result = build_report(
        p.warehouse,
        p.report,
        days=DEFAULT_DAYS,
        progress=lambda i, n, what: context.log.debug(f"report {i}/{n}: {what}"),
    )
    context.log.info(
        f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB) in {result.seconds:.1f} s"
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(result.path)),
            "size_bytes": result.size_bytes,
            "build_seconds": round(result.seconds, 2),
            "data_up_to": dg.MetadataValue.text(f"{result.as_of:%Y-%m-%d %H:%M} UTC"),
            "days": result.days,
            "calls_shown": result.calls,
            "spend_usd_shown": round(result.spend_usd, 2),
            "incidents": result.incidents,
            "open_incidents": result.open_incidents,
            "alert_delivery_state": result.alerting,
            "step_seconds": dg.MetadataValue.json(result.step_seconds),
        }
    )
