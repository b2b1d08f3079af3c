"""The dbt project and the hourly partitions every asset of the pipeline shares."""

from __future__ import annotations

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

#: One partition per UTC hour of call time. History before 2024 is not priced anyway.
HOURLY = dg.HourlyPartitionsDefinition(start_date="2024-01-01-00:00", timezone="UTC")

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
