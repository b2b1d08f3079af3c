"""Alerts reach real servers on localhost: Slack and PagerDuty on a recording HTTP server
(pytest-httpserver), email on a real SMTP server (aiosmtpd). Each test builds a small warehouse
with exactly the anomaly rows it needs, and runs the alert run the Dagster job and
`spendwatch alerts send` run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from alert_support import (
    PD_KEY,
    SLACK_PATH,
    Lines,
    anomaly,
    build_warehouse,
    channel_env,
    deliveries,
    hours_ago,
    requests_to,
    score_through,
    serve_channels,
    this_hour,
    warehouse,
)
from werkzeug import Response

from orchestration.lib.alerting.deliveries import naive
from orchestration.lib.alerting.dispatch import run_alerts
from spendwatch.config import alert_settings
from spendwatch.warehouse import WarehouseBusy

REPO = Path(__file__).resolve().parents[1]
# the local SMTP server takes plain-text AUTH, as a test server on localhost may
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture
def wired(httpserver, smtp_server, monkeypatch):
    """The three channels pointed at the local servers; returns (http server, mailbox)."""
    channel_env(monkeypatch, httpserver, smtp_server)
    return httpserver, smtp_server


def slack_bodies(httpserver) -> list[dict]:
    return requests_to(httpserver, SLACK_PATH)


def pd_events(httpserver) -> list[dict]:
    return requests_to(httpserver, "/pd/v2/enqueue")


def mixed_incidents() -> list[dict]:
    """A critical volume spike over two hours and a one-hour warning on cost per call."""
    start = hours_ago(2)
    return [
        anomaly(start, severity="warning", observed=900, baseline=489, excess=0.6),
        anomaly(hours_ago(1), started_at=start, observed=1675, baseline=489, excess=1.45),
        anomaly(hours_ago(1), detector="cost_per_call", severity="warning",
                feature="summarization", metric="cost_per_call_usd", observed=0.025,
                baseline=0.0125, excess=0.9),
    ]  # fmt: skip


def test_critical_goes_to_all_three_warning_to_slack_with_the_facts(tmp_path, wired) -> None:
    httpserver, mailbox = wired
    serve_channels(httpserver)
    wh = build_warehouse(tmp_path / "w.duckdb", mixed_incidents())
    report = run_alerts(wh, alert_settings(), run_id="run-1", source_run_id="abc12345-run")
    assert report.count("sent") == 4 and not report.count("retry")

    slack = slack_bodies(httpserver)
    assert len(slack) == 2
    critical = next(b for b in slack if "CRITICAL" in b["blocks"][0]["text"]["text"])
    assert critical["blocks"][0]["text"]["text"] == "CRITICAL volume_spike · smart-reply/production"
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1]
              for f in critical["blocks"][2]["fields"]}  # fmt: skip
    hour = hours_ago(1)
    assert fields["*Feature*"] == "smart-reply" and fields["*Environment*"] == "production"
    assert fields["*Team*"] == "team-messaging"  # the feature's owner in alerting.yml
    assert fields["*Observed (calls)*"] == "1,675" and fields["*Baseline*"] == "489"
    assert fields["*Ratio to baseline*"] == "3.43×"
    assert fields["*Est. excess cost*"] == "$1.45 in the hour, $2.05 so far"
    assert fields["*Hour (UTC)*"] == f"{hour:%Y-%m-%d %H:%M} UTC"
    links = critical["blocks"][3]["elements"][0]["text"]
    assert "<https://git.example.com/spendwatch/docs/runbooks/volume_spike.md|Runbook: " in links
    assert "<http://dagster.example.com:3000/runs/abc12345-run|Dagster run abc12345>" in links
    assert "1,675 calls" in critical["blocks"][1]["text"]["text"]
    warning = next(b for b in slack if b is not critical)
    assert (
        warning["blocks"][0]["text"]["text"] == "WARNING cost_per_call · summarization/production"
    )
    assert "$0.0250" in str(warning["blocks"][2]) and "$0.0125" in str(warning["blocks"][2])

    (event,) = pd_events(httpserver)  # the warning does not page
    key = mixed_incidents()[1]["incident_key"]
    assert event["routing_key"] == PD_KEY and event["event_action"] == "trigger"
    assert event["dedup_key"] == f"spendwatch-{key}" and len(event["dedup_key"]) <= 255
    payload = event["payload"]
    assert payload["severity"] == "critical" and payload["component"] == "smart-reply"
    assert payload["class"] == "volume_spike" and payload["source"].startswith("spendwatch@")
    assert payload["summary"].startswith("CRITICAL volume_spike · smart-reply/production: 1,675")
    assert len(payload["summary"]) <= 1024
    details = payload["custom_details"]
    assert details["observed"] == "1,675" and details["baseline"] == "489"
    assert details["estimated_excess_cost_usd_hour"] == "$1.45"
    assert event["links"][0] == {
        "href": "https://git.example.com/spendwatch/docs/runbooks/volume_spike.md",
        "text": "Runbook: volume_spike",
    }

    (mail,) = mailbox.messages  # the warning is not emailed
    assert mail["Subject"] == "[spendwatch] CRITICAL volume_spike · smart-reply/production"
    assert mail["To"] == "oncall@example.com, finops@example.com"
    plain = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    for body in (plain, html):
        assert "1,675" in body and "489" in body and "3.43×" in body and "$1.45" in body
        assert "https://git.example.com/spendwatch/docs/runbooks/volume_spike.md" in body
        assert f"{hour:%Y-%m-%d %H:%M} UTC" in body
    assert mailbox.logins == ["alerts"]  # SMTP user and password from the environment

    rows = deliveries(wh)
    assert sorted((r["channel"], r["severity"], r["status"], r["attempts"]) for r in rows) == [
        ("email", "critical", "sent", 1), ("pagerduty", "critical", "sent", 1),
        ("slack", "critical", "sent", 1), ("slack", "warning", "sent", 1),
    ]  # fmt: skip
    assert all(r["sent_at"] and r["first_attempt_at"] == r["last_attempt_at"] for r in rows)

    again = run_alerts(wh, alert_settings())  # the same incidents: nothing new
    assert again.results == [] and len(slack_bodies(httpserver)) == 2


def test_a_cost_incident_shows_why_the_cost_moved_on_every_channel(tmp_path, wired) -> None:
    """A cost finding carries the drivers of its hour (marts.anomalies top_driver, drivers and
    the explanation ending its message): Slack shows them in a block of their own, PagerDuty in
    custom_details, email as a row of its figures."""
    httpserver, mailbox = wired
    serve_channels(httpserver)
    drivers = [
        {"driver": "input_tokens_per_call", "usd": 33.1, "share": 0.8034},
        {"driver": "model_mix", "usd": 6.3, "share": 0.1529},
        {"driver": "volume", "usd": 1.8, "share": 0.0437},
        {"driver": "cache", "usd": 0.0, "share": 0.0},
    ]
    explanation = (
        "$0.0500 per call in 14:00 UTC, 3.1× the usual — $33.10 of +$41.20: input tokens per "
        "call 2.8×; $6.30: model mix → claude-3-opus"
    )
    row = anomaly(hours_ago(1), detector="cost_per_call", feature="summarization",
                  metric="cost_per_call_usd", observed=0.05, baseline=0.016, excess=41.2,
                  drivers=drivers, explanation=explanation)  # fmt: skip
    wh = build_warehouse(tmp_path / "w.duckdb", [row])
    report = run_alerts(wh, alert_settings(), run_id="run-1")
    assert report.count("sent") == 3

    (slack,) = slack_bodies(httpserver)
    texts = [b.get("text", {}).get("text", "") for b in slack["blocks"]]
    assert "$33.10 of +$41.20: input tokens per call 2.8×" in texts[1]
    assert texts[3] == (
        "*Why the cost moved:* input_tokens_per_call +$33.10 (80 %) · "
        "model_mix +$6.30 (15 %) · volume +$1.80 (4 %)"
    )
    assert "Runbook: cost_per_call" in slack["blocks"][4]["elements"][0]["text"]

    (event,) = pd_events(httpserver)
    details = event["payload"]["custom_details"]
    assert details["top_driver"] == "input_tokens_per_call" and details["top_driver_usd"] == 33.1
    assert [d["driver"] for d in details["cost_drivers"]] == [
        "input_tokens_per_call", "model_mix", "volume",
    ]  # a driver that moved nothing is left out  # fmt: skip
    assert "model mix → claude-3-opus" in event["payload"]["summary"]

    (mail,) = mailbox.messages
    plain = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "Cost drivers:          input_tokens_per_call +$33.10 (80 %) · model_mix" in plain
    assert "$33.10 of +$41.20: input tokens per call 2.8×" in plain
    assert "<th align='left'>Cost drivers</th><td>input_tokens_per_call +$33.10 (80 %)" in html


def test_an_incident_alerts_once_escalates_and_resolves(tmp_path, wired) -> None:
    httpserver, mailbox = wired
    serve_channels(httpserver)
    start = hours_ago(5)
    first = anomaly(start, severity="warning", observed=900, excess=0.6)
    wh = build_warehouse(tmp_path / "w.duckdb", [first])
    run_alerts(wh, alert_settings())
    assert len(slack_bodies(httpserver)) == 1 and pd_events(httpserver) == []

    # a second warning hour of the same incident: nothing new anywhere
    with warehouse(wh) as con:
        from alert_support import add_anomalies

        add_anomalies(con, [anomaly(hours_ago(4), started_at=start, severity="warning")])
        score_through(con, hours_ago(4))
    assert run_alerts(wh, alert_settings()).results == []

    # the third hour is critical: escalation to Slack, PagerDuty and email
    with warehouse(wh) as con:
        add_anomalies(con, [anomaly(hours_ago(3), started_at=start, observed=2100)])
        score_through(con, hours_ago(3))
    run_alerts(wh, alert_settings())
    slack = slack_bodies(httpserver)
    assert len(slack) == 2
    assert slack[1]["blocks"][0]["text"]["text"].startswith("CRITICAL (escalated) volume_spike")
    assert "Escalated from warning" in slack[1]["blocks"][1]["text"]["text"]
    (trigger,) = pd_events(httpserver)
    assert mailbox.subjects() == [
        "[spendwatch] CRITICAL (escalated) volume_spike · smart-reply/production"
    ]

    # one quiet hour does not end it (the detectors join incidents across one quiet hour)
    with warehouse(wh) as con:
        score_through(con, hours_ago(2))
    assert run_alerts(wh, alert_settings()).results == []
    # two quiet hours do: PagerDuty resolve with the same dedup key, a Slack note, no email
    with warehouse(wh) as con:
        score_through(con, hours_ago(1))
    run_alerts(wh, alert_settings())
    trigger_, resolve = pd_events(httpserver)
    assert resolve == {"routing_key": PD_KEY, "event_action": "resolve",
                       "dedup_key": trigger["dedup_key"]}  # fmt: skip
    note = slack_bodies(httpserver)[2]
    assert note["blocks"][0]["text"]["text"] == "RESOLVED volume_spike · smart-reply/production"
    assert f"no anomaly since {hours_ago(3) + timedelta(hours=1):%H:%M} UTC" in note["text"]
    assert len(mailbox.messages) == 1
    kinds = sorted((r["alert_kind"], r["channel"], r["status"]) for r in deliveries(wh))
    assert kinds == [
        ("escalate", "email", "sent"), ("escalate", "pagerduty", "sent"),
        ("escalate", "slack", "sent"), ("resolve", "pagerduty", "sent"),
        ("resolve", "slack", "sent"), ("trigger", "slack", "sent"),
    ]  # fmt: skip
    assert run_alerts(wh, alert_settings()).results == []


def test_slack_outage_then_recovery_every_alert_exactly_once(tmp_path, wired) -> None:
    httpserver, mailbox = wired
    answers = iter([Response("internal_error", 500), Response("internal_error", 500),
                    Response("rate_limited", 429, headers={"Retry-After": "300"})])  # fmt: skip
    slack_calls: list[str] = []

    def slack(request):
        slack_calls.append(request.get_data(as_text=True))
        return next(answers, None) or Response("ok", 200)

    serve_channels(httpserver, slack=slack)
    rows = mixed_incidents() + [anomaly(hours_ago(1), feature="rag-search", excess=3.0)]
    wh = build_warehouse(tmp_path / "w.duckdb", rows)
    t0 = naive(this_hour() + timedelta(minutes=7))

    def tick(minutes: float):
        return run_alerts(wh, alert_settings(), now=t0 + timedelta(minutes=minutes))

    first = tick(0)  # Slack 500; PagerDuty and email deliver at once
    assert len(pd_events(httpserver)) == 2 and len(mailbox.messages) == 2
    assert len(slack_calls) == 1  # the other two Slack alerts wait behind the failed one
    assert first.count("retry") == 1 and first.count("released") == 2
    assert tick(0.25).results == []  # before the backoff (30 s) ends: nothing is retried
    tick(0.6)  # second 500 → backoff 60 s
    assert len(slack_calls) == 2
    assert tick(1.5).results == []
    tick(1.7)  # 429 with Retry-After: 300 s, longer than the backoff (120 s)
    assert len(slack_calls) == 3
    slack_rows = [r for r in deliveries(wh) if r["channel"] == "slack"]
    waiting = {r["next_attempt_at"] for r in slack_rows}
    assert len(waiting) == 1 and waiting.pop() >= t0 + timedelta(minutes=1.7, seconds=300)
    assert tick(5).results == []  # Retry-After is honoured
    recovered = tick(7)
    assert recovered.count("sent") == 3 and len(slack_calls) == 6

    assert len(set(slack_calls[3:])) == 3  # three different alerts, each once
    assert len(pd_events(httpserver)) == 2 and len(mailbox.messages) == 2  # never repeated
    by_channel = {}
    for r in deliveries(wh):
        by_channel.setdefault(r["channel"], []).append(r)
    assert all(r["status"] == "sent" for rs in by_channel.values() for r in rs)
    assert sorted(r["attempts"] for r in by_channel["slack"]) == [1, 1, 4]
    tried = max(by_channel["slack"], key=lambda r: r["attempts"])
    assert "HTTP 429 rate_limited" in tried["last_error"]
    assert tried["first_attempt_at"] < tried["last_attempt_at"] == tried["sent_at"]
    assert [r["attempts"] for r in by_channel["pagerduty"] + by_channel["email"]] == [1] * 4


def test_send_by_hand_retries_pending_alerts_at_once(tmp_path, wired) -> None:
    httpserver, _ = wired
    answers = iter([Response("internal_error", 503)])
    serve_channels(httpserver, slack=lambda request: next(answers, None) or Response("ok"))
    wh = build_warehouse(tmp_path / "w.duckdb", [anomaly(hours_ago(1), severity="warning")])
    assert run_alerts(wh, alert_settings()).count("retry") == 1
    assert run_alerts(wh, alert_settings()).results == []  # the sensor's path waits
    by_hand = run_alerts(wh, alert_settings(), ignore_backoff=True)
    assert by_hand.count("sent") == 1
    (row,) = deliveries(wh)
    assert row["status"] == "sent" and row["attempts"] == 2


def test_pagerduty_400_fails_for_good_and_the_error_is_redacted(tmp_path, wired) -> None:
    httpserver, mailbox = wired
    httpserver.expect_request("/pd/v2/enqueue").respond_with_json(
        {"status": "invalid event", "message": "Event object is invalid",
         "errors": [f"routing_key {PD_KEY} is not a valid integration key"]}, status=400,
    )  # fmt: skip
    httpserver.expect_request(SLACK_PATH).respond_with_data("ok")
    wh = build_warehouse(tmp_path / "w.duckdb", [anomaly(hours_ago(1))])
    lines = Lines()
    run_alerts(wh, alert_settings(), logger=lines)
    (pd,) = [r for r in deliveries(wh) if r["channel"] == "pagerduty"]
    assert pd["status"] == "failed" and pd["attempts"] == 1 and pd["next_attempt_at"] is None
    assert "HTTP 400" in pd["last_error"] and "[redacted]" in pd["last_error"]
    assert PD_KEY not in pd["last_error"] and not any(PD_KEY in t for _, t in lines.lines)
    assert run_alerts(wh, alert_settings(), ignore_backoff=True).results == []  # no retry
    assert len(pd_events(httpserver)) == 1 and len(mailbox.messages) == 1


def test_two_runs_started_together_send_each_alert_once(tmp_path, wired) -> None:
    """Two alert runs in one process, each with its own connection, released at the same
    instant: their claims conflict in DuckDB, the loser retries and finds the rows taken."""
    httpserver, mailbox = wired

    def slow_slack(request):
        time.sleep(0.2)
        return Response("ok")

    serve_channels(httpserver, slack=slow_slack)
    wh = build_warehouse(tmp_path / "w.duckdb", mixed_incidents())
    barrier = threading.Barrier(2)
    reports, errors = [], []

    def one_run(name: str) -> None:
        try:
            barrier.wait()
            reports.append(run_alerts(wh, alert_settings(), run_id=name))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=one_run, args=(n,)) for n in ("run-a", "run-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sum(r.count("sent") for r in reports) == 4
    bodies = [str(b) for b in slack_bodies(httpserver)]
    assert len(bodies) == 2 and len(set(bodies)) == 2
    assert len(pd_events(httpserver)) == 1 and len(mailbox.messages) == 1
    assert sorted(r["attempts"] for r in deliveries(wh)) == [1, 1, 1, 1]


def test_two_processes_started_together_send_each_alert_once(tmp_path, wired) -> None:
    """`spendwatch alerts send` twice at the same moment: one process waits for the other's
    lock on the warehouse, then finds every alert claimed or sent."""
    httpserver, mailbox = wired

    def slow_slack(request):
        time.sleep(0.3)
        return Response("ok")

    serve_channels(httpserver, slack=slow_slack)
    home = tmp_path / "home"
    home.mkdir()
    build_warehouse(home / "warehouse.duckdb", mixed_incidents())
    cli = [sys.executable, "-m", "spendwatch.cli", "--home", str(home), "alerts", "send"]
    procs = [subprocess.Popen(cli, cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert (
        len(slack_bodies(httpserver)) == 2 and len({str(b) for b in slack_bodies(httpserver)}) == 2
    )
    assert len(pd_events(httpserver)) == 1 and len(mailbox.messages) == 1
    assert sum("4 sent" in out for out in outputs) == 1, outputs
    assert sorted(r["attempts"] for r in deliveries(home / "warehouse.duckdb")) == [1, 1, 1, 1]


def test_storm_of_30_incidents_one_digest_per_channel_one_page_each(tmp_path, wired) -> None:
    httpserver, mailbox = wired
    serve_channels(httpserver)
    rows = [anomaly(hours_ago(1), feature=f"feature-{i:02d}", excess=i + 0.5) for i in range(30)]
    wh = build_warehouse(tmp_path / "w.duckdb", rows)
    report = run_alerts(wh, alert_settings())
    assert report.count("sent") == 32  # 30 pages + one Slack digest + one email digest

    (digest,) = slack_bodies(httpserver)
    assert digest["blocks"][0]["text"]["text"] == "spendwatch: 30 alerts in one run (30 critical)"
    listed = [b["text"]["text"] for b in digest["blocks"] if b["type"] == "section"][1:]
    assert len(listed) == 30
    assert listed[0].startswith(":red_circle: *critical* volume_spike · feature-29/production")
    assert "$29.50 excess" in listed[0] and "docs/runbooks/volume_spike.md|runbook>" in listed[0]
    (mail,) = mailbox.messages
    assert mail["Subject"] == "[spendwatch] 30 alerts in one run (30 critical)"
    plain = mail.get_body(("plain",)).get_content()
    assert sum(line.startswith("- critical volume_spike") for line in plain.splitlines()) == 30
    assert mail.get_body(("html",)).get_content().count("<tr>") == 31
    events = pd_events(httpserver)
    assert len(events) == 30 and len({e["dedup_key"] for e in events}) == 30
    assert {e["event_action"] for e in events} == {"trigger"}

    log = deliveries(wh)
    for channel in ("slack", "email"):
        grouped = [r for r in log if r["channel"] == channel and r["status"] == "grouped"]
        (sent,) = [r for r in log if r["channel"] == channel and r["alert_kind"] == "digest"]
        assert len(grouped) == 30 and sent["status"] == "sent"
        assert {r["digest_key"] for r in grouped} == {sent["incident_key"]}
        assert all(r["sent_at"] == sent["sent_at"] for r in grouped)
    assert sum(r["channel"] == "pagerduty" and r["status"] == "sent" for r in log) == 30


def test_backfilled_history_is_recorded_as_stale_not_sent(tmp_path, wired) -> None:
    httpserver, mailbox = wired
    serve_channels(httpserver)
    old = [anomaly(hours_ago(30)), anomaly(hours_ago(9), feature="rag-search")]
    fresh = anomaly(hours_ago(2), feature="code-review", severity="warning")
    wh = build_warehouse(tmp_path / "w.duckdb", [*old, fresh], scored_through=hours_ago(2))
    run_alerts(wh, alert_settings())
    assert len(slack_bodies(httpserver)) == 1 and pd_events(httpserver) == []
    assert mailbox.messages == []
    log = deliveries(wh)
    stale = [r for r in log if r["status"] == "suppressed_stale"]
    assert len(stale) == 6 and {r["feature"] for r in stale} == {"smart-reply", "rag-search"}
    assert all("stale_after_hours = 6" in r["note"] and r["attempts"] == 0 for r in stale)


def test_mutes_from_the_cli_and_the_routing_file_with_expiry(tmp_path, wired, monkeypatch) -> None:
    httpserver, _ = wired
    serve_channels(httpserver)
    routing = tmp_path / "alerting.yml"
    until = (this_hour() + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%MZ")
    routing.write_text(
        (REPO / "alerting.yml")
        .read_text()
        .replace(
            "mutes: []",
            f"mutes:\n  - {{detector: cost_per_call, until: {until}, reason: prompt rollout}}\n"
            "  - {feature: code-review, until: 2020-01-01T00:00Z, reason: expired long ago}",
        )
    )
    monkeypatch.setenv("SPENDWATCH_ALERT_ROUTING", str(routing))
    home = tmp_path / "home"
    home.mkdir()
    wh = build_warehouse(home / "warehouse.duckdb", [
        anomaly(hours_ago(1), severity="warning"),
        anomaly(hours_ago(1), detector="cost_per_call", severity="warning",
                feature="summarization", metric="cost_per_call_usd", observed=0.02, baseline=0.01),
        anomaly(hours_ago(1), feature="code-review", severity="warning"),
    ])  # fmt: skip
    cli = [sys.executable, "-m", "spendwatch.cli", "--home", str(home), "alerts"]
    mute = [*cli, "mute", "--feature", "smart-reply", "--for", "2h", "--reason", "launch day"]
    muted = subprocess.run(mute, cwd=REPO, capture_output=True, text=True)
    assert muted.returncode == 0, muted.stdout + muted.stderr
    assert "feature=smart-reply until" in muted.stdout and "launch day" in muted.stdout
    listed = subprocess.run([*cli, "mute", "--list"], cwd=REPO, capture_output=True, text=True)
    assert "smart-reply" in listed.stdout and "prompt rollout" in listed.stdout
    assert "expired long ago" not in listed.stdout

    run_alerts(wh, alert_settings())
    (sent,) = slack_bodies(httpserver)  # only code-review: its file mute has expired
    assert "code-review" in sent["blocks"][0]["text"]["text"]
    log = {r["feature"]: r for r in deliveries(wh)}
    assert log["smart-reply"]["status"] == "suppressed_muted"
    assert "launch day" in log["smart-reply"]["note"]
    assert log["summarization"]["status"] == "suppressed_muted"
    assert "by alerting.yml: prompt rollout" in log["summarization"]["note"]

    bad = subprocess.run([*cli, "mute", "--detector", "volume_spikes", "--for", "1h"], cwd=REPO,
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "unknown detector 'volume_spikes'" in bad.stdout


def test_a_new_incident_of_a_series_inside_its_suppression_interval(tmp_path, wired, monkeypatch):
    httpserver, _ = wired
    serve_channels(httpserver)
    wh = build_warehouse(tmp_path / "w.duckdb", [
        anomaly(hours_ago(6), detector="telemetry_gap", severity="warning", metric="calls"),
        anomaly(hours_ago(6), severity="warning"),
    ], scored_through=hours_ago(6))  # fmt: skip
    now = naive(hours_ago(5))
    run_alerts(wh, alert_settings(), now=now)
    assert len(slack_bodies(httpserver)) == 2
    with warehouse(wh) as con:  # both series fire again after 3 quiet hours: new incidents
        from alert_support import add_anomalies

        add_anomalies(con, [
            anomaly(hours_ago(2), detector="telemetry_gap", severity="warning", metric="calls"),
            anomaly(hours_ago(2), severity="warning"),
        ])  # fmt: skip
        score_through(con, hours_ago(2))
    run_alerts(wh, alert_settings(), now=naive(hours_ago(1)))
    # volume_spike has no suppression interval; telemetry_gap's is 6 h (alerting.yml)
    bodies = slack_bodies(httpserver)
    new = [b["blocks"][0]["text"]["text"] for b in bodies[2:] if "RESOLVED" not in str(b)]
    assert new == ["WARNING volume_spike · smart-reply/production"]
    (repeat,) = [r for r in deliveries(wh) if r["status"] == "suppressed_repeat"]
    assert repeat["detector"] == "telemetry_gap" and "suppression interval (6 h)" in repeat["note"]


def test_a_team_route_uses_the_teams_own_webhook(tmp_path, wired, monkeypatch) -> None:
    httpserver, _ = wired
    serve_channels(httpserver)
    httpserver.expect_request("/services/TEAMDOCS/hook").respond_with_data("ok")
    routing = tmp_path / "alerting.yml"
    routing.write_text(
        (REPO / "alerting.yml").read_text()
        .replace("channels: {}", "channels:\n  slack-docs: {type: slack, "
                 "webhook_url_env: SPENDWATCH_SLACK_WEBHOOK_DOCS}")
        .replace("routes:\n", "routes:\n  - match: {team: team-docs, severity: warning}\n"
                 "    channels: [slack-docs]\n")
    )  # fmt: skip
    monkeypatch.setenv("SPENDWATCH_ALERT_ROUTING", str(routing))
    monkeypatch.setenv(
        "SPENDWATCH_SLACK_WEBHOOK_DOCS", httpserver.url_for("/services/TEAMDOCS/hook")
    )
    wh = build_warehouse(tmp_path / "w.duckdb", [
        anomaly(hours_ago(1), severity="warning", feature="summarization"),
        anomaly(hours_ago(1), severity="warning", feature="smart-reply"),
    ])  # fmt: skip
    run_alerts(wh, alert_settings())
    (docs,) = requests_to(httpserver, "/services/TEAMDOCS/hook")
    assert "summarization" in docs["blocks"][0]["text"]["text"]
    (general,) = slack_bodies(httpserver)
    assert "smart-reply" in general["blocks"][0]["text"]["text"]
    assert {r["channel"]: r["channel_type"] for r in deliveries(wh)} == {
        "slack-docs": "slack", "slack": "slack"}  # fmt: skip


def test_an_unconfigured_channel_is_skipped_with_one_log_line(tmp_path, httpserver, monkeypatch):
    serve_channels(httpserver)
    monkeypatch.setenv("SPENDWATCH_SLACK_WEBHOOK_URL", httpserver.url_for(SLACK_PATH))
    for name in ("SPENDWATCH_PAGERDUTY_ROUTING_KEY", "SPENDWATCH_SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    rows = [anomaly(hours_ago(1)), anomaly(hours_ago(1), feature="rag-search")]
    wh = build_warehouse(tmp_path / "w.duckdb", rows)
    lines = Lines()
    report = run_alerts(wh, alert_settings(), logger=lines)
    assert report.count("sent") == 2 and report.count("failed") == 0
    assert lines.matching("pagerduty: not configured") == [
        "pagerduty: not configured (set SPENDWATCH_PAGERDUTY_ROUTING_KEY); skipping 2 alert(s)"
    ]
    assert len(lines.matching("email: not configured")) == 1
    assert {r["channel"] for r in deliveries(wh)} == {"slack"}


def test_the_alert_run_waits_while_another_process_writes(tmp_path, wired) -> None:
    httpserver, _ = wired
    serve_channels(httpserver)
    wh = build_warehouse(tmp_path / "w.duckdb", [anomaly(hours_ago(1), severity="warning")])
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
         "print('locked', flush=True); time.sleep(1.5)", str(wh)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    lines = Lines()
    began = time.monotonic()
    report = run_alerts(wh, alert_settings(), logger=lines)
    assert report.count("sent") == 1 and time.monotonic() - began >= 1
    (said,) = lines.matching("is locked by")
    assert f"(PID {holder.pid})" in said and "waiting up to 30 s" in said
    holder.wait()

    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
         "print('locked', flush=True); time.sleep(2)", str(wh)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    impatient = alert_settings().__class__(**{**alert_settings().__dict__,
                                              "warehouse_wait_seconds": 0.5})  # fmt: skip
    with pytest.raises(WarehouseBusy, match="still locked .* nothing was sent"):
        run_alerts(wh, impatient)
    holder.wait()


def test_alerts_test_reaches_every_configured_channel(tmp_path, wired) -> None:
    httpserver, mailbox = wired
    serve_channels(httpserver)
    out = subprocess.run([sys.executable, "-m", "spendwatch.cli", "alerts", "test"], cwd=REPO,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    results = {cells[1].strip(): cells[2].strip() for cells in
               (line.split("│") for line in out.stdout.splitlines()) if len(cells) > 3}  # fmt: skip
    assert results == {"slack": "ok", "pagerduty": "ok", "email": "ok"}
    (slack,) = slack_bodies(httpserver)
    assert slack["text"].startswith("spendwatch test alert")
    trigger, resolve = pd_events(httpserver)
    assert trigger["payload"]["severity"] == "info" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"]
    assert mailbox.subjects() == ["[spendwatch] test alert"]


def test_dry_run_prints_and_records_nothing(tmp_path, monkeypatch) -> None:
    for name in ("SPENDWATCH_SLACK_WEBHOOK_URL", "SPENDWATCH_PAGERDUTY_ROUTING_KEY",
                 "SPENDWATCH_SMTP_HOST"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    build_warehouse(home / "warehouse.duckdb", mixed_incidents())
    cli = [sys.executable, "-m", "spendwatch.cli", "--home", str(home), "alerts"]
    out = subprocess.run([*cli, "send", "--dry-run"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "dry run: 4 alert(s) would be sent" in out.stdout
    assert "→ slack trigger (not configured: set SPENDWATCH_SLACK_WEBHOOK_URL)" in out.stdout
    assert "CRITICAL volume_spike · smart-reply/production: 1,675 calls" in out.stdout
    assert "subject: [spendwatch] CRITICAL volume_spike · smart-reply/production" in out.stdout
    import duckdb

    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    tables = {t for (t,) in con.execute("select table_name from information_schema.tables "
                                        "where table_schema = 'ops'").fetchall()}  # fmt: skip
    con.close()
    assert tables == set()  # a dry run writes nothing, not even the table
