"""One writer at a time (issue 13, item 1): runs, sensors, the CLI and readers that meet on one
warehouse wait for each other instead of failing, and an hour whose run failed is asked for
again. Each test says what main did before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from helpers import isolated_home, query
from rich.console import Console

from orchestration.defs.project import HOUR, WAREHOUSE_TAG, WRITES_WAREHOUSE, window_tags
from orchestration.runner import HOST_TAG, PID_TAG, wait_for_writers
from spendwatch.landing import landing_file
from spendwatch.warehouse import WarehouseBusy

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def add_run(instance, status, tags, job_name="hourly_pipeline") -> dg.DagsterRun:
    run = dg.DagsterRun(job_name=job_name, run_id=str(uuid.uuid4()), status=status, tags=tags)
    instance.add_run(run)
    return run


def hold_lock(path: Path, seconds: float, read_only: bool = False) -> subprocess.Popen:
    """Another process (a notebook, a report) holding the warehouse file."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=sys.argv[3] == '1');"
         " print('held', flush=True); time.sleep(float(sys.argv[2]))",
         str(path), str(seconds), "1" if read_only else "0"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    return holder


def event(i: int, hour: datetime) -> str:
    return json.dumps({
        "event_id": f"c-{hour:%d%H}-{i}", "occurred_at": f"{hour:%Y-%m-%dT%H}:{i % 60:02d}:00Z",
        "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 100, "output_tokens": 10,
        "feature": "smart-reply",
    })  # fmt: skip


def test_the_instance_runs_one_warehouse_writer_at_a_time(tmp_path: Path) -> None:
    """Before: dagster.yaml held only `telemetry`, so the schedule, the sensor's several run
    requests and an alert run started together and met on DuckDB's lock."""
    own = tmp_path / "home" / "dagster"
    own.mkdir(parents=True)
    (own / "dagster.yaml").write_text("telemetry:\n  enabled: false\nretention:\n  schedule:\n"
                                      "    purge_after_days: 30\n")  # fmt: skip
    with isolated_home(tmp_path / "home"):
        config = yaml.safe_load((own / "dagster.yaml").read_text())
        instance = dg.DagsterInstance.get()
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert limits == [{"key": WAREHOUSE_TAG, "value": "write", "limit": 1}]
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.run_monitoring_enabled
        assert config["retention"] == {"schedule": {"purge_after_days": 30}}  # the user's key kept

        from orchestration.definitions import defs

        for job in ("hourly_pipeline", "reference_data", "alerts"):
            assert defs.resolve_job_def(job).tags.get(WAREHOUSE_TAG) == "write", job


def test_the_cli_waits_for_a_writing_run_then_refuses_with_one_line(tmp_path: Path) -> None:
    """Before: a hand-run `spendwatch materialize` started while a scheduled run wrote, and one
    of them failed with `IOException: Could not set lock`."""
    with isolated_home(tmp_path / "home"):
        instance = dg.DagsterInstance.get()
        run = add_run(instance, dg.DagsterRunStatus.STARTED, {**WRITES_WAREHOUSE})
        out = StringIO()
        with pytest.raises(WarehouseBusy, match=rf"run {run.run_id[:8]} \(hourly_pipeline\) is "
                           "still writing the warehouse after 1 s"):  # fmt: skip
            wait_for_writers(instance, Console(file=out), wait_seconds=1)
        assert f"waiting for run {run.run_id[:8]} (hourly_pipeline, started)" in out.getvalue()

        def finish() -> None:
            time.sleep(1.5)
            instance.report_run_failed(run, "done for the test")

        threading.Thread(target=finish).start()
        began = time.monotonic()
        wait_for_writers(instance, Console(file=StringIO()), wait_seconds=30)
        assert 1.4 < time.monotonic() - began < 10  # it waited for the run, not for the limit
        # a run that does not write the warehouse is not waited for
        add_run(instance, dg.DagsterRunStatus.STARTED, {"spendwatch/kind": "other"})
        wait_for_writers(instance, Console(file=StringIO()), wait_seconds=0)


