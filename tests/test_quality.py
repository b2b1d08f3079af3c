"""Telemetry you can trust: GX suites as asset checks, failures as data_quality anomalies,
late files picked up by the sensor."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from helpers import isolated_home, query

from orchestration.defs.resources import SpendwatchHome
from orchestration.lib.ingest import load_window
from orchestration.lib.quality import run_raw_suites, validate
from orchestration.runner import materialize_range
from spendwatch.landing import hour_dir

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
START = NOW - timedelta(hours=6)


def event(i: int, hour: datetime, **change) -> str:
    data = {
        "event_id": f"e-{hour:%d%H}-{i}",
        "occurred_at": f"{hour:%Y-%m-%dT%H}:{i % 60:02d}:00Z",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 1000 + i,
        "output_tokens": 100,
        "feature": "smart-reply",
    }
    data.update(change)
    return json.dumps(data)


def write(landing: Path, hour: datetime, name: str, lines: list[str]) -> Path:
    folder = hour_dir(landing, hour)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_hours_suite_reports_levels_values_and_hours() -> None:
    hours = [datetime(2026, 1, 1, h) for h in range(4)]
    frame = pd.DataFrame({
        "partition_hour": hours,
        "files": [1, 0, 2, 1], "rejected_share": [0.0, 0.0, 0.25, 0.0],
        "lag_minutes": [1, 61, 2, 180], "loaded_vs_usual": [1.1, None, 0.9, 0.1],
        "broken_files": [0, 0, 0, 0], "missing_files": [0, 0, 0, 0],
    })  # fmt: skip
    outcome = validate("raw_load_hours", "raw_llm_calls", frame, "partition_hour")
    assert not outcome.passed
    failed = {o.check_name: o for o in outcome.failed}
    assert set(failed) == {"hours_contiguous", "rejected_share", "freshness", "volume_vs_usual"}
    assert failed["hours_contiguous"].failing_hours == [hours[1]]
    assert failed["rejected_share"].failing_hours == [hours[2]]
    assert failed["rejected_share"].values_by_hour == {hours[2]: [0.25]}
    assert failed["freshness"].failing_hours == [hours[3]]  # 61 minutes is not stale yet
    assert failed["volume_vs_usual"].failing_hours == [hours[3]]  # no usual yet: not judged
    assert {n: o.severity for n, o in failed.items()} == {
        "hours_contiguous": "error", "rejected_share": "error",
        "freshness": "warn", "volume_vs_usual": "warn"}  # fmt: skip
    meta = outcome.metadata()
    assert (meta["failed_error_level"], meta["failed_warn_level"]) == (2, 2)
    json.dumps(meta)  # metadata must be plain JSON


def test_hours_frame_measures_staleness_and_the_usual_volume(tmp_path: Path) -> None:
    """Four weeks of the same hour at 50 lines; then a writer that keeps rotating empty files:
    the hour two before the checked one has 5 events, the next two hours empty files only."""
    import duckdb

    from orchestration.lib.quality import hours_frame

    landing, warehouse = tmp_path / "landing", tmp_path / "warehouse.duckdb"
    target = START.replace(tzinfo=None) - timedelta(days=1)
    for week in (4, 3, 2, 1):
        hour = target - timedelta(weeks=week)
        write(landing, hour, "app.jsonl", [event(i, hour) for i in range(50)])
    write(landing, target - timedelta(hours=2), "app.jsonl",
          [event(i, target - timedelta(hours=2)) for i in range(5)])  # fmt: skip
    for hour in (target - timedelta(hours=1), target):
        write(landing, hour, "app.jsonl", [])
    load_window(warehouse, landing, target - timedelta(weeks=4), target + timedelta(hours=1),
                now=NOW)  # fmt: skip
    con = duckdb.connect(str(warehouse))
    try:
        frame = hours_frame(con, target, target + timedelta(hours=1))
    finally:
        con.close()
    (row,) = frame.to_dict("records")
    assert (row["files"], row["loaded"], row["rejected_share"]) == (1, 0, 0.0)
    assert row["loaded_vs_usual"] == 0.0  # against the median of 50 of four earlier weeks
    assert row["lag_minutes"] == 3 * 60 - 4  # the newest event: two hours before, minute 4
    outcome = validate("raw_load_hours", "raw_llm_calls", frame, "partition_hour")
    assert {o.check_name for o in outcome.failed} == {"freshness", "volume_vs_usual"}
    assert outcome.passed  # both are warnings: recorded and shown, not alerted


def test_gaps_and_rejects_fail_the_hours_suite(tmp_path: Path) -> None:
    landing, warehouse = tmp_path / "landing", tmp_path / "warehouse.duckdb"
    h0, h1, h2 = START, START + timedelta(hours=1), START + timedelta(hours=2)
    write(landing, h0, "app.jsonl", [event(i, h0) for i in range(50)])
    # h1: no file at all (a blind spot); h2: 3 of 53 lines broken (5.7 % rejected)
    write(landing, h2, "app.jsonl", [event(i, h2) for i in range(50)] + ["{oops"] * 3)
    load_window(warehouse, landing, h0, h2 + timedelta(hours=1), now=NOW)
    outcomes = {o.suite: o for o in run_raw_suites(warehouse, h0, h2 + timedelta(hours=1), NOW)}
    assert set(outcomes) == {"raw_load_hours"}  # the rules of single lines are the ingest's
    hours_suite = outcomes["raw_load_hours"]
    failed = {o.check_name: o for o in hours_suite.failed}
    assert failed["hours_contiguous"].failing_hours == [h1.replace(tzinfo=None)]
    assert failed["rejected_share"].failing_hours == [h2.replace(tzinfo=None)]
    rows = query(warehouse, """select check_name, partition_hour, passed, unexpected_count
        from ops.check_results where suite = 'raw_load_hours'
            and check_name in ('hours_contiguous', 'rejected_share') order by 1, 2""")  # fmt: skip
    assert [(r[0], r[2]) for r in rows] == [
        ("hours_contiguous", True), ("hours_contiguous", False), ("hours_contiguous", True),
        ("rejected_share", True), ("rejected_share", True), ("rejected_share", False),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def loaded_home(tmp_path_factory: pytest.TempPathFactory, dbt_manifest):
    """Three recent hours materialized: a gap in the middle one, unpriced calls in the last.
    Shared by the module's tests, in file order: the late-file test comes last and adds to it."""
    with isolated_home(tmp_path_factory.mktemp("quality") / "home") as home:
        h0, h2 = START, START + timedelta(hours=2)  # nothing lands in the hour between
        write(home.landing, h0, "app.jsonl", [event(i, h0) for i in range(40)])
        unknown_model = [event(i, h2, model="gpt-9") for i in range(30, 40)]
        write(home.landing, h2, "app.jsonl", [event(i, h2) for i in range(30)] + unknown_model)
        assert materialize_range(home, h0, h2 + timedelta(hours=1)).success
        yield home


