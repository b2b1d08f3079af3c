"""Metric exports: the hourly mart figures pushed to Datadog (a recording HTTP server on
localhost) and CloudWatch (moto's server mode on localhost, read back with GetMetricData), the
export log `ops.metric_exports`, retries of failed hours, the CLI and the Dagster asset."""

from __future__ import annotations

import json
import logging
import socket
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from werkzeug import Response

from orchestration.lib.exports.figures import LOOKBACK
from orchestration.lib.exports.run import export_metrics
from orchestration.lib.exports.sinks import (
    DATADOG_MAX_COMPRESSED,
    CloudWatchSink,
    DatadogSink,
)
from spendwatch.cli import main
from spendwatch.config import export_settings

DD_KEY = "sekrit-dd-api-key-4e91c0ffee"
SERIES_PATH = "/api/v2/series"
NAMESPACE = "LLM/Spend"
AWS_SECRET = "sekrit-aws-secret-9d0b"

MART_DDL = """
create schema if not exists marts;
create table marts.agg_hourly_feature_model_cost (
    hour_at timestamp, feature varchar, environment varchar, provider varchar, model varchar,
    calls bigint, priced_calls bigint, unpriced_calls bigint, error_calls bigint,
    retry_calls bigint, cache_hit_calls bigint, input_tokens bigint, output_tokens bigint,
    cache_read_tokens bigint, cache_write_tokens bigint, reasoning_tokens bigint,
    total_tokens bigint, cost_usd decimal(38, 15), cache_savings_usd decimal(38, 15),
    cost_per_call_usd decimal(38, 15), cache_hit_rate double, cache_read_share double,
    retry_rate double, error_rate double, share_of_feature_calls double,
    share_of_feature_cost double
);
"""

SERIES = [  # (feature, environment, provider, model)
    ("smart-reply", "production", "openai", "gpt-4o-mini"),
    ("rag-search", "staging", "anthropic", "claude-3-5-sonnet-20241022"),
]


def current_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)


