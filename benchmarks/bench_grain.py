"""What the partition grain costs Dagster, apart from any work: the bookkeeping of one
single-run backfill over a range, and of one hourly run, for hourly and for daily partitions.

The job has as many partitioned assets as spendwatch's hourly pipeline (the ingest, ten
tables, the checks) plus the unpartitioned report; each asset does nothing, so the time is
Dagster's alone: planning the run, one materialization event per asset and partition written
to the SQLite event log of a fresh instance, the run's other events. Measured with and without
`DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS` (one planned event per asset instead of one
per asset and partition). The floor is the same job over a single partition.
"""

import tempfile
import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from orchestration.runner import PLANNED_EVENTS_ENV
from spendwatch.config import temporary_environ

PARTITIONED_ASSETS = 12
DAYS = 28
#: what `make bench` runs: a week (hourly partitions at 28 days take ~10 minutes of events)
BENCH_DAYS = 7
START = datetime(2026, 10, 1, tzinfo=UTC)


def _job(partitions: dg.PartitionsDefinition) -> dg.JobDefinition:
    specs = [dg.AssetSpec(f"table_{i}") for i in range(PARTITIONED_ASSETS)]

    @dg.multi_asset(
        specs=specs,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        can_subset=True,
    )
    def tables(context: dg.AssetExecutionContext):
        for key in context.selected_asset_keys:
            yield dg.MaterializeResult(asset_key=key, metadata={"rows": 1})

    @dg.asset(deps=[s.key for s in specs])
    def report() -> None:
        return None

    defs = dg.Definitions(
        assets=[tables, report],
        jobs=[dg.define_asset_job("pipeline", partitions_def=partitions)],
    )
    return defs.resolve_job_def("pipeline")


def _timed_run(job: dg.JobDefinition, first: str, last: str, planned_per_asset: bool) -> float:
    planned = {PLANNED_EVENTS_ENV: "1" if planned_per_asset else "0"}
    with (
        tempfile.TemporaryDirectory() as home,
        temporary_environ(planned),
        dg.instance_for_test(temp_dir=home) as instance,
    ):
        began = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
            },
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )
        seconds = time.perf_counter() - began
        assert result.success
    return seconds


def run(days: int = DAYS) -> list[dict]:
    hourly = dg.HourlyPartitionsDefinition(start_date="2026-01-01-00:00", timezone="UTC")
    daily = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC", end_offset=1)
    last_hour = START + timedelta(days=days) - timedelta(hours=1)
    grains = {
        "hourly": (hourly, f"{START:%Y-%m-%d-%H:%M}", f"{last_hour:%Y-%m-%d-%H:%M}"),
        "daily": (daily, f"{START:%Y-%m-%d}", f"{last_hour:%Y-%m-%d}"),
    }
    results = []
    for grain, (partitions, first, last) in grains.items():
        job = _job(partitions)
        floor = _timed_run(job, last, last, planned_per_asset=True)  # the hourly run
        for per_asset in (False, True):
            seconds = _timed_run(job, first, last, per_asset)
            planned = "per asset" if per_asset else "per partition"
            results.append({
                "name": f"bookkeeping_{days}d_{grain}_planned_{planned.replace(' ', '_')}",
                "value": round(seconds, 1), "unit": "s", "floor": round(floor, 2),
                "ratio": round(seconds / floor, 1),
            })  # fmt: skip
        results.append({
            "name": f"bookkeeping_hourly_run_{grain}", "value": round(floor, 2), "unit": "s",
            "floor": round(floor, 2), "ratio": 1.0,
        })  # fmt: skip
    return results


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else DAYS), indent=2))