def test_failed_checks_show_on_the_assets_and_become_anomalies(loaded_home) -> None:
    instance = dg.DagsterInstance.get()
    (run,) = instance.get_runs(dg.RunsFilter(job_name="hourly_pipeline"))
    evaluations = {
        e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data
        for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    }
    hours = evaluations["telemetry_completeness"]
    assert not hours.passed and hours.severity == dg.AssetCheckSeverity.ERROR
    failures = hours.metadata["failures"].value
    assert failures[0]["check"] == "hours_contiguous"
    assert failures[0]["failing_hours"] == [f"{START + timedelta(hours=1):%Y-%m-%d %H:00}"]
    priced = evaluations["priced_share"]
    assert not priced.passed and priced.metadata["level"].value == "error"
    found = query(loaded_home.warehouse, """select hour_at, metric, message from marts.anomalies
        where detector = 'data_quality' order by hour_at, metric""")  # fmt: skip
    assert [(r[0], r[1]) for r in found] == [
        ((START + timedelta(hours=1)).replace(tzinfo=None), "raw_load_hours:hours_contiguous"),
        ((START + timedelta(hours=2)).replace(tzinfo=None), "fct_llm_calls:priced_share"),
    ]
    assert "observed 0.75" in found[1][2]


def test_late_file_is_picked_up_by_the_sensor(loaded_home) -> None:
    from orchestration.defs.sensors import late_landing_files

    def tick():
        context = dg.build_sensor_context(
            instance=dg.DagsterInstance.get(), resources={"spendwatch": SpendwatchHome()}
        )
        return late_landing_files(context)

    assert isinstance(tick(), dg.SkipReason)
    late_hour = START + timedelta(hours=1)
    write(loaded_home.landing, late_hour, "late.jsonl", [event(i, late_hour) for i in range(7)])
    requests = tick()
    assert [(r.partition_key, r.tags["spendwatch/window_start"]) for r in requests] == [
        (f"{late_hour:%Y-%m-%d}", f"{late_hour:%Y-%m-%d %H:%M}")
    ]  # the day, narrowed to the hour
    assert requests[0].run_key == tick()[0].run_key  # the same late file never runs twice
    assert materialize_range(loaded_home, late_hour, late_hour + timedelta(hours=1)).success
    calls = query(
        loaded_home.warehouse,
        "select calls from marts.agg_hourly_feature_cost where feature = 'smart-reply' "
        f"and hour_at = '{late_hour.replace(tzinfo=None)}'",
    )
    assert calls == [(7,)]
    assert isinstance(tick(), dg.SkipReason)
    gaps = query(loaded_home.warehouse, "select count(*) from marts.anomalies "
                 "where metric = 'raw_load_hours:hours_contiguous'")  # fmt: skip
    assert gaps == [(0,)]  # the hour is complete now: its data_quality anomaly is gone
