"""The routing file and the incident lifecycle, without servers: validation that names the
line, route matching, and which alerts a run adds (stale, muted, repeated, storms, resolves)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from orchestration.lib.alerting.channels import Redactor, destinations
from orchestration.lib.alerting.deliveries import Delivery
from orchestration.lib.alerting.incidents import Incident
from orchestration.lib.alerting.lifecycle import ActiveMute, plan
from orchestration.lib.alerting.routing import RoutingError, known_detectors, load_routing
from spendwatch.config import AlertSettings

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 26, 15, 7)


@pytest.fixture(scope="module")
def routing():
    return load_routing(REPO / "alerting.yml")


def test_the_shipped_routing_file_routes_by_severity(routing) -> None:
    assert routing.channels_for("critical", "volume_spike", "smart-reply", "production", None) == [
        "slack", "pagerduty", "email"]  # fmt: skip
    assert routing.channels_for("warning", "budget_burn", None, None, "team-docs") == ["slack"]
    assert routing.settings.stale_after_hours == 6
    assert routing.settings.suppression_seconds("telemetry_gap") == 6 * 3600
    assert routing.settings.suppression_seconds("volume_spike") == 0
    assert [routing.settings.retry.delay(n) for n in (1, 2, 3, 7, 12)] == [30, 60, 120, 1800, 1800]


def test_every_detector_has_its_runbook_and_the_routing_knows_them_all() -> None:
    with (REPO / "seeds/detectors.csv").open(newline="") as f:
        seeded = {row["detector"]: row["runbook"] for row in csv.DictReader(f)}
    assert set(seeded) == known_detectors() == {
        "volume_spike", "cost_per_call", "cost_spike", "cache_efficiency", "model_drift",
        "retry_storm", "budget_burn", "telemetry_gap", "data_quality", "invoice_drift"}  # fmt: skip
    for detector, runbook in seeded.items():
        assert runbook == f"docs/runbooks/{detector}.md" and (REPO / runbook).is_file()
    runbooks = {p.stem for p in (REPO / "docs/runbooks").glob("*.md")}
    assert runbooks == set(seeded)  # no runbook for a detector that does not exist


def test_the_three_runbooks_meet_the_standard() -> None:
    text = {name: (REPO / "docs/runbooks" / f"{name}.md").read_text().lower()
            for name in ("volume_spike", "cost_per_call", "cache_efficiency")}  # fmt: skip
    must = {
        "volume_spike": ["deploy", "retry storm", "cache hit rate", "bot", "rate limit",
                         "feature flag", "escalate"],
        "cost_per_call": ["$0.0125", "$0.025", "prompt version", "context size", "fallback",
                          "prompt construction", "roll back", "15 minutes", "escalate"],
        "cache_efficiency": ["70 %", "35 %", "ttl", "cache-key", "prompt pattern",
                             "infrastructure", "below 50 % for an hour", "disable", "escalate"],
    }  # fmt: skip
    missing = {name: [m for m in words if m not in text[name]] for name, words in must.items()}
    assert missing == {"volume_spike": [], "cost_per_call": [], "cache_efficiency": []}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alerting.yml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("routes:\n  - match: {severity: critical}\n    channels: [slack, teams]\n",
         ":3: routes.0.channels: unknown channel 'teams'; use slack, pagerduty, email or one "
         "declared under `channels:`"),
        ("routes:\n  - channels: [slack]\n  - match:\n      severity: warn\n    channels: slack\n",
         ":4: routes.1.match.severity.0: 'warn' is not one of 'warning' or 'critical'"),
        ("routes:\n  - match:\n      detector: [volume_spike, volume_spikes]\n"
         "    channels: [slack]\n",
         ":3: routes.0.match.detector: unknown detector 'volume_spikes'; known: budget_burn"),
        ("settings:\n  stale_after_hours: 6\n  storm_limit: 3\nroutes: [{channels: slack}]\n",
         ":3: settings.storm_limit: unknown key 'storm_limit'"),
        ("routes: [{channels: slack}]\nmutes:\n  - {until: 2026-12-01}\n",
         ":3: mutes.0: a mute needs a feature, a detector or both"),
        ("channels:\n  slack-docs: {type: slack}\nroutes: [{channels: slack-docs}]\n",
         ":2: channels.slack-docs: a slack channel needs `webhook_url_env`"),
        ("channels:\n  docs:\n    type: slack\n    webhook_url_env: https://hooks.slack.com/T/B/x\n"
         "routes: [{channels: docs}]\n",
         ":2: channels.docs: the value of webhook_url_env is not the name of an environment"),
        ("channels:\n  slack: {type: slack, webhook_url_env: X}\nroutes: [{channels: slack}]\n",
         ":2: channels.slack: 'slack' is a built-in channel"),
        ("routes: []\n", ":1: routes: List should have at least 1 item"),
        ("routes:\n  - channels: [slack\n", ": not valid YAML"),
    ],
)  # fmt: skip
def test_a_wrong_routing_file_fails_naming_the_line(tmp_path, text, expected) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(RoutingError) as error:
        load_routing(path)
    assert str(error.value).startswith(f"{path}{expected}"), str(error.value)


def test_first_match_wins_unless_continue(tmp_path) -> None:
    path = _write(tmp_path, """
