"""Email over SMTP: subject with severity, detector and feature; plain-text and HTML bodies with
the same facts. STARTTLS when the server offers it (port 465: TLS from the start); login when
`SPENDWATCH_SMTP_USER` and `SPENDWATCH_SMTP_PASSWORD` are set.

SMTP answers: 4xx and connection errors = retry later; 5xx (recipient or sender refused,
authentication failed) = failed for good.
"""

from __future__ import annotations

import html
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from orchestration.lib.alerting.channels import Outcome, short
from orchestration.lib.alerting.incidents import (
    dagster_run_url,
    digest_order,
    dimension,
    figures,
    fmt_usd,
    fmt_value,
    runbook_url,
    title,
)
from spendwatch.config import AlertSettings

TIMEOUT = 15


def _sender(settings: AlertSettings) -> str:
    return settings.email_from or f"spendwatch@{socket.getfqdn() or 'localhost'}"


def _envelope(subject: str, to: tuple[str, ...], settings: AlertSettings) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = _sender(settings)
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain="spendwatch")
    return msg


def message(
    kind: str, facts: dict[str, Any], to: tuple[str, ...], settings: AlertSettings
) -> EmailMessage:
    subject = f"[spendwatch] {title(kind, facts)}"
    lead = facts.get("message") or title(kind, facts)
    if kind == "escalate":
        lead = f"Escalated from {facts.get('previous_severity', 'warning')}: {lead}"
    runbook = runbook_url(settings, facts)
    run_url = dagster_run_url(settings, facts.get("dagster_run_id"))
    rows = figures(facts)
    text = [lead, ""]
    text += [f"{label + ':':<22} {value}" for label, value in rows]
    text += ["", f"Runbook: {runbook}"]
    if run_url:
        text.append(f"Dagster run: {run_url}")
    text += ["", f"Incident key: {facts['incident_key']}"]
    body_rows = "".join(
        f"<tr><th align='left'>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in rows
    )
    links = f"<a href='{html.escape(runbook)}'>Runbook: {html.escape(facts['detector'])}</a>"
    if run_url:
        links += f" · <a href='{html.escape(run_url)}'>Dagster run</a>"
    html_body = (
        f"<html><body><h2>{html.escape(title(kind, facts))}</h2><p>{html.escape(lead)}</p>"
        f"<table cellpadding='4'>{body_rows}</table><p>{links}</p>"
        f"<p style='color:#666'>Incident key: {html.escape(facts['incident_key'])}</p>"
        "</body></html>"
    )
    msg = _envelope(subject, to, settings)
    msg.set_content("\n".join(text))
    msg.add_alternative(html_body, subtype="html")
    return msg


def digest(facts: dict[str, Any], to: tuple[str, ...], settings: AlertSettings) -> EmailMessage:
    items = digest_order(facts["items"])
    critical = sum(1 for i in items if i["severity"] == "critical" and i["kind"] != "resolve")
    subject = f"[spendwatch] {len(items)} alerts in one run ({critical} critical)"
    text = [f"{len(items)} alerts in one run; each is listed once.", ""]
    cells = []
    for item in items:
        what = "resolved" if item["kind"] == "resolve" else item["severity"]
        observed = fmt_value(item.get("metric"), item.get("observed_value"))
        baseline = fmt_value(item.get("metric"), item.get("baseline_value"))
        excess = fmt_usd(item.get("estimated_excess_cost_usd"))
        runbook = runbook_url(settings, item)
        text.append(
            f"- {what} {item['detector']} {dimension(item)}: {observed} vs {baseline}, "
            f"{excess} excess, {item['hour_at'][:16]} UTC — {runbook}"
        )
        cells.append(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
                what, item["detector"], dimension(item), observed, baseline, excess,
                item["hour_at"][:16] + " UTC")) +
            f"<td><a href='{html.escape(runbook)}'>runbook</a></td></tr>"
        )  # fmt: skip
    header = "".join(f"<th align='left'>{h}</th>" for h in (
        "severity", "detector", "where", "observed", "baseline", "excess", "hour", ""))  # fmt: skip
    html_body = (
        f"<html><body><h2>{html.escape(subject[13:])}</h2><table cellpadding='4'>"
        f"<tr>{header}</tr>{''.join(cells)}</table></body></html>"
    )
    msg = _envelope(subject, to, settings)
    msg.set_content("\n".join(text))
    msg.add_alternative(html_body, subtype="html")
    return msg


def test_message(to: tuple[str, ...], settings: AlertSettings) -> EmailMessage:
    msg = _envelope("[spendwatch] test alert", to, settings)
    msg.set_content("spendwatch test alert: this address receives spendwatch's alerts.")
    return msg


def send(msg: EmailMessage, settings: AlertSettings) -> Outcome:
    host, port = settings.smtp_host, settings.smtp_port
    try:
        if port == 465:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=TIMEOUT,
                                                  context=ssl.create_default_context())  # fmt: skip
        else:
            smtp = smtplib.SMTP(host, port, timeout=TIMEOUT)
        with smtp:
            smtp.ehlo()
            if port != 465 and smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if settings.smtp_user and settings.smtp_password:
                smtp.login(settings.smtp_user, settings.smtp_password)
            refused = smtp.send_message(msg)
    except smtplib.SMTPResponseException as exc:
        said = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else (
            str(exc.smtp_error))  # fmt: skip
        state = "failed" if 500 <= exc.smtp_code < 600 else "retry"
        return Outcome(state, f"email: SMTP {exc.smtp_code} {short(said, 200)}")
    except smtplib.SMTPRecipientsRefused as exc:
        codes = {code for code, _ in exc.recipients.values()}
        state = "failed" if all(500 <= c < 600 for c in codes) else "retry"
        return Outcome(state, f"email: all recipients refused ({sorted(codes)})")
    except (smtplib.SMTPException, OSError) as exc:
        return Outcome("retry", f"email: {type(exc).__name__}: {short(str(exc), 200)}")
    if refused:
        return Outcome("sent", f"refused by the server for {', '.join(sorted(refused))}")
    return Outcome("sent", "accepted")
