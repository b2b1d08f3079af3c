"""dbt as Dagster assets, in two multi-assets by how they store data:

- `spendwatch_dbt_tables`: the incremental tables (fct_llm_calls, the hourly and daily marts,
  fct_check_results, anomalies), on the day partitions. A run's hour window reaches dbt as
  `--vars {start_hour, end_hour}` and each table deletes and re-inserts exactly those hours. A
  backfill is one run over its whole range (`BackfillPolicy.single_run()`).
- `spendwatch_dbt_reference`: the seeds and the views (staging, intermediate, the detectors),
  unpartitioned. A view stores nothing per hour: it is built when its SQL changes, and a
  seed when its file does — `stale_reference_keys` compares each one's code version (its SQL
  with the macros it uses, or the seed file) with the one its last materialization recorded,
  and the runs add the stale ones to their selection; lineage puts them where they belong.

dbt's `raw` source is the ingest asset and its `ops` source the data-quality asset, so lineage
orders one run from the files to the anomalies: the tables' multi-asset is split by Dagster
around ops/check_results (marts → checks → fct_check_results → anomalies).
"""

import hashlib
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from orchestration.defs.project import (
    PARTITIONS,
    PROJECT_DIR,
    dbt_project,
    manifest_path,
    run_window,
)
from orchestration.defs.resources import SparkServer, SpendwatchHome
from spendwatch.config import temporary_environ

INGEST_ASSET = dg.AssetKey("raw_llm_calls")
CHECK_RESULTS = dg.AssetKey(["ops", "check_results"])
#: dbt sources written by the Python side of the pipeline → the assets that write them
SOURCE_ASSETS = {"raw": INGEST_ASSET, "ops": CHECK_RESULTS}
#: the tag in which Dagster records an asset's code version on each materialization
CODE_VERSION_TAG = "dagster/code_version"


class SpendwatchTranslator(DagsterDbtTranslator):
    """dbt's `raw` and `ops` sources are the Python assets that write them, so lineage is one
    graph from files to anomalies; seeds are the `reference_data` group, models the group of
    their folder under models/. A view's code version covers the macros it expands, not only its
    file: a changed macro rebuilds the views that use it."""

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)  # its key: get_asset_key
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "seed":
            return spec.replace_attributes(group_name="reference_data")
        fqn = props.get("fqn", [])
        spec = spec.replace_attributes(group_name=fqn[1] if len(fqn) > 2 else "dbt")
        if props["resource_type"] != "model":
            return spec
        if props["config"]["materialized"] == "view":
            return spec.replace_attributes(code_version=view_version(manifest, props))
        # A table also depends on what its views read: a run that does not rebuild the views
        # (they are not stale) must still order the ingest and the checks before the tables
        # that read them through a view.
        through_views = {
            self.get_asset_key(self.get_resource_props(manifest, parent))
            for parent in upstream_through_views(manifest, unique_id)
        }
        known = {dep.asset_key for dep in spec.deps}
        return spec.merge_attributes(deps=sorted(through_views - known - {spec.key}))

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        # The key stays here rather than in get_asset_spec: dagster-dbt 0.29 still names the
        # assets observed by dbt tests outside the check selection (the raw source's tests)
        # through get_asset_key (dagster_dbt/core/dbt_cli_event.py); a key set only in
        # get_asset_spec would have them observe a phantom `raw/llm_calls`.
        if dbt_resource_props["resource_type"] == "source":
            written_by = SOURCE_ASSETS.get(dbt_resource_props["source_name"])
            if written_by is not None:
                return written_by
        return super().get_asset_key(dbt_resource_props)


def upstream_through_views(manifest: Mapping[str, Any], unique_id: str) -> set[str]:
    """The sources, seeds and tables a model reads through any chain of views."""
    found: set[str] = set()
    todo = list(manifest["nodes"][unique_id]["depends_on"]["nodes"])
    seen: set[str] = set()
    while todo:
        parent = todo.pop()
        if parent in seen:
            continue
        seen.add(parent)
        node = manifest["nodes"].get(parent)
        if (
            node is not None
            and node["resource_type"] == "model"
            and (node["config"]["materialized"] == "view")
        ):
            todo += node["depends_on"]["nodes"]
        else:
            found.add(parent)
    return found


def view_version(manifest: Mapping[str, Any], props: Mapping[str, Any]) -> str:
    """What a view's SQL depends on: its file, every macro it expands (transitively), and the
    project's vars (dbt_project.yml)."""
    digest = hashlib.sha256(props["raw_code"].encode())
    for macro_id in sorted(_macro_closure(manifest, props["depends_on"]["macros"])):
        digest.update(manifest["macros"][macro_id]["macro_sql"].encode())
    digest.update(_project_file_digest().encode())
    return digest.hexdigest()[:24]


