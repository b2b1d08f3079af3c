"""Shared parts of the alerting tests: a small warehouse built directly (marts.anomalies with
exactly the rows a test needs), a real SMTP server on localhost, and the environment that
points the three channels at local servers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import duckdb
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

ANOMALIES_DDL = """
create schema if not exists marts;
create table if not exists marts.anomalies (
    anomaly_id varchar, incident_key varchar, incident_started_at timestamp, hour_at timestamp,
    detector varchar, severity varchar, feature varchar, environment varchar, model varchar,
    team_id varchar, metric varchar, observed_value double, baseline_value double,
    stddev_value double, z_score double, ratio_to_baseline double,
    estimated_excess_cost_usd decimal(38, 15), message varchar, runbook varchar,
    top_driver varchar, top_driver_usd double, drivers varchar
);
create table if not exists marts.agg_hourly_feature_cost (
    hour_at timestamp, feature varchar, environment varchar, calls bigint
);
"""

SLACK_PATH = "/services/T0SPENDW/B0ALERTS/sekrit-slack-token-5b1f"
PD_KEY = "sekrit-pd-routing-key-8c2e"
SMTP_USER = "alerts"
SMTP_PASSWORD = "sekrit-smtp-password-77a0"


def this_hour() -> datetime:
    """The current UTC hour, naive (as the warehouse stores it)."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)


def anomaly(
    hour_at: datetime,
    *,
    detector: str = "volume_spike",
    severity: str = "critical",
    feature: str | None = "smart-reply",
    environment: str = "production",
    started_at: datetime | None = None,
    metric: str = "calls",
    observed: float = 1675,
    baseline: float = 489,
    excess: float = 1.45,
    model: str | None = None,
    team_id: str | None = None,
    drivers: list[dict] | None = None,
    explanation: str | None = None,
) -> dict:
    """One marts.anomalies row; the incident key follows the mart's rule (dimension + start)."""
    started_at = started_at or hour_at
    dim = f"{detector}|{metric}|{feature}|{environment}|{model}|{team_id}"
    return {
        "anomaly_id": hashlib.md5(f"{dim}|{hour_at}".encode()).hexdigest(),
        "incident_key": hashlib.md5(f"{dim}|{started_at}".encode()).hexdigest(),
        "incident_started_at": started_at, "hour_at": hour_at, "detector": detector,
        "severity": severity, "feature": feature, "environment": environment, "model": model,
        "team_id": team_id, "metric": metric, "observed_value": observed,
        "baseline_value": baseline, "stddev_value": 40.0, "z_score": 29.6,
        "ratio_to_baseline": observed / baseline, "estimated_excess_cost_usd": excess,
        "message": f"{feature}/{environment}: {observed:,.0f} {metric} in {hour_at:%H:00} UTC, "
                   f"{observed / baseline:.1f}× the usual {baseline:,.0f}",
        "runbook": f"docs/runbooks/{detector}.md",
        # the cost drivers of the hour, as marts.anomalies carries them (sorted by |usd|)
        "top_driver": drivers[0]["driver"] if drivers else None,
        "top_driver_usd": drivers[0]["usd"] if drivers else None,
        "drivers": json.dumps(drivers) if drivers else None,
    } | ({"message": f"{feature}/{environment}: {explanation}"} if explanation else {})  # fmt: skip


def build_warehouse(path: Path, rows: list[dict], scored_through: datetime | None = None) -> Path:
    """A warehouse with these anomaly rows; the pipeline has scored every hour through
    `scored_through` (default: the latest anomaly hour)."""
    con = duckdb.connect(str(path))
    try:
        con.execute(ANOMALIES_DDL)
        add_anomalies(con, rows)
        through = scored_through or max(r["hour_at"] for r in rows)
        score_through(con, through)
    finally:
        con.close()
    return path


def add_anomalies(con: duckdb.DuckDBPyConnection, rows: list[dict]) -> None:
    if not rows:
        return
    names = list(rows[0])
    con.executemany(
        f"insert into marts.anomalies ({', '.join(names)}) values ({', '.join('?' * len(names))})",
        [[r[n] for n in names] for r in rows],
    )


def score_through(con: duckdb.DuckDBPyConnection, hour: datetime) -> None:
    con.execute(
        "insert into marts.agg_hourly_feature_cost values (?, 'smart-reply', 'production', 100)",
        [hour],
    )


