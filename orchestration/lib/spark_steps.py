"""The Python steps of a run on the Spark target, each called through `run_in_spark` (one Spark
process per step; orchestration/lib/spark.py says why). The assets call these where the DuckDB
target calls the same logic on a DuckDB connection."""

from __future__ import annotations

from pathlib import Path

from orchestration.lib.ingest.load import RECONCILE_SQL, RECONCILE_TOTALS_SQL
from orchestration.lib.ingest.spark_load import load_window_spark
from orchestration.lib.quality import run_raw_suites_spark


def ingest(spark, home: Path, start: str, end: str, now: str, allow_empty: bool) -> dict:
    """The raw load of [start, end) and the raw suites over it: one Spark start, not two."""
    load = load_window_spark(spark, home, start, end, now=now, allow_empty=allow_empty)
    return {"load": load, "suites": run_raw_suites_spark(spark, home, start, end, now)}


def reconcile(spark, home: Path) -> dict:
    """The lines_reconcile check's queries (RECONCILE_SQL) on the Spark tables."""
    mismatched = [[str(v) for v in row] for row in spark.sql(RECONCILE_SQL).collect()]
    files, lines = spark.sql(RECONCILE_TOTALS_SQL).collect()[0]
    return {"mismatched": mismatched, "totals": [int(files), int(lines)]}