def test_a_killed_cli_run_does_not_hold_the_next_one_back(tmp_path: Path) -> None:
    """A CLI run killed mid-way stays STARTED in the instance; the next CLI run marks it failed
    (its process is gone) instead of waiting for it forever."""
    import socket

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with isolated_home(tmp_path / "home"):
        instance = dg.DagsterInstance.get()
        tags = {**WRITES_WAREHOUSE, PID_TAG: str(gone.pid), HOST_TAG: socket.gethostname()}
        dead = add_run(instance, dg.DagsterRunStatus.STARTED, tags)
        alive = add_run(instance, dg.DagsterRunStatus.STARTED,
                        {**tags, PID_TAG: str(os.getpid())})  # fmt: skip
        with pytest.raises(WarehouseBusy, match=alive.run_id[:8]):
            wait_for_writers(instance, Console(file=StringIO()), wait_seconds=0.5)
        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED


def test_the_ingest_waits_for_a_reader_instead_of_failing(tmp_path: Path) -> None:
    """Before: an analyst's read-only connection (or the sensor's peek) made the ingest fail at
    once with `IOException: Could not set lock`; the hour was lost."""
    from orchestration.lib.ingest import load_window

    hour = NOW - timedelta(hours=3)
    landing, warehouse = tmp_path / "landing", tmp_path / "warehouse.duckdb"
    path = landing_file(landing, hour, "app")
    path.parent.mkdir(parents=True)
    path.write_text("".join(event(i, hour) + "\n" for i in range(20)))
    duckdb.connect(str(warehouse)).close()
    holder = hold_lock(warehouse, 2.5, read_only=True)
    try:
        began = time.monotonic()
        result = load_window(warehouse, landing, hour, hour + timedelta(hours=1), now=NOW)
        assert time.monotonic() - began > 1.5
    finally:
        holder.kill()
        holder.wait()
    assert result.loaded == 20
    assert query(warehouse, "select count(*) from raw.llm_calls") == [(20,)]


def test_the_sensor_stays_out_of_a_writing_run_and_asks_again_for_lost_hours(
    tmp_path: Path,
) -> None:
    """Before: a failed run used up its hour for good (the sensor looked only at materialized
    hours, and the schedule never comes back to an hour), and the sensor's read-only peek could
    block the run it raced."""
    from orchestration.defs.resources import SpendwatchHome
    from orchestration.defs.sensors import MAX_ATTEMPTS, late_landing_files

    lost, fresh = NOW - timedelta(hours=5), NOW - timedelta(hours=4)
    with isolated_home(tmp_path / "home") as home:
        for hour in (lost, fresh):
            path = landing_file(home.landing, hour, "app")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(event(1, hour) + "\n")
        recent = landing_file(home.landing, NOW, "app")  # the schedule's turn: not lost yet
        recent.parent.mkdir(parents=True)
        recent.write_text(event(1, NOW) + "\n")
        instance = dg.DagsterInstance.get()
        key = f"{lost:%Y-%m-%d-%H:%M}"
        add_run(instance, dg.DagsterRunStatus.FAILURE, window_tags(lost, lost + HOUR))

        def tick():
            resources = {"spendwatch": SpendwatchHome()}
            context = dg.build_sensor_context(instance=instance, resources=resources)
            return late_landing_files(context)

        requests = tick()
        assert [
            (r.partition_key, r.run_key, r.tags["spendwatch/window_start"]) for r in requests
        ] == [  # fmt: skip
            (f"{lost:%Y-%m-%d}", f"lost:{key}:1", f"{lost:%Y-%m-%d %H:%M}"),  # once more
            (f"{fresh:%Y-%m-%d}", f"lost:{fresh:%Y-%m-%d-%H}:00:0", f"{fresh:%Y-%m-%d %H:%M}"),
        ]
        writing = add_run(instance, dg.DagsterRunStatus.STARTED, {**WRITES_WAREHOUSE})
        skipped = tick()
        assert isinstance(skipped, dg.SkipReason)
        assert f"run {writing.run_id[:8]} is writing the warehouse" in skipped.skip_message
        instance.report_run_failed(writing, "done for the test")
        for _ in range(MAX_ATTEMPTS - 1):
            add_run(instance, dg.DagsterRunStatus.FAILURE, window_tags(lost, lost + HOUR))
        assert [r.tags["spendwatch/window_start"] for r in tick()] == [
            f"{fresh:%Y-%m-%d %H:%M}"]  # gave up on the lost hour  # fmt: skip
