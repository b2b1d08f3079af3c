"""The dbt project, the day partitions every asset of the pipeline shares, and the hour window
a run builds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtProject

PROJECT_DIR = Path(__file__).resolve().parents[2]

#: Run tags with which Dagster runs a partition range as one run (single-run backfills).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

#: Runs that write the warehouse carry this tag; the instance's run queue (dagster.yaml, written
#: by spendwatch.config.export_environment) starts at most one of them at a time, and the CLI
#: waits for them: DuckDB admits one writing process.
WAREHOUSE_TAG = "spendwatch/warehouse"
WRITES_WAREHOUSE = {WAREHOUSE_TAG: "write"}

#: One partition per UTC day of call time (history before 2024 is not priced anyway). The marts
#: stay hourly: a run builds an hour window, by default its partitions' whole days, narrowed by
#: the window tags below — the hourly schedule refreshes the current day's partition with the
#: hour that just ended, the late-file sensor an older day's partition with the hours it saw
#: change. Daily, not hourly, partitions because Dagster records every materialized partition
#: as its own event (SQLite writes them one at a time, ~10-20 ms each): a 28-day backfill of 12
#: partitioned assets is 336 events by the day, 8,064 by the hour (docs/benchmarks.md measures
#: both).
#: `end_offset=1`: today is a partition already (the hourly runs refresh it as it fills).
PARTITIONS = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC", end_offset=1)

#: The hour window [start, end) a run builds, when narrower than its partitions' days
#: (`%Y-%m-%d %H:%M`, UTC). Set by the schedule, the sensors and the CLI.
WINDOW_START_TAG = "spendwatch/window_start"
WINDOW_END_TAG = "spendwatch/window_end"
HOUR = timedelta(hours=1)


def window_tags(start: datetime, end: datetime) -> dict[str, str]:
    return {WINDOW_START_TAG: f"{start:%Y-%m-%d %H:%M}", WINDOW_END_TAG: f"{end:%Y-%m-%d %H:%M}"}


def partition_keys(start: datetime, end: datetime) -> list[str]:
    """The partitions the hour window [start, end) touches, in order."""
    first = PARTITIONS.get_partition_key_for_timestamp(start.timestamp())
    last = PARTITIONS.get_partition_key_for_timestamp((end - HOUR).timestamp())
    return PARTITIONS.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))


def _hour(text: str, tag: str) -> datetime:
    try:
        at = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(
            f"run tag {tag}={text!r} is not an hour 'YYYY-MM-DD HH:00' (UTC)"
        ) from None
    if at.minute:
        raise ValueError(f"run tag {tag}={text!r} is not a whole hour")
    return at


def run_window(
    tags: Mapping[str, str], partitions: dg.TimeWindow | None
) -> tuple[datetime, datetime]:
    """The hour window a run builds: its window tags when it has them (they must lie inside its
    partitions), else its partitions' time window."""
    if WINDOW_START_TAG not in tags and WINDOW_END_TAG not in tags:
        if partitions is None:
            raise ValueError("the run has neither a partition nor a window tag: nothing to build")
        return partitions.start, partitions.end
    if WINDOW_START_TAG not in tags or WINDOW_END_TAG not in tags:
        raise ValueError(f"a run needs both {WINDOW_START_TAG} and {WINDOW_END_TAG}, or neither")
    start = _hour(tags[WINDOW_START_TAG], WINDOW_START_TAG)
    end = _hour(tags[WINDOW_END_TAG], WINDOW_END_TAG)
    if end <= start:
        raise ValueError(f"empty hour window {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M}")
    if partitions is not None and (start < partitions.start or end > partitions.end):
        raise ValueError(
            f"hour window {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} lies outside the run's "
            f"partitions {partitions.start:%Y-%m-%d %H:%M} → {partitions.end:%Y-%m-%d %H:%M}"
        )
    return start, end


# One way to the manifest: `make manifest` writes it (a fresh clone, CI, the CLI's runs); under
# `dagster dev` dagster-dbt's `prepare_if_dev` re-parses the project when the code location
# loads, so edits to models show up on reload. Anywhere else importing this stays cheap.
dbt_project = DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR)
dbt_project.prepare_if_dev()


def manifest_path() -> Path:
    path = dbt_project.manifest_path
    if not path.exists():
        raise FileNotFoundError(
            f"dbt manifest not found at {path}: run `make manifest` in {PROJECT_DIR} first "
            "(it parses the dbt project once; `make demo`, `make test` and `make ui` do it too)"
        )
    return path