channels:
  slack-docs: {type: slack, webhook_url_env: SPENDWATCH_SLACK_WEBHOOK_DOCS}
  pd-search: {type: pagerduty, routing_key_env: SPENDWATCH_PD_SEARCH}
owners: {summarization: team-docs}
routes:
  - match: {team: team-docs}
    channels: [slack-docs]
  - match: {feature: rag-search, severity: critical}
    channels: [pd-search]
    continue: true
  - match: {severity: critical}
    channels: [slack, pagerduty]
""")  # fmt: skip
    r = load_routing(path)
    assert r.channels_for("critical", "cost_spike", "summarization", "production", None) == [
        "slack-docs"]  # the feature's owner  # fmt: skip
    assert r.channels_for("warning", "budget_burn", None, None, "team-docs") == ["slack-docs"]
    assert r.channels_for("critical", "cost_spike", "rag-search", "production", None) == [
        "pd-search", "slack", "pagerduty"]  # fmt: skip
    assert r.channels_for("warning", "cost_spike", "rag-search", "production", None) == []
    assert r.channel_type("pd-search") == "pagerduty"


LAST_HOUR = NOW.replace(minute=0) - timedelta(hours=1)


def incident(key: str = "k1", hour: datetime = LAST_HOUR, severity: str = "critical", **kw):
    values = dict(
        incident_key=key, detector="volume_spike", severity=severity, metric="calls",
        feature="smart-reply", environment="production", model=None, team_id=None,
        started_at=hour, first_hour_at=hour, last_hour_at=hour, hours=1, critical_since=None,
        anomaly_id="a-" + key, hour_at=hour, observed_value=1675.0, baseline_value=489.0,
        stddev_value=40.0, z_score=29.6, ratio_to_baseline=3.43, estimated_excess_cost_usd=1.45,
        excess_usd_total=1.45, message="smart-reply/production: 1,675 calls", runbook=None,
    )  # fmt: skip
    values.update(kw)
    return Incident(**values)


def everything(channel: str) -> bool:
    return True


def statuses(rows: list[Delivery]) -> list[tuple]:
    return sorted((r.incident_key, r.alert_kind, r.channel, r.status) for r in rows)


def test_stale_muted_and_unconfigured(routing) -> None:
    old = incident("old", hour=NOW.replace(minute=0) - timedelta(hours=8))
    fresh = incident("fresh", feature="rag-search", severity="warning")
    muted = incident("muted", feature="summarization")
    mutes = [ActiveMute("summarization", None, None, NOW + timedelta(hours=1), "launch", "m1")]
    out = plan([old, fresh, muted], [], routing, lambda c: c != "email", mutes, NOW,
               NOW.replace(minute=0) - timedelta(hours=1), "run")  # fmt: skip
    assert statuses(out.rows) == [
        ("fresh", "trigger", "slack", "pending"),
        ("muted", "trigger", "pagerduty", "suppressed_muted"),
        ("muted", "trigger", "slack", "suppressed_muted"),
        ("old", "trigger", "pagerduty", "suppressed_stale"),
        ("old", "trigger", "slack", "suppressed_stale"),
    ]
    assert out.unconfigured == {"email": 2}
    note = next(r.note for r in out.rows if r.incident_key == "old")
    assert note == "latest anomalous hour ended 7.1 h before this run (stale_after_hours = 6)"


def test_storm_threshold_is_more_than_n_per_channel(routing) -> None:
    five = [incident(f"k{i}", feature=f"f{i}") for i in range(5)]
    out = plan(five, [], routing, everything, [], NOW, None, "run")
    assert {r.status for r in out.rows} == {"pending"} and len(out.rows) == 15
    six = [incident(f"k{i}", feature=f"f{i}") for i in range(6)]
    out = plan(six, [], routing, everything, [], NOW, None, "run")
    digests = [r for r in out.rows if r.alert_kind == "digest"]
    assert sorted(d.channel for d in digests) == ["email", "slack"]
    assert len(json.loads(digests[0].payload)["items"]) == 6
    assert sum(r.status == "grouped" for r in out.rows) == 12
    assert sum(r.channel == "pagerduty" and r.status == "pending" for r in out.rows) == 6


def test_resolve_only_where_something_was_delivered_and_when_rows_vanish(routing) -> None:
    hour = NOW.replace(minute=0) - timedelta(hours=4)
    inc = incident("k1", hour=hour)
    first = plan([inc], [], routing, everything, [], NOW, hour, "run").rows
    sent = [replace(r, status="sent", sent_at=NOW) for r in first]
    assert plan([inc], sent, routing, everything, [], NOW, hour + timedelta(hours=1),
                "run").rows == []  # one quiet hour  # fmt: skip
    resolved = plan([inc], sent, routing, everything, [], NOW, hour + timedelta(hours=2), "run")
    assert statuses(resolved.rows) == [("k1", "resolve", "pagerduty", "pending"),
                                       ("k1", "resolve", "slack", "pending")]  # fmt: skip
    # the incident's rows left the mart (its hours were re-materialized): resolve it too
    gone = plan([], sent, routing, everything, [], NOW, hour, "run")
    assert statuses(gone.rows) == statuses(resolved.rows)
    assert all(json.loads(r.payload)["vanished"] for r in gone.rows)
    # nothing was delivered (stale): nothing to resolve
    stale = [replace(r, status="suppressed_stale") for r in first]
    assert plan([], stale, routing, everything, [], NOW, hour, "run").rows == []


def test_escalation_reaches_the_channels_critical_adds(routing) -> None:
    warning = incident("k1", severity="warning")
    first = plan([warning], [], routing, everything, [], NOW, None, "run").rows
    assert statuses(first) == [("k1", "trigger", "slack", "pending")]
    sent = [replace(r, status="sent", sent_at=NOW) for r in first]
    worse = plan([replace(warning, severity="critical")], sent, routing, everything, [], NOW,
                 None, "run").rows  # fmt: skip
    assert statuses(worse) == [("k1", "escalate", "email", "pending"),
                               ("k1", "escalate", "pagerduty", "pending"),
                               ("k1", "escalate", "slack", "pending")]  # fmt: skip
    assert json.loads(worse[0].payload)["previous_severity"] == "warning"


def test_redaction_covers_secrets_and_the_secret_path_of_a_webhook(routing) -> None:
    settings = AlertSettings(
        slack_webhook_url="https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX",
        pagerduty_routing_key="R0UT1NGKEY0000", smtp_password="hunter2-long",
    )  # fmt: skip
    redact = Redactor(settings, destinations(routing, settings))
    text = (
        "POST https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX failed; proxy said "
        "/services/T000/B000/XXXXsecretXXXX; key R0UT1NGKEY0000; pw hunter2-long"
    )
    assert redact(text) == ("POST [redacted] failed; proxy said [redacted]; key [redacted]; "
                            "pw [redacted]")  # fmt: skip
    assert "XXXX" not in repr(settings) and "R0UT" not in repr(settings)


def test_the_alerts_commands_do_not_import_dagster_or_dbt() -> None:
    code = (
        "import sys, spendwatch.cli, orchestration.lib.alerting.commands\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'dbt', 'pandas'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, cwd=REPO)  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_an_invoice_drift_found_days_later_is_sent_and_stays_open_until_it_vanishes(
    routing, tmp_path: Path
) -> None:
    # invoice_drift scores a past day when a report is imported: ten days after its hour it is
    # still news (stale after 45 days), and quiet hours since do not end it; its rows leaving
    # the mart (the gap fixed and the days rebuilt) do
    day = NOW.replace(hour=0, minute=0) - timedelta(days=10)
    inc = incident("drift", hour=day, detector="invoice_drift", feature=None, environment=None,
                   model="gpt-4.1", metric="billed_usd", severity="warning")  # fmt: skip
    latest = NOW.replace(minute=0) - timedelta(hours=1)
    first = plan([inc], [], routing, everything, [], NOW, latest, "run").rows
    assert statuses(first) == [("drift", "trigger", "slack", "pending")]
    sent = [replace(r, status="sent", sent_at=NOW) for r in first]
    assert plan([inc], sent, routing, everything, [], NOW, latest, "run").rows == []
    gone = plan([], sent, routing, everything, [], NOW, latest, "run")
    assert statuses(gone.rows) == [("drift", "resolve", "slack", "pending")]
    # past 45 days it is a backfill like any other
    old = replace(inc, last_hour_at=NOW.replace(minute=0) - timedelta(days=46))
    (row,) = plan([old], [], routing, everything, [], NOW, latest, "run").rows
    assert row.status == "suppressed_stale" and "stale_after_hours = 1080" in row.note
    # an override for a detector that does not exist is refused with the file's line
    with pytest.raises(RoutingError, match="unknown detector 'invoice_drfit'"):
        load_routing(_write(tmp_path,
            "settings:\n  stale_after_hours_by_detector:\n    invoice_drfit: 24\n"
            "routes: [{match: {severity: critical}, channels: [slack]}]\n"))  # fmt: skip