@contextlib.contextmanager
def warehouse(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(path))
    try:
        yield con
    finally:
        con.close()


def deliveries(path: Path) -> list[dict]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        cur = con.execute("from ops.alert_deliveries order by created_at, incident_key, channel")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


# --- a real SMTP server on localhost ------------------------------------------------------------


@dataclass
class Mailbox:
    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        msg = message_from_bytes(envelope.original_content, policy=policy.default)
        with self.lock:
            self.messages.append(msg)
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        if (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == SMTP_USER
            and (auth_data.password.decode() == SMTP_PASSWORD)
        ):
            self.logins.append(auth_data.login.decode())
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def subjects(self) -> list[str]:
        with self.lock:
            return [m["Subject"] for m in self.messages]


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    box = Mailbox()
    with socket.socket() as probe:  # a free port (aiosmtpd checks readiness by connecting)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with warnings.catch_warnings():  # plain-text AUTH is what a localhost test server needs
        warnings.simplefilter("ignore", UserWarning)
        controller = Controller(
            box, hostname="127.0.0.1", port=port, authenticator=box.authenticate,
            auth_require_tls=False, auth_required=True,
        )  # fmt: skip
        controller.start()
    box.port = port
    try:
        yield box
    finally:
        controller.stop()


def channel_env(
    monkeypatch: pytest.MonkeyPatch, httpserver, smtp: Mailbox, routing: Path | None = None
):
    """Point all three channels at the local servers (the secrets are the test's markers)."""
    monkeypatch.setenv("SPENDWATCH_SLACK_WEBHOOK_URL", httpserver.url_for(SLACK_PATH))
    monkeypatch.setenv("SPENDWATCH_PAGERDUTY_ROUTING_KEY", PD_KEY)
    monkeypatch.setenv("SPENDWATCH_PAGERDUTY_URL", httpserver.url_for("/pd").rstrip("/"))
    monkeypatch.setenv("SPENDWATCH_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SPENDWATCH_SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("SPENDWATCH_SMTP_USER", SMTP_USER)
    monkeypatch.setenv("SPENDWATCH_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("SPENDWATCH_ALERT_EMAIL_TO", "oncall@example.com, finops@example.com")
    monkeypatch.setenv("SPENDWATCH_ALERT_EMAIL_FROM", "spendwatch@example.com")
    monkeypatch.setenv(
        "SPENDWATCH_RUNBOOK_BASE_URL", "https://git.example.com/spendwatch/docs/runbooks"
    )
    monkeypatch.setenv("SPENDWATCH_DAGSTER_URL", "http://dagster.example.com:3000")
    monkeypatch.setenv("SPENDWATCH_WAREHOUSE_WAIT_SECONDS", "30")
    if routing is not None:
        monkeypatch.setenv("SPENDWATCH_ALERT_ROUTING", str(routing))


def requests_to(httpserver, path_prefix: str) -> list[dict]:
    """JSON bodies the local server received on a path."""
    return [
        json.loads(req.get_data()) for req, _ in httpserver.log if req.path.startswith(path_prefix)
    ]


def hours_ago(n: int) -> datetime:
    return this_hour() - timedelta(hours=n)


class Lines:
    """A logger that keeps what the alert run says (the interface of logging.Logger and
    Dagster's context.log that run_alerts uses)."""

    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def info(self, text: str) -> None:
        self.lines.append(("info", text))

    def warning(self, text: str) -> None:
        self.lines.append(("warning", text))

    def error(self, text: str) -> None:
        self.lines.append(("error", text))

    def matching(self, needle: str) -> list[str]:
        return [text for _, text in self.lines if needle in text]


def serve_channels(httpserver, slack=None) -> None:
    """Slack answers `ok` (or `slack`, a handler), PagerDuty 202, as the real services do."""
    if slack is None:
        httpserver.expect_request(SLACK_PATH, method="POST").respond_with_data("ok")
    else:
        httpserver.expect_request(SLACK_PATH, method="POST").respond_with_handler(slack)
    httpserver.expect_request("/pd/v2/enqueue", method="POST").respond_with_json(
        {"status": "success", "message": "Event processed"}, status=202
    )
