"""Slack incoming webhooks with Block Kit.

One message per alert: severity and detector in the header; the anomaly's own sentence; the
feature, environment, model and team; observed vs baseline and the ratio; the estimated excess
dollars; the hour (UTC); the runbook and the Dagster run as links. A digest lists many alerts in
one message. `text` is the fallback Slack shows in notifications.

Webhook answers: 200 `ok` = sent; 429 (with Retry-After) and 5xx = retry later; other 4xx
(`invalid_payload`, `no_service`, `channel_is_archived`, ...) = failed for good.
"""

from __future__ import annotations

from typing import Any

import httpx

from orchestration.lib.alerting.channels import Outcome, short
from orchestration.lib.alerting.incidents import (
    dagster_run_url,
    digest_order,
    dimension,
    drivers_line,
    figures,
    fmt_usd,
    fmt_value,
    hour_span,
    runbook_url,
    sentence,
    title,
)
from spendwatch.config import AlertSettings

ICON = {
    "critical": ":red_circle:",
    "warning": ":large_orange_circle:",
    "resolve": ":white_check_mark:",
}
MAX_DIGEST_ITEMS = 40  # Slack allows 50 blocks per message


def _link(url: str | None, text: str) -> str:
    if not url:
        return text
    return f"<{url}|{text}>"


def message(kind: str, facts: dict[str, Any], settings: AlertSettings) -> dict[str, Any]:
    """The webhook body for a trigger, escalation or resolution."""
    icon = ICON["resolve" if kind == "resolve" else facts["severity"]]
    head = title(kind, facts)
    runbook = runbook_url(settings, facts)
    run_url = dagster_run_url(settings, facts.get("dagster_run_id"))
    links = [_link(runbook, f"Runbook: {facts['detector']}")]
    if run_url:
        links.append(_link(run_url, f"Dagster run {facts['dagster_run_id'][:8]}"))
    if kind == "resolve":
        if facts.get("vanished"):
            why = "its hours were re-materialized and no longer show the anomaly"
        else:
            why = f"no anomaly since {facts['quiet_since'][11:16]} UTC"
        body = (
            f"*{facts['detector']}* on *{dimension(facts)}* is over: {why}. It lasted "
            f"{hour_span(facts)}; estimated excess cost {fmt_usd(facts.get('excess_usd_total'))}."
        )
        blocks = [
            {"type": "header", "text": {"type": "plain_text", "text": head[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": body}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]},
        ]
        return {"text": f"{head}: {why}", "blocks": blocks}
    lead = facts.get("message") or head
    if kind == "escalate":
        lead = f"Escalated from {facts.get('previous_severity', 'warning')}: {lead}"
    pairs = figures(facts)
    fields = [{"type": "mrkdwn", "text": f"*{label}*\n{value}"} for label, value in pairs]
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{head}"[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": short(lead, 2900)}},
        {"type": "section", "fields": fields[:10]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]},
    ]
    if (line := drivers_line(facts)) is not None:  # Slack shows 10 fields: its own block
        blocks.insert(3, {"type": "section", "text": {"type": "mrkdwn", "text": short(
            f"*Why the cost moved:* {line}", 2900)}})  # fmt: skip
    excess = fmt_usd(facts.get("estimated_excess_cost_usd"))
    text = f"{icon} {head}: {sentence(facts) or lead} — est. excess {excess} in the hour"
    return {"text": short(text, 3000), "blocks": blocks}


def digest(facts: dict[str, Any], settings: AlertSettings) -> dict[str, Any]:
    """One message for a storm of alerts."""
    items = facts["items"]
    kinds = {k: sum(1 for i in items if i["kind"] == k) for k in ("trigger", "escalate", "resolve")}
    critical = sum(1 for i in items if i["severity"] == "critical" and i["kind"] != "resolve")
    head = f"spendwatch: {len(items)} alerts in one run ({critical} critical)"
    summary = ", ".join(f"{n} {k}" for k, n in kinds.items() if n)
    excess = sum(i.get("estimated_excess_cost_usd") or 0 for i in items if i["kind"] != "resolve")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": head}},
        {"type": "section", "text": {"type": "mrkdwn", "text": (
            f"{summary}. Estimated excess in their latest hours: {fmt_usd(excess)}. "
            "Each is listed once; `spendwatch alerts list` shows them all.")}},
        {"type": "divider"},
    ]  # fmt: skip
    order = digest_order(items)
    for item in order[:MAX_DIGEST_ITEMS]:
        icon = ICON["resolve" if item["kind"] == "resolve" else item["severity"]]
        what = "resolved" if item["kind"] == "resolve" else item["severity"]
        line = (
            f"{icon} *{what}* {item['detector']} · {dimension(item)} — "
            f"{fmt_value(item.get('metric'), item.get('observed_value'))} vs "
            f"{fmt_value(item.get('metric'), item.get('baseline_value'))}, "
            f"{fmt_usd(item.get('estimated_excess_cost_usd'))} excess, {item['hour_at'][:16]} UTC"
            f" · {_link(runbook_url(settings, item), 'runbook')}"
        )
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": short(line, 2900)}})
    if len(items) > MAX_DIGEST_ITEMS:
        more = f"… and {len(items) - MAX_DIGEST_ITEMS} more: `spendwatch alerts list`"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    run_url = dagster_run_url(settings, facts.get("dagster_run_id"))
    if run_url:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": _link(run_url, f"Dagster run {facts['dagster_run_id'][:8]}")}
        ]})  # fmt: skip
    return {"text": f":rotating_light: {head}", "blocks": blocks}


def test_message(settings: AlertSettings) -> dict[str, Any]:
    text = (
        "spendwatch test alert: this channel is wired up. Real alerts link their runbook under "
        f"{settings.runbook_base_url}"
    )
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def send(client: httpx.Client, url: str, body: dict[str, Any]) -> Outcome:
    try:
        response = client.post(url, json=body)
    except httpx.HTTPError as exc:
        return Outcome("retry", f"slack: {type(exc).__name__}: {exc}")
    said = short(response.text, 200)
    if response.status_code == 200:
        return Outcome("sent", said)
    if response.status_code == 429 or response.status_code >= 500:
        return Outcome("retry", f"slack: HTTP {response.status_code} {said}",
                       _retry_after(response))  # fmt: skip
    return Outcome("failed", f"slack: HTTP {response.status_code} {said}")


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None
