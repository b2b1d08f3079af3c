"""PagerDuty Events API v2 (`<base>/v2/enqueue`).

`trigger` with `dedup_key` = the incident key, so every event of one incident (the first alert,
an escalation) lands on one PagerDuty incident; `resolve` with the same key when it ends.
Answers: 202 = sent; 400 = failed for good (the event is invalid: no retry, error recorded);
429, 5xx and network errors = retried with backoff on later ticks.
"""

from __future__ import annotations

import socket
from typing import Any

import httpx

from orchestration.lib.alerting.channels import Outcome, short
from orchestration.lib.alerting.incidents import (
    cost_drivers,
    dagster_run_url,
    dimension,
    fmt_hour,
    fmt_ratio,
    fmt_usd,
    fmt_value,
    runbook_url,
    sentence,
    title,
)
from spendwatch.config import AlertSettings

SUMMARY_LIMIT = 1024
DEDUP_LIMIT = 255


def dedup_key(incident_key: str) -> str:
    return f"spendwatch-{incident_key}"[:DEDUP_LIMIT]


def event(kind: str, facts: dict[str, Any], routing_key: str, settings: AlertSettings) -> dict:
    """The Events API v2 body of a trigger (first alert or escalation) or a resolve."""
    key = dedup_key(facts["incident_key"])
    if kind == "resolve":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}
    metric = facts.get("metric")
    summary = f"{title(kind, facts)}: {sentence(facts)}".strip(": ")
    links = [{"href": runbook_url(settings, facts), "text": f"Runbook: {facts['detector']}"}]
    run_url = dagster_run_url(settings, facts.get("dagster_run_id"))
    if run_url:
        links.append({"href": run_url, "text": "Dagster run"})
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": summary[:SUMMARY_LIMIT],
            "source": f"spendwatch@{socket.gethostname()}",
            "severity": "critical" if facts["severity"] == "critical" else "warning",
            "timestamp": facts["hour_at"] + ":00Z",
            "component": facts.get("feature") or dimension(facts),
            "group": facts.get("environment") or "",
            "class": facts["detector"],
            "custom_details": {
                "detector": facts["detector"],
                "severity": facts["severity"],
                "feature": facts.get("feature"),
                "environment": facts.get("environment"),
                "model": facts.get("model"),
                "team": facts.get("team") or facts.get("team_id"),
                "metric": metric,
                "observed": fmt_value(metric, facts.get("observed_value")),
                "baseline": fmt_value(metric, facts.get("baseline_value")),
                "ratio_to_baseline": fmt_ratio(facts.get("ratio_to_baseline")),
                "z_score": facts.get("z_score"),
                "estimated_excess_cost_usd_hour": fmt_usd(facts.get("estimated_excess_cost_usd")),
                "estimated_excess_cost_usd_incident": fmt_usd(facts.get("excess_usd_total")),
                "hour_utc": fmt_hour(facts.get("hour_at")),
                "incident_started_utc": fmt_hour(facts.get("started_at")),
                "hours_so_far": facts.get("hours"),
                "incident_key": facts["incident_key"],
                "runbook": runbook_url(settings, facts),
                # why the cost moved (cost findings): the drivers of the headline hour
                "top_driver": facts.get("top_driver"),
                "top_driver_usd": facts.get("top_driver_usd"),
                "cost_drivers": cost_drivers(facts, limit=7),
            },
        },
        "links": links,
        "client": "spendwatch",
        **({"client_url": run_url} if run_url else {}),
    }


def test_events(routing_key: str, stamp: str) -> list[dict]:
    """A low-severity test trigger and its resolve, so a wiring check pages nobody for long."""
    key = f"spendwatch-test-{stamp}"
    trigger = {
        "routing_key": routing_key, "event_action": "trigger", "dedup_key": key,
        "payload": {"summary": "spendwatch test alert: this integration is wired up",
                    "source": f"spendwatch@{socket.gethostname()}", "severity": "info"},
        "client": "spendwatch",
    }  # fmt: skip
    return [trigger, {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}]


def send(client: httpx.Client, url: str, body: dict) -> Outcome:
    try:
        response = client.post(url, json=body)
    except httpx.HTTPError as exc:
        return Outcome("retry", f"pagerduty: {type(exc).__name__}: {exc}")
    said = short(response.text, 300)
    if response.status_code == 202:
        return Outcome("sent", said)
    if response.status_code == 429 or response.status_code >= 500:
        retry_after = response.headers.get("retry-after")
        return Outcome(
            "retry", f"pagerduty: HTTP {response.status_code} {said}",
            float(retry_after) if retry_after and retry_after.isdigit() else None,
        )  # fmt: skip
    hint = " (check SPENDWATCH_PAGERDUTY_URL)" if response.status_code == 404 else ""
    return Outcome("failed", f"pagerduty: HTTP {response.status_code} {said}{hint}")
