"""Alerting in Dagster: the asset sensor on marts/anomalies, the backlog sensor, the `alerts`
job; one end-to-end pass from landing files through a real pipeline run, the sensor and the
job to the servers on localhost; and no secret anywhere it could leak."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from alert_support import (
    PD_KEY,
    SLACK_PATH,
    SMTP_PASSWORD,
    anomaly,
    build_warehouse,
    channel_env,
    deliveries,
    hours_ago,
    requests_to,
    serve_channels,
)
from werkzeug import Response

from orchestration.defs.alerts import (
    ANOMALIES_ASSET,
    SOURCE_RUN_TAG,
    alert_backlog,
    alerts_on_anomalies,
)
from orchestration.defs.resources import dbt_executable
from orchestration.lib.ingest import load_window

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture
def wired(httpserver, smtp_server, monkeypatch):
    channel_env(monkeypatch, httpserver, smtp_server)
    return httpserver, smtp_server


def test_definitions_wire_the_alerts_job_and_its_sensors(dbt_manifest) -> None:
    from orchestration.definitions import defs

    assert dg.AssetKey(["marts", "anomalies"]) == ANOMALIES_ASSET
    assert ANOMALIES_ASSET in defs.resolve_asset_graph().get_all_asset_keys()
    job = defs.resolve_job_def("alerts")
    assert [n.name for n in job.nodes] == ["deliver_alerts"]
    for name in ("alerts_on_anomalies", "alert_backlog"):
        sensor = defs.resolve_sensor_def(name)
        assert sensor.job_name == "alerts" and sensor.minimum_interval_seconds <= 30
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_sensor_def("alerts_on_anomalies").asset_key == ANOMALIES_ASSET


def test_the_asset_sensor_asks_for_one_run_per_materializing_run(home) -> None:
    instance = dg.DagsterInstance.get()

    @dg.asset(key=ANOMALIES_ASSET)
    def anomalies_stand_in() -> None:  # a run that materializes the key, as the pipeline does
        return None

    with dg.build_sensor_context(instance=instance) as context:
        first = alerts_on_anomalies.evaluate_tick(context)
    assert first.run_requests == [] and "No new materialization" in first.skip_message

    run = dg.materialize([anomalies_stand_in], instance=instance)
    with dg.build_sensor_context(instance=instance, cursor=first.cursor) as context:
        tick = alerts_on_anomalies.evaluate_tick(context)
    (request,) = tick.run_requests
    assert request.run_key == f"anomalies:{run.run_id}"
    assert request.tags[SOURCE_RUN_TAG] == run.run_id
    assert request.job_name in (None, "alerts")
    with dg.build_sensor_context(instance=instance, cursor=tick.cursor) as context:
        again = alerts_on_anomalies.evaluate_tick(context)
    assert again.run_requests == [] and again.skip_message  # cursor moved past it

    second = dg.materialize([anomalies_stand_in], instance=instance)
    with dg.build_sensor_context(instance=instance, cursor=tick.cursor) as context:
        (request,) = alerts_on_anomalies.evaluate_tick(context).run_requests
    assert request.run_key == f"anomalies:{second.run_id}"


def test_the_alerts_job_delivers_and_the_backlog_sensor_finds_retries(home, wired) -> None:
    from orchestration.definitions import defs

    httpserver, mailbox = wired
    answers = iter([Response("internal_error", 500)])
    serve_channels(httpserver, slack=lambda request: next(answers, None) or Response("ok"))
    build_warehouse(home.warehouse, [anomaly(hours_ago(1))])
    instance = dg.DagsterInstance.get()

    def backlog():
        with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
            return alert_backlog.evaluate_tick(context)

    (request,) = backlog().run_requests  # an incident nobody has been told about
    assert request.tags["spendwatch/reason"] == "backlog: 3 new"
    assert SOURCE_RUN_TAG not in request.tags  # no pipeline run has materialized anomalies
    result = defs.resolve_job_def("alerts").execute_in_process(
        instance=instance, tags={SOURCE_RUN_TAG: "pipeline-run-0001"}
    )
    assert result.success
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    meta = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert meta["sent"] == 2 and meta["retry"] == 1 and meta["new_pending"] == 3
    assert len(requests_to(httpserver, "/pd/v2/enqueue")) == 1 and len(mailbox.messages) == 1
    assert "runs/pipeline-run-0001" in str(requests_to(httpserver, "/pd/v2/enqueue"))

    skipped = backlog()  # Slack waits for its backoff: nothing due yet
    assert skipped.run_requests == [] and skipped.skip_message.startswith("no alert due")
    con = duckdb.connect(str(home.warehouse))
    con.execute("update ops.alert_deliveries set next_attempt_at = next_attempt_at - interval 1 "
                "hour where status = 'pending'")  # fmt: skip
    con.close()
    (request,) = backlog().run_requests
    assert request.tags["spendwatch/reason"] == "backlog: 1 retry due"

    instance.create_run_for_job(defs.resolve_job_def("alerts"))  # an alerts run in flight
    assert backlog().skip_message == "alerts in flight; looking again next tick"


def test_a_broken_routing_file_fails_the_job_naming_the_line(home, wired, tmp_path, monkeypatch):
    from orchestration.definitions import defs

    bad = tmp_path / "alerting.yml"
    bad.write_text("routes:\n  - match: {severity: critical}\n    channels: [slack, pager]\n")
    monkeypatch.setenv("SPENDWATCH_ALERT_ROUTING", str(bad))
    build_warehouse(home.warehouse, [anomaly(hours_ago(1))])
    result = defs.resolve_job_def("alerts").execute_in_process(
        instance=dg.DagsterInstance.get(), raise_on_error=False
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert f"{bad}:3: routes.0.channels: unknown channel 'pager'" in str(
        failure.event_specific_data.error
    )


def test_no_secret_in_output_logs_dagster_events_or_tables(home, wired) -> None:
    """Servers that echo what they were sent back in their errors, a Dagster run, the CLI:
    the webhook URL, the routing key and the SMTP password appear nowhere."""
    from orchestration.definitions import defs

    httpserver, mailbox = wired
    slack_url = os.environ["SPENDWATCH_SLACK_WEBHOOK_URL"]

    def echoing_slack(request):  # a proxy that quotes the URL it failed to reach
        return Response(f"upstream error for {request.url}", 502)

    httpserver.expect_request(SLACK_PATH).respond_with_handler(echoing_slack)
    httpserver.expect_request("/pd/v2/enqueue").respond_with_json(
        {"status": "invalid event", "errors": [f"bad routing_key {PD_KEY}"]}, status=400
    )
    build_warehouse(home.warehouse, [anomaly(hours_ago(1)),
                                     anomaly(hours_ago(1), feature="rag-search")])  # fmt: skip
    cli = [sys.executable, "-m", "spendwatch.cli", "alerts"]
    outputs = [
        subprocess.run([*cli, *args], cwd=REPO, capture_output=True, text=True)
        for args in (["send"], ["list"], ["test"], ["send", "--dry-run"])
    ]
    result = defs.resolve_job_def("alerts").execute_in_process(
        instance=dg.DagsterInstance.get(), raise_on_error=False
    )
    assert len(mailbox.messages) == 3  # two alerts and the test message; SMTP login each time
    rows = deliveries(home.warehouse)
    assert any("[redacted]" in (r["last_error"] or "") for r in rows if r["channel"] == "slack")
    assert any("[redacted]" in (r["last_error"] or "") for r in rows if r["channel"] == "pagerduty")

    secrets = [slack_url, SLACK_PATH, SLACK_PATH.rsplit("/", 1)[1], PD_KEY, SMTP_PASSWORD]
    haystacks: dict[str, str] = {}
    for i, out in enumerate(outputs):
        haystacks[f"cli {out.args[-1]} #{i} stdout"] = out.stdout
        haystacks[f"cli {out.args[-1]} #{i} stderr"] = out.stderr
    instance = dg.DagsterInstance.get()
    for i, entry in enumerate(instance.all_logs(result.run_id)):
        haystacks[f"dagster event {i}"] = repr(entry)  # message, metadata, error text
    run = instance.get_run_by_id(result.run_id)
    haystacks["dagster run"] = repr(run)
    for path in home.home.rglob("*"):
        if path.is_file() and not path.name.startswith("warehouse.duckdb"):
            haystacks[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
    con = duckdb.connect(str(home.warehouse), read_only=True)
    for schema, table in con.execute(
        "select table_schema, table_name from information_schema.tables"
    ).fetchall():
        rows_text = con.execute(f"select * from {schema}.{table}").fetchall()
        haystacks[f"table {schema}.{table}"] = repr(rows_text)
    con.close()
    assert len([k for k in haystacks if k.startswith("table ops.")]) == 2
    assert len([k for k in haystacks if k.startswith("dagster event")]) > 5
    leaks = [(where, s) for where, text in haystacks.items() for s in secrets if s in text]
    assert leaks == []


@pytest.mark.slow
def test_end_to_end_pipeline_run_sensor_job_channels(tmp_path, dbt_manifest, wired) -> None:
    """Landing files with a fallback to an expensive model in the last hours → history built
    once, then the hour that just ended materialized by a real `hourly_pipeline` run → the
    asset sensor → the alerts job → Slack, PagerDuty and email on localhost."""
    from helpers import isolated_home

    from spendwatch.generator import generate, load_incidents

    httpserver, mailbox = wired
    serve_channels(httpserver)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    last = end - timedelta(hours=1)
    start = end - timedelta(days=1)
    spec = tmp_path / "incidents.json"
    # smart-reply has the most traffic: enough fallback calls even on a Sunday night
    spec.write_text(json.dumps([{"type": "model_fallback", "feature": "smart-reply",
                                 "start": (end - timedelta(hours=2)).isoformat(), "hours": 2,
                                 "params": {"share": 0.7}}]))  # fmt: skip
    with isolated_home(tmp_path / "home") as p:
        generate(p.landing, start, 1, 20_000, 5, load_incidents(str(spec), start, 1))
        load_window(p.warehouse, p.landing, start, last, now=end)  # the history, without Dagster
        window = {"start_hour": f"{start:%Y-%m-%d %H:%M:%S}",
                  "end_hour": f"{last:%Y-%m-%d %H:%M:%S}"}  # fmt: skip
        proc = subprocess.run(
            [dbt_executable(), "build", "--exclude", "resource_type:unit_test", "--vars",
             json.dumps(window), "--target-path", str(tmp_path / "target"), "--log-path",
             str(tmp_path / "logs")],
            cwd=REPO, env={**os.environ, "DBT_PROFILES_DIR": str(REPO)}, capture_output=True,
            text=True,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:]

        from orchestration.definitions import defs

        instance = dg.DagsterInstance.get()
        with dg.build_sensor_context(instance=instance) as context:
            cursor = alerts_on_anomalies.evaluate_tick(context).cursor
        from orchestration.defs.jobs import EVERY_RUN
        from orchestration.defs.project import window_tags

        pipeline = defs.resolve_job_def("hourly_pipeline").execute_in_process(
            instance=instance, partition_key=f"{last:%Y-%m-%d}",
            tags=window_tags(last, last + timedelta(hours=1)), asset_selection=sorted(EVERY_RUN),
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )  # fmt: skip
        assert pipeline.success
        with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
            (request,) = alerts_on_anomalies.evaluate_tick(context).run_requests
        assert request.run_key == f"anomalies:{pipeline.run_id}"
        with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
            (backlog,) = alert_backlog.evaluate_tick(context).run_requests  # the same work
        assert backlog.tags[SOURCE_RUN_TAG] == pipeline.run_id
        alerts = defs.resolve_job_def("alerts").execute_in_process(
            instance=instance, tags=request.tags
        )
        assert alerts.success

        fresh = (
            duckdb.connect(str(p.warehouse), read_only=True)
            .execute(
                "select incident_key, max(severity), any_value(detector), any_value(feature) "
                "from marts.anomalies where hour_at >= ? group by 1",
                [(end - timedelta(hours=6)).replace(tzinfo=None)],
            )
            .fetchall()
        )
        assert ("model_drift", "smart-reply") in {(r[2], r[3]) for r in fresh}
        critical = [r for r in fresh if r[1] == "critical"]
        slack = requests_to(httpserver, SLACK_PATH)
        pages = requests_to(httpserver, "/pd/v2/enqueue")
        assert len(slack) == len(fresh)
        assert sorted(e["dedup_key"] for e in pages) == sorted(
            f"spendwatch-{r[0]}" for r in critical
        )
        assert len(mailbox.messages) == len(critical) >= 1
        drift = next(b for b in slack if "model_drift · smart-reply/production" in str(b))
        assert "claude-3-opus" in drift["blocks"][1]["text"]["text"]
        assert f"runs/{pipeline.run_id}" in str(drift)  # the run that found it
        assert {r["status"] for r in deliveries(p.warehouse) if r["last_hour_at"] >= (
            end - timedelta(hours=6)).replace(tzinfo=None)} == {"sent"}  # fmt: skip
