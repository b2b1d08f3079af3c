"""Destinations (a channel name from the routing file with its settings), send outcomes, and
the redaction every error goes through before it is logged or recorded.

A channel module (`slack`, `pagerduty`, `mail`) renders a message from an alert's facts and
sends it, returning an `Outcome`: sent; retry (HTTP 429 and 5xx, network errors, SMTP 4xx —
the caller schedules the next attempt with backoff, honouring Retry-After); or failed for good
(e.g. PagerDuty 400, Slack `invalid_payload`, SMTP 5xx — no retry, the error is recorded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from orchestration.lib.alerting.routing import Routing
from spendwatch.config import AlertSettings, secret_from_env


@dataclass(frozen=True)
class Outcome:
    status: str  # sent | retry | failed
    detail: str = ""  # what the far end said (redacted by the caller)
    retry_after: float | None = None  # seconds the far end asked us to wait


@dataclass(frozen=True)
class Destination:
    """A channel ready to send: its type, and its settings (secrets kept out of repr)."""

    name: str
    type: str  # slack | pagerduty | email
    missing: str | None  # why it cannot send (not configured), else None
    url: str | None = field(default=None, repr=False)  # slack webhook / pagerduty enqueue URL
    routing_key: str | None = field(default=None, repr=False)
    to: tuple[str, ...] = ()

    @property
    def configured(self) -> bool:
        return self.missing is None


def destinations(routing: Routing, settings: AlertSettings) -> dict[str, Destination]:
    """Every channel the routing file can send to, configured or not."""
    enqueue = f"{settings.pagerduty_url}/v2/enqueue"
    email_missing = _email_missing(settings, settings.email_to, "SPENDWATCH_ALERT_EMAIL_TO")
    found = {
        "slack": Destination(
            "slack", "slack",
            None if settings.slack_webhook_url else "set SPENDWATCH_SLACK_WEBHOOK_URL",
            url=settings.slack_webhook_url,
        ),
        "pagerduty": Destination(
            "pagerduty", "pagerduty",
            None if settings.pagerduty_routing_key else "set SPENDWATCH_PAGERDUTY_ROUTING_KEY",
            url=enqueue, routing_key=settings.pagerduty_routing_key,
        ),
        "email": Destination("email", "email", email_missing, to=settings.email_to),
    }  # fmt: skip
    for name, spec in routing.spec.channels.items():
        if spec.type == "slack":
            url = secret_from_env(spec.webhook_url_env)
            found[name] = Destination(
                name, "slack", None if url else f"set {spec.webhook_url_env}", url=url
            )
        elif spec.type == "pagerduty":
            key = secret_from_env(spec.routing_key_env)
            found[name] = Destination(
                name, "pagerduty", None if key else f"set {spec.routing_key_env}",
                url=enqueue, routing_key=key,
            )  # fmt: skip
        else:
            to = tuple(spec.to or ())
            found[name] = Destination(name, "email", _email_missing(settings, to, None), to=to)
    return found


def _email_missing(settings: AlertSettings, to: tuple[str, ...], to_var: str | None) -> str | None:
    missing = []
    if not settings.smtp_host:
        missing.append("SPENDWATCH_SMTP_HOST")
    if not to and to_var:
        missing.append(to_var)
    return f"set {' and '.join(missing)}" if missing else None


class Redactor:
    """Replaces every configured secret (and the secret path of a webhook URL) in a text."""

    def __init__(self, settings: AlertSettings, found: dict[str, Destination]):
        secrets = set(settings.secrets())
        for d in found.values():
            secrets.update(s for s in (d.routing_key,) if s)
            if d.type == "slack" and d.url:
                secrets.add(d.url)
        for s in list(secrets):
            if s.startswith(("http://", "https://")):
                parts = urlsplit(s)
                if len(parts.path) > 8:
                    secrets.add(parts.path)
                    secrets.add(parts.path.lstrip("/"))
                if parts.query:
                    secrets.add(parts.query)
        self._secrets = sorted((s for s in secrets if len(s) >= 6), key=len, reverse=True)

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return None
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text


def short(text: str, limit: int = 300) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
