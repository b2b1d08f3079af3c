"""The Dagster code location loads and is wired as the design says."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from orchestration.defs.assets.dbt import INGEST_ASSET


def test_definitions_load_and_lineage_is_one_graph(dbt_manifest) -> None:
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw_llm_calls", "marts/fct_llm_calls", "marts/agg_hourly_feature_cost",
            "marts/agg_hourly_model_cost", "seeds/model_prices"} <= keys  # fmt: skip
    stg = graph.get(dg.AssetKey(["staging", "stg_raw__llm_calls"]))
    assert INGEST_ASSET in stg.parent_keys  # the dbt source is the ingest asset
    fct = graph.get(dg.AssetKey(["marts", "fct_llm_calls"]))
    assert fct.partitions_def == graph.get(INGEST_ASSET).partitions_def
    assert (
        INGEST_ASSET in fct.parent_keys
    )  # through its views: ordered even when they are not built
    assert stg.partitions_def is None  # a view stores no hours
    checks = graph.get(dg.AssetKey(["ops", "check_results"]))
    assert dg.AssetKey(["marts", "agg_hourly_model_cost"]) in checks.parent_keys
    assert checks.key in graph.get(dg.AssetKey(["marts", "fct_check_results"])).parent_keys
    assert fct.backfill_policy == dg.BackfillPolicy.single_run()
    assert graph.get(INGEST_ASSET).backfill_policy == dg.BackfillPolicy.single_run()
    # the reconciliation: a day-partitioned mart of the tables, downstream of the imported
    # reports (written by `spendwatch reconcile import`, so external to Dagster) and the calls
    reconciliation = graph.get(dg.AssetKey(["marts", "cost_reconciliation"]))
    reports = graph.get(dg.AssetKey(["provider_reports", "provider_costs"]))
    assert reports.key in reconciliation.parent_keys and not reports.is_materializable
    assert fct.key in reconciliation.parent_keys
    assert reconciliation.partitions_def == fct.partitions_def
    drift = graph.get(dg.AssetKey(["intermediate", "int_anomalies__invoice_drift"]))
    assert reconciliation.key in drift.parent_keys
    assert drift.key in graph.get(dg.AssetKey(["marts", "anomalies"])).parent_keys


def test_hourly_schedule_targets_the_last_complete_hour(dbt_manifest, tmp_path) -> None:
    from orchestration.definitions import defs
    from orchestration.defs.jobs import EVERY_RUN
    from orchestration.defs.resources import SpendwatchHome

    schedule = defs.resolve_schedule_def("hourly_pipeline_schedule")
    assert schedule.cron_schedule == "5 * * * *"
    assert schedule.job_name == "hourly_pipeline"
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2026, 11, 26, 15, 5, tzinfo=UTC),
            resources={"spendwatch": SpendwatchHome(home=str(tmp_path))},
            repository_def=defs.get_repository_def(),
        )
        (request,) = schedule.evaluate_tick(context).run_requests
    # the day's partition, narrowed to the hour that just ended
    assert request.partition_key == "2026-11-26"
    assert request.tags["spendwatch/window_start"] == "2026-11-26 14:00"
    assert request.tags["spendwatch/window_end"] == "2026-11-26 15:00"
    # nothing built yet: the seeds and views come along; afterwards only what stores hours
    assert set(request.asset_selection) > EVERY_RUN


def test_a_run_window_must_lie_inside_its_partitions() -> None:
    from orchestration.defs.project import PARTITIONS, run_window

    day = PARTITIONS.time_window_for_partition_key("2026-11-26")
    hour = {
        "spendwatch/window_start": "2026-11-26 14:00",
        "spendwatch/window_end": "2026-11-26 15:00",
    }
    assert run_window(hour, day) == (datetime(2026, 11, 26, 14, tzinfo=UTC),
                                     datetime(2026, 11, 26, 15, tzinfo=UTC))  # fmt: skip
    assert run_window({}, day) == (day.start, day.end)
    with pytest.raises(ValueError, match="outside the run's partitions"):
        run_window({**hour, "spendwatch/window_end": "2026-11-27 01:00"}, day)
    with pytest.raises(ValueError, match="not an hour"):
        run_window({**hour, "spendwatch/window_start": "yesterday"}, day)
    with pytest.raises(ValueError, match="both"):
        run_window({"spendwatch/window_start": "2026-11-26 14:00"}, day)


def test_views_rebuild_when_a_macro_they_use_changes() -> None:
    """A view's code version covers the macros it expands (transitively), not only its file."""
    from orchestration.defs.assets.dbt import view_version

    def manifest(macro_sql: str) -> dict:
        outer = {"macro_sql": "{{ inner() }}", "depends_on": {"macros": ["macro.p.inner"]}}
        inner = {"macro_sql": macro_sql, "depends_on": {"macros": []}}
        return {"macros": {"macro.p.outer": outer, "macro.p.inner": inner}}

    view = {"raw_code": "select {{ outer() }}", "depends_on": {"macros": ["macro.p.outer"]}}
    assert view_version(manifest("1"), view) == view_version(manifest("1"), view)
    assert view_version(manifest("1"), view) != view_version(manifest("2"), view)


def test_dbt_checks_surface_as_asset_checks(dbt_manifest) -> None:
    from orchestration.definitions import defs

    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert "unique_fct_llm_calls_event_id" in checks
    assert {"lines_reconcile", "telemetry_completeness", "priced_share"} <= checks


def test_the_dbt_resource_drops_only_what_spendwatch_does_not_use(dbt_manifest, tmp_path) -> None:
    """DbtCli skips dagster-dbt's in-process adapter and its `dbt --version` subprocess. This
    fails when a dagster-dbt upgrade stops calling the two methods it overrides (the seconds
    would silently come back, or the override would skip something else), or when the version it
    reports is not that of the dbt it runs."""
    import inspect

    from dagster_dbt import DbtCliResource
    from packaging.version import Version

    from orchestration.defs.resources import DbtCli, build_resources

    cli_source = inspect.getsource(DbtCliResource.cli)
    assert "self._initialize_dbt_core_adapter(args)" in cli_source
    assert "self._cli_version" in cli_source
    dbt = build_resources()["dbt"]
    assert isinstance(dbt, DbtCli)
    assert dbt._initialize_dbt_core_adapter(["build"]) is None
    asked = DbtCliResource(project_dir=dbt.project_dir, dbt_executable=dbt.dbt_executable)
    assert dbt._cli_version == asked._cli_version  # what `dbt --version` of that executable says
    assert dbt._cli_version.major == 1
    # another executable than the one beside this Python is still asked
    other_dbt = tmp_path / "dbt"
    other_dbt.write_text("#!/bin/sh\necho 'Core:'; echo '  - installed: 2.0.7'\n")
    other_dbt.chmod(0o755)
    other = DbtCli(project_dir=dbt.project_dir, dbt_executable=str(other_dbt))
    assert other._cli_version == Version("2.0.7")
