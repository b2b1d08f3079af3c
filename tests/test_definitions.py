"""The Dagster code location loads and is wired as the design says."""

from __future__ import annotations

import dagster as dg

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
    assert fct.backfill_policy == dg.BackfillPolicy.single_run()
    assert graph.get(INGEST_ASSET).backfill_policy == dg.BackfillPolicy.single_run()


def test_hourly_schedule_targets_the_last_complete_hour(dbt_manifest) -> None:
    from orchestration.definitions import defs

    schedule = defs.resolve_schedule_def("hourly_pipeline_schedule")
    assert schedule.cron_schedule == "5 * * * *"
    assert schedule.job_name == "hourly_pipeline"
    context = dg.build_schedule_context(
        scheduled_execution_time=__import__("datetime").datetime(
            2026, 11, 26, 15, 5, tzinfo=__import__("datetime").UTC
        )
    )
    (request,) = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-11-26-14:00"


def test_dbt_checks_surface_as_asset_checks(dbt_manifest) -> None:
    from orchestration.definitions import defs

    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert "unique_fct_llm_calls_event_id" in checks
    assert {"lines_reconcile", "telemetry_completeness", "priced_share"} <= checks
