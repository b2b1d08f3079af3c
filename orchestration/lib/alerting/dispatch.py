"""One alert run, the code path of the Dagster `alerts` job and of `spendwatch alerts send`:

1. read the routing file (fail early, naming the line, if it is wrong);
2. one short transaction on the warehouse: read the incidents of `marts.anomalies` and the
   delivery log, add the new alerts the lifecycle calls for, claim the rows that are due;
   close the connection;
3. send, with no connection open: the channels in parallel (one slow or dead channel never
   delays another), each channel's alerts in order; after a retryable failure a channel's
   remaining alerts are released untried until its next attempt time (no hammering a channel
   that is down);
4. one short transaction: record every outcome (attempts, error with secrets redacted, next
   attempt with exponential backoff or the server's Retry-After, sent time).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from orchestration.lib.alerting import mail, pagerduty, slack
from orchestration.lib.alerting.channels import Destination, Outcome, Redactor, destinations, short
from orchestration.lib.alerting.deliveries import (
    Delivery,
    Result,
    claim,
    claimable,
    ensure_tables,
    naive,
    open_warehouse,
    read_deliveries,
    read_mutes,
    record,
    transaction,
)
from orchestration.lib.alerting.deliveries import insert as insert_rows
from orchestration.lib.alerting.incidents import dimension, latest_scored_hour, load_incidents
from orchestration.lib.alerting.lifecycle import ActiveMute, Plan, plan
from orchestration.lib.alerting.routing import Routing, load_routing
from spendwatch.config import AlertSettings
from spendwatch.warehouse import has_table

log = logging.getLogger("spendwatch.alerts")
HTTP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass
class Sent:
    delivery: Delivery
    outcome: str  # sent | retry | failed | released | dry-run
    error: str | None = None


@dataclass
class RunReport:
    run_id: str
    planned: Counter = field(default_factory=Counter)  # status → new rows
    results: list[Sent] = field(default_factory=list)
    unconfigured: dict[str, str] = field(default_factory=dict)  # channel → what to set
    unconfigured_counts: Counter = field(default_factory=Counter)
    incidents: int = 0
    dry_run: bool = False
    previews: list[tuple[Delivery, str]] = field(default_factory=list)  # dry run: rendered text

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    def metadata(self) -> dict[str, int]:
        return {
            "incidents": self.incidents,
            **{f"new_{k}": v for k, v in sorted(self.planned.items())},
            **{o: self.count(o) for o in ("sent", "retry", "failed", "released")},
        }


def run_alerts(
    warehouse: Path,
    settings: AlertSettings,
    *,
    run_id: str | None = None,
    source_run_id: str | None = None,
    ignore_backoff: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
    logger: Any = log,
) -> RunReport:
    """Deliver what has not been delivered. `ignore_backoff` (by hand) retries every pending
    alert now; the sensor's runs respect each alert's next attempt time. `dry_run` plans and
    renders, and writes and sends nothing."""
    run_id = run_id or f"cli-{uuid.uuid4()}"
    now = naive(now or datetime.now(UTC))
    routing = load_routing(settings.routing_file)
    found = destinations(routing, settings)
    redact = Redactor(settings, found)
    report = RunReport(run_id=run_id, dry_run=dry_run)

    def configured(channel: str) -> bool:
        return dry_run or (channel in found and found[channel].configured)

    con = open_warehouse(warehouse, settings.warehouse_wait_seconds, read_only=dry_run,
                         logger=logger)  # fmt: skip
    try:
        if not has_table(con, "marts", "anomalies"):
            raise FileNotFoundError(
                f"{warehouse} has no marts.anomalies yet: materialize first (`spendwatch demo` "
                "or `spendwatch materialize --start ...`)"
            )
        if dry_run:
            new, claimed = _preview(con, routing, configured, now, run_id, source_run_id)
        else:
            transaction(con, ensure_tables)
            new, claimed = transaction(
                con,
                lambda c: _plan_and_claim(c, routing, configured, found, now, run_id,
                                          source_run_id, ignore_backoff),
            )  # fmt: skip
    finally:
        con.close()

    report.incidents = new.incidents
    report.planned = Counter(r.status for r in new.plan.rows)
    report.unconfigured = {n: d.missing for n, d in found.items() if d.missing}
    for channel, n in new.plan.unconfigured.items():
        missing = found[channel].missing if channel in found else "no longer in the routing file"
        report.unconfigured_counts[channel] = n
        logger.info(f"{channel}: not configured ({missing}); skipping {n} alert(s)")
    if new.plan.unrouted:
        logger.info(f"{new.plan.unrouted} incident(s) match no route in {routing.path.name}")
    if dry_run:
        for d in claimed:
            report.previews.append((d, preview_text(d, settings)))
            report.results.append(Sent(d, "dry-run"))
        return report
    if not claimed:
        return report

    results = _send_all(claimed, found, settings, redact, routing, now, logger)
    report.results = [Sent(r.delivery, r.outcome, r.error) for r in results]
    con = open_warehouse(warehouse, settings.warehouse_wait_seconds, logger=logger)
    try:
        transaction(con, lambda c: record(c, results, run_id))
    finally:
        con.close()
    return report


@dataclass
class _Planned:
    plan: Plan
    incidents: int


def _state(con, routing: Routing, now: datetime):
    incidents = load_incidents(con)
    latest = latest_scored_hour(con)
    existing = read_deliveries(con)
    mutes = [
        ActiveMute(m.feature, m.detector, m.environment, naive(m.until), m.reason, "alerting.yml")
        for m in routing.active_mutes(now.replace(tzinfo=UTC))
    ] + [
        ActiveMute(m.feature, m.detector, m.environment, m.until_at, m.reason or "",
                   f"mute {m.mute_id}")
        for m in read_mutes(con, now)
    ]  # fmt: skip
    return incidents, latest, existing, mutes


def _plan_and_claim(
    con, routing, configured, found, now, run_id, source_run_id, ignore_backoff
) -> tuple[_Planned, list[Delivery]]:
    incidents, latest, existing, mutes = _state(con, routing, now)
    new = plan(incidents, existing, routing, configured, mutes, now, latest, run_id, source_run_id)
    insert_rows(con, new.rows)
    rows = existing + new.rows
    ready = [
        r for r in claimable(rows, now, ignore_backoff)
        if r.channel in found and found[r.channel].configured
    ]  # fmt: skip
    lease = timedelta(seconds=routing.settings.lease_seconds)
    return _Planned(new, len(incidents)), claim(con, ready, run_id, now, lease)


def _preview(con, routing, configured, now, run_id, source_run_id):
    incidents, latest, existing, mutes = _state(con, routing, now)
    new = plan(incidents, existing, routing, configured, mutes, now, latest, run_id, source_run_id)
    ready = claimable(existing + new.rows, now, ignore_backoff=True)
    return _Planned(new, len(incidents)), ready


def pending_work(warehouse: Path, settings: AlertSettings, now: datetime) -> str:
    """What an alert run would do now, without waiting for the warehouse or writing to it:
    `""` when nothing, else e.g. `2 new, 1 retry due` (for the backlog sensor)."""
    now = naive(now)
    routing = load_routing(settings.routing_file)
    found = destinations(routing, settings)

    def configured(channel: str) -> bool:
        return channel in found and found[channel].configured

    con = open_warehouse(warehouse, 0, read_only=True)
    try:
        if not has_table(con, "marts", "anomalies"):
            return ""
        incidents, latest, existing, mutes = _state(con, routing, now)
    finally:
        con.close()
    new = plan(incidents, existing, routing, configured, mutes, now, latest, "probe")
    fresh = sum(1 for r in new.rows if r.status == "pending")
    due = [r for r in claimable(existing, now, ignore_backoff=False) if configured(r.channel)]
    parts = [f"{fresh} new"] if fresh else []
    parts += [f"{len(due)} retry due"] if due else []
    return ", ".join(parts)


# --- sending ----------------------------------------------------------------------------------


def render(d: Delivery, dest: Destination, settings: AlertSettings):
    """The message of one delivery for its channel type."""
    facts = d.facts
    if dest.type == "slack":
        return slack.digest(facts, settings) if d.alert_kind == "digest" else slack.message(
            d.alert_kind, facts, settings)  # fmt: skip
    if dest.type == "pagerduty":
        return pagerduty.event(d.alert_kind, facts, dest.routing_key or "", settings)
    if d.alert_kind == "digest":
        return mail.digest(facts, dest.to, settings)
    return mail.message(d.alert_kind, facts, dest.to, settings)


def deliver(
    client: httpx.Client, d: Delivery, dest: Destination, settings: AlertSettings
) -> Outcome:
    body = render(d, dest, settings)
    if dest.type == "slack":
        return slack.send(client, dest.url or "", body)
    if dest.type == "pagerduty":
        return pagerduty.send(client, dest.url or "", body)
    return mail.send(body, settings)


def _send_all(claimed, found, settings, redact: Redactor, routing, now, logger) -> list[Result]:
    by_channel: dict[str, list[Delivery]] = defaultdict(list)
    for d in claimed:
        by_channel[d.channel].append(d)
    retry = routing.settings.retry
    budget = routing.settings.lease_seconds / 2  # stop well before the lease runs out
    started = time.monotonic()

    def clock() -> datetime:  # the run's `now`, moving on with real time
        return now + timedelta(seconds=time.monotonic() - started)

    def one_channel(channel: str, rows: list[Delivery]) -> list[Result]:
        dest = found[channel]
        results: list[Result] = []
        began = time.monotonic()
        with httpx.Client(timeout=HTTP_TIMEOUT) as client:
            for i, d in enumerate(rows):
                if time.monotonic() - began > budget:
                    results += [Result(x, "released", next_attempt_at=x.next_attempt_at)
                                for x in rows[i:]]  # fmt: skip
                    break
                at = clock()
                try:
                    outcome = deliver(client, d, dest, settings)
                except Exception as exc:  # a bug or an odd answer must not lose the row
                    outcome = Outcome("retry", f"{channel}: {type(exc).__name__}: {exc}")
                error = redact(short(outcome.detail, 500)) if outcome.status != "sent" else None
                attempts = d.attempts + 1
                if outcome.status == "retry" and attempts >= retry.max_attempts:
                    outcome = Outcome("failed", outcome.detail)
                    error = f"gave up after {attempts} attempts: {error}"
                next_at = None
                if outcome.status == "retry":
                    wait = max(retry.delay(attempts), outcome.retry_after or 0)
                    next_at = at + timedelta(seconds=wait)
                results.append(Result(d, outcome.status, error, next_at, at))
                _log_outcome(logger, d, outcome.status, error, next_at)
                if outcome.status == "retry":  # the channel is down: leave the rest queued
                    results += [Result(x, "released", next_attempt_at=next_at)
                                for x in rows[i + 1:]]  # fmt: skip
                    if len(rows) > i + 1:
                        logger.warning(f"{channel}: {len(rows) - i - 1} more alert(s) wait for "
                                       f"the next attempt at {next_at:%H:%M:%S} UTC")  # fmt: skip
                    break
        return results

    with ThreadPoolExecutor(max_workers=max(len(by_channel), 1)) as pool:
        futures = [pool.submit(one_channel, c, rows) for c, rows in by_channel.items()]
        return [r for f in futures for r in f.result()]


def _log_outcome(logger, d: Delivery, status: str, error: str | None, next_at) -> None:
    what = f"{d.channel}: {d.alert_kind} {describe(d)}"
    if status == "sent":
        logger.info(f"{what}: sent")
    elif status == "retry":
        logger.warning(f"{what}: not delivered ({error}); next attempt {next_at:%H:%M:%S} UTC")
    else:
        logger.error(f"{what}: FAILED for good ({error})")


def describe(d: Delivery) -> str:
    facts = d.facts
    if d.alert_kind == "digest":
        return f"of {facts['count']} alerts ({d.severity})"
    return f"{d.severity} {facts['detector']} {dimension(facts)}"


def preview_text(d: Delivery, settings: AlertSettings) -> str:
    """What a dry run prints for one alert: the message as its channel would show it."""
    facts = d.facts
    if d.alert_kind == "digest":
        return slack.digest(facts, settings)["text"] + "".join(
            f"\n  - {i['severity']} {i['detector']} {dimension(i)}" for i in facts["items"]
        )
    if d.channel_type == "email":
        return "subject: " + mail.message(d.alert_kind, facts, (), settings)["Subject"]
    if d.channel_type == "pagerduty":
        body = pagerduty.event(d.alert_kind, facts, "ROUTING_KEY", settings)
        if d.alert_kind == "resolve":
            return f"resolve dedup_key={body['dedup_key']}"
        return f"trigger dedup_key={body['dedup_key']} severity={body['payload']['severity']}"
    return slack.message(d.alert_kind, facts, settings)["text"]


# --- `spendwatch alerts test` -----------------------------------------------------------------


def send_test_messages(settings: AlertSettings) -> list[tuple[str, str, str]]:
    """One test message to every configured channel: (channel, state, detail)."""
    routing = load_routing(settings.routing_file)
    found = destinations(routing, settings)
    redact = Redactor(settings, found)
    stamp = uuid.uuid4().hex[:12]
    out = []
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        for name, dest in found.items():
            if not dest.configured:
                out.append((name, "not configured", dest.missing or ""))
                continue
            try:
                if dest.type == "slack":
                    outcome = slack.send(client, dest.url or "", slack.test_message(settings))
                elif dest.type == "pagerduty":
                    for body in pagerduty.test_events(dest.routing_key or "", stamp):
                        outcome = pagerduty.send(client, dest.url or "", body)
                        if outcome.status != "sent":
                            break
                else:
                    outcome = mail.send(mail.test_message(dest.to, settings), settings)
            except Exception as exc:
                outcome = Outcome("failed", f"{type(exc).__name__}: {exc}")
            state = "ok" if outcome.status == "sent" else "FAILED"
            out.append((name, state, redact(short(outcome.detail, 300)) or ""))
    return out
