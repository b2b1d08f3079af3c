"""dbt as Dagster assets: seeds (unpartitioned) and the models on the hourly partitions.
The partition window of a run reaches dbt as `--vars {start_hour, end_hour}`; the incremental
marts delete and re-insert exactly those hours. A backfill is one run over its whole range
(`BackfillPolicy.single_run()`), so 28 days cost one dbt invocation, not 672.
"""

import json
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from orchestration.defs.project import HOURLY, dbt_project, manifest_path

INGEST_ASSET = dg.AssetKey("raw_llm_calls")


class SpendwatchTranslator(DagsterDbtTranslator):
    """dbt's `raw` source is the ingest asset, so lineage is one graph from files to marts; seeds
    are the `reference_data` group, models the group of their folder under models/."""

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)  # its key: get_asset_key
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "seed":
            return spec.replace_attributes(group_name="reference_data")
        fqn = props.get("fqn", [])
        return spec.replace_attributes(group_name=fqn[1] if len(fqn) > 2 else "dbt")

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        # The key stays here rather than in get_asset_spec: dagster-dbt 0.29 still names the
        # assets observed by dbt tests outside the check selection (the raw source's tests)
        # through get_asset_key (dagster_dbt/core/dbt_cli_event.py); a key set only in
        # get_asset_spec would have them observe a phantom `raw/llm_calls`.
        if (
            dbt_resource_props["resource_type"] == "source"
            and dbt_resource_props["source_name"] == "raw"
        ):
            return INGEST_ASSET
        return super().get_asset_key(dbt_resource_props)


TRANSLATOR = SpendwatchTranslator(
    settings=DagsterDbtTranslatorSettings(
        enable_asset_checks=True, enable_duplicate_source_asset_keys=True
    )
)
EXCLUDE_UNIT_TESTS = ["--exclude", "resource_type:unit_test"]


def window_vars(context: dg.AssetExecutionContext) -> dict[str, str]:
    window = context.partition_time_window
    return {
        "start_hour": f"{window.start:%Y-%m-%d %H:%M:%S}",
        "end_hour": f"{window.end:%Y-%m-%d %H:%M:%S}",
    }


@dbt_assets(
    manifest=manifest_path(),
    project=dbt_project,
    select="resource_type:seed",
    name="spendwatch_dbt_seeds",
    dagster_dbt_translator=TRANSLATOR,
)
def spendwatch_dbt_seeds(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """Price list, aliases, catalog, thresholds, policy, budgets (unpartitioned). Reloaded
    whole (`--full-refresh`): a seed that gained a column (a new threshold) is recreated with
    it instead of failing against the table loaded from its older version. Tests that also
    read a model (marts.anomalies.detector against the detectors seed) run with that model
    (`--indirect-selection cautious`), not before it exists."""
    args = ["build", "--full-refresh", "--indirect-selection", "cautious", *EXCLUDE_UNIT_TESTS]
    yield from dbt.cli(args, context=context).stream()


DETECTION = "tag:detection"


@dbt_assets(
    manifest=manifest_path(),
    project=dbt_project,
    select="fqn:*",
    exclude=f"resource_type:seed {DETECTION}",
    name="spendwatch_dbt_models",
    partitions_def=HOURLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    dagster_dbt_translator=TRANSLATOR,
)
def spendwatch_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """Staging → priced calls → hourly marts with baselines, for the run's partition window."""
    args = ["build", *EXCLUDE_UNIT_TESTS, "--vars", json.dumps(window_vars(context))]
    yield from dbt.cli(args, context=context).stream()


@dbt_assets(
    manifest=manifest_path(),
    project=dbt_project,
    select=DETECTION,
    name="spendwatch_dbt_detection",
    partitions_def=HOURLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    dagster_dbt_translator=TRANSLATOR,
)
def spendwatch_dbt_detection(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """The detectors and marts.anomalies for the window. A separate dbt invocation so the
    data-quality checks of the marts run between the two and their failures reach the
    data_quality detector in the same run."""
    args = ["build", *EXCLUDE_UNIT_TESTS, "--vars", json.dumps(window_vars(context))]
    yield from dbt.cli(args, context=context).stream()