def mart_row(hour_at: datetime, series: int, k: int) -> dict:
    """One mart row with figures that differ per hour (k) and series; the second series has no
    priced call (cost per call is null: nothing to send for it)."""
    feature, environment, provider, model = SERIES[series]
    calls = 100 * k + 7 * series + 3
    priced = 0 if series == 1 else calls
    cost = Decimal(f"{1.25 * k + 0.5 * series:.6f}")
    return {
        "hour_at": hour_at, "feature": feature, "environment": environment,
        "provider": provider, "model": model, "calls": calls, "priced_calls": priced,
        "unpriced_calls": calls - priced, "error_calls": 0, "retry_calls": 0,
        "cache_hit_calls": calls // 4, "input_tokens": 1000 * calls,
        "output_tokens": 200 * calls, "cache_read_tokens": 300 * calls,
        "cache_write_tokens": 50 * k, "reasoning_tokens": 0, "total_tokens": 1200 * calls,
        "cost_usd": cost, "cache_savings_usd": Decimal("0.1"),
        "cost_per_call_usd": (cost / priced) if priced else None,
        "cache_hit_rate": (calls // 4) / calls, "cache_read_share": 0.3, "retry_rate": 0.0,
        "error_rate": 0.0, "share_of_feature_calls": 1.0, "share_of_feature_cost": 1.0,
    }  # fmt: skip


def build_mart(path: Path, hours: list[datetime]) -> list[dict]:
    rows = [mart_row(h, s, k) for k, h in enumerate(hours, start=1) for s in range(len(SERIES))]
    con = duckdb.connect(str(path))
    try:
        con.execute(MART_DDL)
        names = list(rows[0])
        con.executemany(
            f"insert into marts.agg_hourly_feature_model_cost ({', '.join(names)}) "
            f"values ({', '.join('?' * len(names))})",
            [[r[n] for n in names] for r in rows],
        )
    finally:
        con.close()
    return rows


def expected_points(rows: list[dict]) -> set[tuple]:
    """(metric, timestamp, value, sorted tags) for every figure of these mart rows — written
    out here from the mart columns, independently of the export's SQL."""
    out = set()
    for r in rows:
        tags = [f"feature:{r['feature']}", f"model:{r['model']}", f"provider:{r['provider']}",
                f"environment:{r['environment']}", f"env:{r['environment']}"]  # fmt: skip
        ts = int(r["hour_at"].replace(tzinfo=UTC).timestamp())
        figures = [
            ("llm.calls", None, r["calls"]),
            ("llm.tokens", "input", r["input_tokens"]),
            ("llm.tokens", "output", r["output_tokens"]),
            ("llm.tokens", "cache_read", r["cache_read_tokens"]),
            ("llm.tokens", "cache_write", r["cache_write_tokens"]),
            ("llm.cost_usd", None, r["cost_usd"]),
            ("llm.cost_per_call_usd", None, r["cost_per_call_usd"]),
            ("llm.cache_hit_rate", None, r["cache_hit_rate"]),
        ]
        for metric, token_type, value in figures:
            if value is None:
                continue
            extra = [f"token_type:{token_type}"] if token_type else []
            out.add((metric, ts, round(float(value), 9), tuple(sorted(tags + extra))))
    return out


def sent_points(bodies: list[dict]) -> list[tuple]:
    points = []
    for body in bodies:
        for s in body["series"]:
            assert s["type"] == 3  # gauge
            (p,) = s["points"]
            points.append((s["metric"], p["timestamp"], round(p["value"], 9),
                           tuple(sorted(s["tags"]))))  # fmt: skip
    return points


def datadog_bodies(httpserver) -> list[dict]:
    return [
        json.loads(zlib.decompress(req.get_data()))
        for req, _ in httpserver.log
        if req.path == SERIES_PATH
    ]


def exports(path: Path) -> dict[tuple[datetime, str], dict]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        cur = con.execute("from ops.metric_exports order by hour_at, destination")
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()
    return {(r["hour_at"], r["destination"]): r for r in rows}


def exports_path_absent(path: Path) -> bool:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return not con.execute("select count(*) from information_schema.tables "
                               "where table_name = 'metric_exports'").fetchone()[0]  # fmt: skip
    finally:
        con.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def clean_env(monkeypatch) -> pytest.MonkeyPatch:
    for name in ("SPENDWATCH_DATADOG_API_KEY", "SPENDWATCH_DATADOG_URL",
                 "SPENDWATCH_CLOUDWATCH_NAMESPACE", "SPENDWATCH_CLOUDWATCH_ENDPOINT_URL",
                 "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION",
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPENDWATCH_WAREHOUSE_WAIT_SECONDS", "30")
    return monkeypatch


@pytest.fixture
def datadog(httpserver, clean_env):
    clean_env.setenv("SPENDWATCH_DATADOG_API_KEY", DD_KEY)
    clean_env.setenv("SPENDWATCH_DATADOG_URL", httpserver.url_for("/").rstrip("/"))
    return httpserver


def accept(httpserver) -> None:
    httpserver.expect_request(SERIES_PATH, method="POST").respond_with_json(
        {"errors": []}, status=202
    )


NOW = datetime(2026, 11, 27, 15, 20, tzinfo=UTC)
HOURS = [datetime(2026, 11, 27, 12), datetime(2026, 11, 27, 13), datetime(2026, 11, 27, 14)]
RUNNING = datetime(2026, 11, 27, 15)  # the hour still running at NOW: never exported
OLD = datetime(2026, 11, 19, 10)  # 8 days before NOW: outside the look-back


# --- Datadog ------------------------------------------------------------------------------------


def test_datadog_gets_gauges_at_the_hour_start_with_tags_and_the_key_only_as_header(
    home, datadog, caplog
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore at their most talkative
    accept(datadog)
    rows = build_mart(home.warehouse, [OLD, *HOURS, RUNNING])
    report = export_metrics(home.warehouse, "datadog", export_settings(), now=NOW)

    (request, _), *more = datadog.log
    assert more == []  # 3 hours × 2 series fit one payload
    assert request.headers["DD-API-KEY"] == DD_KEY
    assert request.headers["Content-Encoding"] == "deflate"
    assert request.headers["Content-Type"] == "application/json"
    sent = sent_points(datadog_bodies(datadog))
    due = [r for r in rows if r["hour_at"] in HOURS]
    assert len(sent) == len(set(sent)) == 3 * (8 + 7)  # the unpriced series has no cost per call
    assert set(sent) == expected_points(due)
    assert {p[1] for p in sent} == {int(h.replace(tzinfo=UTC).timestamp()) for h in HOURS}
    assert {p[0] for p in sent} == {"llm.calls", "llm.tokens", "llm.cost_usd",
                                    "llm.cost_per_call_usd", "llm.cache_hit_rate"}  # fmt: skip

    log = exports(home.warehouse)
    assert sorted(log) == [(h, "datadog") for h in HOURS]
    for row in log.values():
        assert row["status"] == "sent" and row["error"] is None and row["attempts"] == 1
        assert row["points"] == row["points_sent"] == 15
        assert row["target"] == datadog.url_for(SERIES_PATH)
    assert report.ok and report.points_sent == 45 and report.count("sent") == 3

    # a second run finds nothing due and sends nothing
    again = export_metrics(home.warehouse, "datadog", export_settings(), now=NOW)
    assert again.outcomes == [] and len(datadog.log) == 1
    # re-exporting the range sends the same points at the same timestamps (a gauge replaces)
    export_metrics(home.warehouse, "datadog", export_settings(), now=NOW,
                   start=HOURS[0], end=RUNNING)  # fmt: skip
    assert len(datadog.log) == 2
    assert sorted(sent_points(datadog_bodies(datadog)[1:])) == sorted(sent)
    assert {r["attempts"] for r in exports(home.warehouse).values()} == {2}

    assert DD_KEY not in caplog.text and len(caplog.records) > 3
    assert DD_KEY not in repr(exports(home.warehouse))


def test_a_changed_hour_is_sent_again(home, datadog) -> None:
    accept(datadog)
    build_mart(home.warehouse, HOURS)
    export_metrics(home.warehouse, "datadog", export_settings(), now=NOW)
    con = duckdb.connect(str(home.warehouse))  # a late file: the pipeline rebuilt 13:00
    con.execute("update marts.agg_hourly_feature_model_cost set calls = calls + 1 "
                "where hour_at = ? and feature = 'smart-reply'", [HOURS[1]])  # fmt: skip
    con.close()
    report = export_metrics(home.warehouse, "datadog", export_settings(), now=NOW)
    assert [o.hour_at for o in report.outcomes] == [HOURS[1]]
    (body,) = datadog_bodies(datadog)[1:]
    calls = {tuple(s["tags"]): s["points"][0]["value"] for s in body["series"]
             if s["metric"] == "llm.calls"}  # fmt: skip
    assert calls[("feature:smart-reply", "model:gpt-4o-mini", "provider:openai",
                  "environment:production", "env:production")] == 204  # fmt: skip


def test_payloads_stay_within_the_limits_and_a_refused_batch_is_retried(home, datadog) -> None:
    answers = iter([202, 400])

    def intake(request):
        status = next(answers, 202)
        if status == 400:  # an intake that quotes the key it was given
            return Response(json.dumps({"errors": [f"Invalid payload for key {DD_KEY}"]}), 400)
        return Response(json.dumps({"errors": []}), status, content_type="application/json")

    datadog.expect_request(SERIES_PATH, method="POST").respond_with_handler(intake)
    rows = build_mart(home.warehouse, HOURS)
    limit = 3000
    sink = DatadogSink(DD_KEY, datadog.url_for("/").rstrip("/"), max_decompressed=limit)
    export_metrics(home.warehouse, "datadog", export_settings(), now=NOW, sink=sink)

    bodies = [req.get_data() for req, _ in datadog.log]
    assert len(bodies) >= 4
    for body in bodies:
        assert len(zlib.decompress(body)) <= limit and len(body) <= DATADOG_MAX_COMPRESSED
    refused = sent_points([json.loads(zlib.decompress(bodies[1]))])
    refused_hours = {datetime.fromtimestamp(p[1], UTC).replace(tzinfo=None) for p in refused}
    assert refused and refused_hours < set(HOURS)
    log = exports(home.warehouse)
    for hour_at in HOURS:
        row = log[(hour_at, "datadog")]
        in_refused = sum(
            1 for p in refused if datetime.fromtimestamp(p[1], UTC).replace(tzinfo=None) == hour_at
        )
        if hour_at in refused_hours:  # fmt: skip
            assert row["status"] in ("failed", "partial")
            assert row["points_sent"] == row["points"] - in_refused
            quoted = '{"errors": ["Invalid payload for key [redacted]"]}'
            assert row["error"] == f"HTTP 400: {quoted}"
        else:
            assert row["status"] == "sent" and row["error"] is None
    assert {h for h in HOURS if log[(h, "datadog")]["status"] != "sent"} == refused_hours

    # the next run sends exactly the hours that were not sent completely, whole
    before = len(datadog.log)
    report = export_metrics(home.warehouse, "datadog", export_settings(), now=NOW, sink=sink)
    resent = sent_points([json.loads(zlib.decompress(req.get_data()))
                          for req, _ in list(datadog.log)[before:]])  # fmt: skip
    assert set(resent) == expected_points([r for r in rows if r["hour_at"] in refused_hours])
    assert report.ok
    log = exports(home.warehouse)
    assert {r["status"] for r in log.values()} == {"sent"}
    assert {h: log[(h, "datadog")]["attempts"] for h in HOURS} == {
        h: 2 if h in refused_hours else 1 for h in HOURS
    }
    assert all(r["error"] is None for r in log.values())


def test_endpoint_down_is_recorded_failed_and_the_command_reports_it(
    home, datadog, clean_env, capsys
) -> None:
    hours = [current_hour() - timedelta(hours=n) for n in (3, 2, 1)]
    build_mart(home.warehouse, hours)
    clean_env.setenv("SPENDWATCH_DATADOG_URL", f"http://127.0.0.1:{free_port()}")
    assert main(["--home", str(home.home), "export", "datadog"]) == 1
    out = capsys.readouterr().out
    assert "datadog: 3 hours due" in out and "0 of 45 points accepted" in out
    assert "3 failed" in out and "ConnectError" in out
    log = exports(home.warehouse)
    assert [r["status"] for r in log.values()] == ["failed"] * 3
    assert all("ConnectError" in r["error"] for r in log.values())

    assert main(["--home", str(home.home), "export", "--status"]) == 0
    status = capsys.readouterr().out
    assert "hours not sent completely" in status and status.count("ConnectError") == 3
    assert "cloudwatch: not configured (set SPENDWATCH_CLOUDWATCH_NAMESPACE)" in status
    assert "datadog: configured; latest export to http://127.0.0.1:" in status

    # the endpoint is back: the next run sends the failed hours
    accept(datadog)
    clean_env.setenv("SPENDWATCH_DATADOG_URL", datadog.url_for("/").rstrip("/"))
    assert main(["--home", str(home.home), "export", "datadog"]) == 0
    assert "3 sent, 0 partial, 0 failed" in capsys.readouterr().out
    assert {(r["status"], r["attempts"]) for r in exports(home.warehouse).values()} == {("sent", 2)}
    assert main(["--home", str(home.home), "export", "--status"]) == 0
    status = capsys.readouterr().out
    assert "every exported hour was sent completely" in status
    assert DD_KEY not in out + status


def test_the_command_refuses_what_it_cannot_do(home, clean_env, capsys) -> None:
    build_mart(home.warehouse, HOURS)
    assert main(["--home", str(home.home), "export"]) == 2
    assert "say where to" in capsys.readouterr().out
    assert main(["--home", str(home.home), "export", "cloudwatch"]) == 2
    assert "set SPENDWATCH_CLOUDWATCH_NAMESPACE" in capsys.readouterr().out
    clean_env.setenv("SPENDWATCH_DATADOG_API_KEY", DD_KEY)
    argv = ["--home", str(home.home), "export", "datadog", "--start", "2026-11-27T14:00",
            "--end", "2026-11-27T12:00"]  # fmt: skip
    assert main(argv) == 2
    assert "is not before the end" in capsys.readouterr().out
    assert main(["--home", str(home.home), "export", "--status", "datadog"]) == 2
    assert main(["--home", str(home.home), "export", "--status"]) == 0
    assert "hours" in capsys.readouterr().out  # an empty log is a table of zeros


# --- CloudWatch (moto's server on localhost) ---------------------------------------------------


@pytest.fixture
def cloudwatch(clean_env) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    clean_env.setenv("AWS_ACCESS_KEY_ID", "testing")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    clean_env.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    clean_env.setenv("SPENDWATCH_CLOUDWATCH_NAMESPACE", NAMESPACE)
    clean_env.setenv("SPENDWATCH_CLOUDWATCH_ENDPOINT_URL", url)
    try:
        yield url
    finally:
        server.stop()


def read_back(url: str, metric: str, dims: dict[str, str], stat: str) -> dict[datetime, float]:
    import boto3

    client = boto3.client("cloudwatch", endpoint_url=url)
    result = client.get_metric_data(
        MetricDataQueries=[{
            "Id": "m",
            "MetricStat": {
                "Metric": {"Namespace": NAMESPACE, "MetricName": metric,
                           "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]},
                "Period": 3600, "Stat": stat,
            },
        }],
        StartTime=HOURS[0] - timedelta(hours=10), EndTime=RUNNING + timedelta(hours=2),
    )  # fmt: skip
    (series,) = result["MetricDataResults"]
    return {t.astimezone(UTC).replace(tzinfo=None): v
            for t, v in zip(series["Timestamps"], series["Values"], strict=True)}  # fmt: skip


def test_cloudwatch_put_metric_data_reads_back_from_the_emulator(home, cloudwatch) -> None:
    import boto3

    rows = build_mart(home.warehouse, [OLD, *HOURS, RUNNING])
    sink = CloudWatchSink(NAMESPACE, cloudwatch, max_data=20)  # several requests
    report = export_metrics(home.warehouse, "cloudwatch", export_settings(), now=NOW, sink=sink)
    assert report.ok and report.points_sent == 45 and report.batches == 3

    client = boto3.client("cloudwatch", endpoint_url=cloudwatch)
    listed = client.list_metrics(Namespace=NAMESPACE)["Metrics"]
    names = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"])))
             for m in listed}  # fmt: skip
    assert len(names) == 2 * 8 - 1  # per series: 8 metrics, but no cost per call unpriced
    for r in (r for r in rows if r["hour_at"] in HOURS):
        dims = {"feature": r["feature"], "model": r["model"], "provider": r["provider"],
                "environment": r["environment"]}  # fmt: skip
        assert ("llm.tokens", tuple(sorted({**dims, "token_type": "input"}.items()))) in names
        cost = read_back(cloudwatch, "llm.cost_usd", dims, "Average")
        assert cost[r["hour_at"]] == pytest.approx(float(r["cost_usd"]))
        assert set(cost) == set(HOURS)  # neither the running hour nor the old one
        tokens = read_back(cloudwatch, "llm.tokens", {**dims, "token_type": "cache_read"},
                           "Maximum")  # fmt: skip
        assert tokens[r["hour_at"]] == r["cache_read_tokens"]
    assert {r["status"] for r in exports(home.warehouse).values()} == {"sent"}

    # a re-export adds a sample at the same timestamp: the average (and max) stay the value
    export_metrics(home.warehouse, "cloudwatch", export_settings(), now=NOW, sink=sink,
                   start=HOURS[0], end=RUNNING)  # fmt: skip
    r = rows[2]  # 12:00, smart-reply
    dims = {"feature": r["feature"], "model": r["model"], "provider": r["provider"],
            "environment": r["environment"]}  # fmt: skip
    assert read_back(cloudwatch, "llm.calls", dims, "Average")[HOURS[0]] == r["calls"]
    assert read_back(cloudwatch, "llm.calls", dims, "SampleCount")[HOURS[0]] == 2


def test_cloudwatch_down_then_back(home, cloudwatch, clean_env) -> None:
    build_mart(home.warehouse, HOURS)
    dead = f"http://127.0.0.1:{free_port()}"
    report = export_metrics(home.warehouse, "cloudwatch", export_settings(), now=NOW,
                            sink=CloudWatchSink(NAMESPACE, dead))  # fmt: skip
    assert report.count("failed") == 3 and "EndpointConnectionError" in report.errors()[0]
    log = exports(home.warehouse)
    assert {r["status"] for r in log.values()} == {"failed"}
    assert all(AWS_SECRET not in r["error"] for r in log.values())
    report = export_metrics(home.warehouse, "cloudwatch", export_settings(), now=NOW)
    assert report.ok and [o.hour_at for o in report.outcomes] == HOURS
    assert {(r["status"], r["attempts"]) for r in exports(home.warehouse).values()} == {("sent", 2)}


def test_both_destinations_keep_their_own_log(home, cloudwatch, datadog) -> None:
    accept(datadog)
    build_mart(home.warehouse, HOURS)
    export_metrics(home.warehouse, "cloudwatch", export_settings(), now=NOW)
    report = export_metrics(home.warehouse, "datadog", export_settings(), now=NOW)
    assert [o.hour_at for o in report.outcomes] == HOURS  # CloudWatch's rows are not Datadog's
    assert sorted(exports(home.warehouse)) == sorted(
        (h, d) for h in HOURS for d in ("cloudwatch", "datadog")
    )


# --- Dagster ------------------------------------------------------------------------------------


def test_definitions_wire_the_asset_job_and_sensor(dbt_manifest) -> None:
    from orchestration.definitions import defs
    from orchestration.defs.exports import MODEL_MART_ASSET

    graph = defs.resolve_asset_graph()
    asset = graph.get(dg.AssetKey(["ops", "metric_exports"]))
    assert dg.AssetKey(["marts", "agg_hourly_feature_model_cost"]) == MODEL_MART_ASSET
    assert MODEL_MART_ASSET in asset.parent_keys and asset.partitions_def is None
    job = defs.resolve_job_def("metric_exports")
    assert job.tags["spendwatch/warehouse"] == "write"
    sensor = defs.resolve_sensor_def("exports_on_marts")
    assert sensor.job_name == "metric_exports" and sensor.asset_key == MODEL_MART_ASSET
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def _materialize(home):
    from orchestration.defs.exports import metric_exports
    from orchestration.defs.resources import SpendwatchHome

    result = dg.materialize(
        [metric_exports],
        resources={"spendwatch": SpendwatchHome(home=str(home.home))},
        instance=dg.DagsterInstance.get(),
        raise_on_error=False,
    )
    assert result.success  # whatever the destinations did
    (event,) = result.get_asset_materialization_events()
    logs = [e.message for e in dg.DagsterInstance.get().all_logs(result.run_id)]
    return event.materialization.metadata, logs


def test_the_asset_skips_with_one_line_when_nothing_is_configured(home, clean_env) -> None:
    from orchestration.defs.exports import MODEL_MART_ASSET, NOT_CONFIGURED, exports_on_marts

    build_mart(home.warehouse, HOURS)
    metadata, logs = _materialize(home)
    assert metadata["skipped"].value == NOT_CONFIGURED
    assert [m for m in logs if "metric_exports:" in (m or "")] == [
        f"metric_exports: {NOT_CONFIGURED}"
    ]
    assert exports_path_absent(home.warehouse)

    @dg.asset(key=MODEL_MART_ASSET)
    def mart_stand_in() -> None:
        return None

    instance = dg.DagsterInstance.get()
    with dg.build_sensor_context(instance=instance) as context:
        cursor = exports_on_marts.evaluate_tick(context).cursor
    dg.materialize([mart_stand_in], instance=instance)  # the mart was built: still no run
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        tick = exports_on_marts.evaluate_tick(context)
    assert tick.run_requests == [] and tick.skip_message == NOT_CONFIGURED

    clean_env.setenv("SPENDWATCH_TARGET", "spark")
    clean_env.setenv("SPENDWATCH_DATADOG_API_KEY", DD_KEY)
    metadata, _ = _materialize(home)
    assert "spark" in metadata["skipped"].value


def test_a_failing_endpoint_never_fails_the_run_and_the_next_run_sends(home, datadog) -> None:
    from orchestration.defs.exports import MODEL_MART_ASSET, SOURCE_RUN_TAG, exports_on_marts

    hours = [current_hour() - timedelta(hours=n) for n in (2, 1)]
    hours.append(current_hour() - LOOKBACK - timedelta(hours=1))  # too old to export
    build_mart(home.warehouse, hours)
    datadog.expect_oneshot_request(SERIES_PATH, method="POST").respond_with_data(
        f"upstream {DD_KEY} unavailable", status=503
    )
    metadata, logs = _materialize(home)
    assert metadata["datadog"].value["failed"] == 2 and metadata["datadog"].value["sent"] == 0
    assert "HTTP 503: upstream [redacted] unavailable" in metadata["datadog"].value["first_error"]
    assert {r["status"] for r in exports(home.warehouse).values()} == {"failed"}

    accept(datadog)
    metadata, logs = _materialize(home)
    assert metadata["datadog"].value["sent"] == 2 and metadata["datadog"].value["points"] == 30
    assert {r["status"] for r in exports(home.warehouse).values()} == {"sent"}
    assert not any(DD_KEY in (m or "") for m in logs)

    # the sensor asks for one run per run that built the mart
    instance = dg.DagsterInstance.get()

    @dg.asset(key=MODEL_MART_ASSET)
    def mart_stand_in() -> None:
        return None

    with dg.build_sensor_context(instance=instance) as context:
        first = exports_on_marts.evaluate_tick(context)
    run = dg.materialize([mart_stand_in], instance=instance)
    with dg.build_sensor_context(instance=instance, cursor=first.cursor) as context:
        (request,) = exports_on_marts.evaluate_tick(context).run_requests
    assert request.run_key == f"exports:{run.run_id}"
    assert request.tags[SOURCE_RUN_TAG] == run.run_id