def _macro_closure(manifest: Mapping[str, Any], macro_ids: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    todo = [m for m in macro_ids if m in manifest["macros"]]
    while todo:
        macro_id = todo.pop()
        if macro_id not in seen:
            seen.add(macro_id)
            todo += [m for m in manifest["macros"][macro_id]["depends_on"]["macros"]
                     if m in manifest["macros"]]  # fmt: skip
    return seen


@cache
def _project_file_digest() -> str:
    return hashlib.sha256((PROJECT_DIR / "dbt_project.yml").read_bytes()).hexdigest()


TRANSLATOR = SpendwatchTranslator(
    settings=DagsterDbtTranslatorSettings(
        enable_asset_checks=True, enable_duplicate_source_asset_keys=True
    )
)
EXCLUDE_UNIT_TESTS = ["--exclude", "resource_type:unit_test"]


#: The run's hour window reaches the models in these environment variables (macros/hour_window.sql
#: reads them only while dbt executes). Not `--vars`: dbt re-parses the whole project whenever
#: its vars change, which every hourly invocation would pay.
WINDOW_ENV = ("SPENDWATCH_WINDOW_START", "SPENDWATCH_WINDOW_END")


def window_env(context: dg.AssetExecutionContext):
    """The run's hour window for the tables' dbt invocation."""
    start, end = run_window(context.run.tags, context.partition_time_window)
    values = (f"{start:%Y-%m-%d %H:%M:%S}", f"{end:%Y-%m-%d %H:%M:%S}")
    return temporary_environ(dict(zip(WINDOW_ENV, values, strict=True)))


def dbt_target(spendwatch: SpendwatchHome) -> Path:
    """One dbt target folder per home, kept between runs: dbt's partial-parse state there
    matches this home's profile, so an invocation parses only what changed (a fresh folder per
    invocation, dagster-dbt's default, re-parses the project every time: the profile names the
    home's warehouse file, which differs from the one `make manifest` parsed with)."""
    return spendwatch.paths().home / "dbt" / "target"


#: seeds and views: unpartitioned, built when their code version changes
REFERENCE = "resource_type:seed config.materialized:view"


@dbt_assets(
    manifest=manifest_path(),
    project=dbt_project,
    select=REFERENCE,
    name="spendwatch_dbt_reference",
    dagster_dbt_translator=TRANSLATOR,
)
def spendwatch_dbt_reference(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    spendwatch: SpendwatchHome,
    spark: SparkServer,  # on the Spark target, dbt's session attaches to the run's server
):
    """Price list, aliases, catalog, thresholds, policy, budgets, and the views over them and
    the tables. Seeds are reloaded whole (`--full-refresh`): a seed that gained a column (a new
    threshold) is recreated with it instead of failing against its older table. Tests that
    also read a model (marts.anomalies.detector against the detectors seed) run with that model
    (`--indirect-selection cautious`), not before it exists. Views get no window: they are SQL,
    and whoever reads them (the tables) limits them to the run's window."""
    args = ["build", "--full-refresh", "--indirect-selection", "cautious", *EXCLUDE_UNIT_TESTS]
    with temporary_environ(dict.fromkeys(WINDOW_ENV)):  # a view never bakes in a window
        yield from dbt.cli(args, context=context, target_path=dbt_target(spendwatch)).stream()


@dbt_assets(
    manifest=manifest_path(),
    project=dbt_project,
    select="fqn:*",
    exclude=REFERENCE,
    name="spendwatch_dbt_tables",
    partitions_def=PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    dagster_dbt_translator=TRANSLATOR,
)
def spendwatch_dbt_tables(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    spendwatch: SpendwatchHome,
    spark: SparkServer,  # on the Spark target, dbt's session attaches to the run's server
):
    """The incremental tables for the run's hour window: priced calls, hourly and daily marts
    with baselines, check results, anomalies."""
    with window_env(context):
        invocation = dbt.cli(
            ["build", *EXCLUDE_UNIT_TESTS], context=context, target_path=dbt_target(spendwatch)
        )
        yield from invocation.stream()


def stale_reference_keys(
    instance: dg.DagsterInstance, warehouse_exists: bool = True
) -> set[dg.AssetKey]:
    """Seeds and views whose code version differs from the one their last materialization
    recorded, or that were never materialized (all of them when the warehouse file is gone)."""
    current = {spec.key: spec.code_version for spec in spendwatch_dbt_reference.specs}
    if not warehouse_exists:
        return set(current)
    recorded: dict[dg.AssetKey, str | None] = {}
    for record in instance.get_asset_records(list(current)):
        event = record.asset_entry.last_materialization
        materialization = event.asset_materialization if event is not None else None
        if materialization is not None:
            recorded[record.asset_entry.asset_key] = materialization.tags.get(CODE_VERSION_TAG)
    return {key for key, version in current.items() if recorded.get(key) != version}
