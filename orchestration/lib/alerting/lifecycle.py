"""The incident lifecycle and storm control: which alerts an alert run adds to the delivery log.

A pure function of the incidents in `marts.anomalies`, the delivery log so far, the routing
file, the mutes and the clock, so it is tested without a server or a warehouse:

- **trigger**: the first alert of an incident, once per routed channel. More hours of the same
  incident add nothing.
- **escalate**: the incident got worse (warning → critical) after it was alerted; goes to the
  channels the new severity routes to.
- **resolve**: the detector stopped firing: `resolve_after_quiet_hours` materialized hours after
  the incident's last anomalous hour were quiet (or the incident vanished from the mart when its
  hours were re-materialized). Sent to the Slack and PagerDuty channels that were alerted.
- An alert whose incident's latest hour ended more than `stale_after_hours` ago is recorded as
  `suppressed_stale`; one that matches a mute as `suppressed_muted`; a new incident of a series
  that was alerted on the channel within its detector's suppression interval as
  `suppressed_repeat`.
- **digest**: more than `storm_threshold` new alerts for one Slack or email channel in one run
  become one digest row; the alerts it lists are recorded as `grouped`.
  PagerDuty keeps one event per incident (its own grouping works on dedup keys).
- A route to a channel with no configuration adds no row (the caller logs it once per channel):
  once the channel is configured, the incidents that are still fresh reach it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from orchestration.lib.alerting.deliveries import Delivery
from orchestration.lib.alerting.incidents import SEVERITY_RANK, Incident
from orchestration.lib.alerting.routing import Routing, mute_matches

RESOLVABLE = ("slack", "pagerduty")
DIGESTIBLE = ("slack", "email")
ALERTED = ("sent", "pending", "sending", "grouped")


@dataclass(frozen=True)
class ActiveMute:
    feature: str | None
    detector: str | None
    environment: str | None
    until: datetime  # naive UTC
    reason: str
    source: str  # "alerting.yml" or the mute id of `spendwatch alerts mute`


@dataclass
class Plan:
    rows: list[Delivery] = field(default_factory=list)
    unconfigured: Counter = field(default_factory=Counter)  # channel → alerts it would get
    unrouted: int = 0


def plan(
    incidents: list[Incident],
    existing: list[Delivery],
    routing: Routing,
    configured: Callable[[str], bool],
    mutes: list[ActiveMute],
    now: datetime,
    latest_hour: datetime | None,
    run_id: str,
    source_run_id: str | None = None,
) -> Plan:
    """The new rows of the delivery log (all times naive UTC)."""
    settings = routing.settings
    out = Plan()
    by_key: dict[str, list[Delivery]] = defaultdict(list)
    for row in existing:
        by_key[row.incident_key].append(row)
    taken = {r.key for r in existing}
    last_sent: dict[tuple, datetime] = {}  # (series, channel) → latest sent trigger/escalate
    for r in existing:
        if r.alert_kind in ("trigger", "escalate") and r.status == "sent" and r.sent_at:
            k = (r.series, r.channel)
            last_sent[k] = max(last_sent.get(k, r.sent_at), r.sent_at)

    def add(row: Delivery) -> None:
        if row.key not in taken:
            taken.add(row.key)
            out.rows.append(row)

    def new_row(kind: str, channel: str, facts: dict, status: str, note: str | None,
                severity: str, key: str) -> Delivery:  # fmt: skip
        return Delivery(
            incident_key=key, alert_kind=kind, channel=channel,
            channel_type=routing.channel_type(channel), status=status, severity=severity,
            detector=facts.get("detector"), metric=facts.get("metric"),
            feature=facts.get("feature"), environment=facts.get("environment"),
            model=facts.get("model"), team_id=facts.get("team_id"),
            incident_started_at=_ts(facts.get("started_at")),
            last_hour_at=_ts(facts.get("last_hour_at")), note=note,
            payload=json.dumps({**facts, "kind": kind}, sort_keys=True), created_at=now,
            next_attempt_at=now if status == "pending" else None, alert_run_id=run_id,
        )  # fmt: skip

    seen_keys = set()
    for inc in incidents:
        seen_keys.add(inc.incident_key)
        rows = by_key.get(inc.incident_key, [])
        alerted = [r for r in rows if r.alert_kind in ("trigger", "escalate")]
        alerted_rank = max((SEVERITY_RANK[r.severity] for r in alerted), default=0)
        rank = SEVERITY_RANK[inc.severity]
        facts = {
            **inc.payload(),
            "team": routing.team_of(inc.feature, inc.team_id),
            "dagster_run_id": source_run_id or run_id,
        }
        channels = routing.channels_for(
            inc.severity, inc.detector, inc.feature, inc.environment, inc.team_id
        )
        if not channels and not alerted:
            out.unrouted += 1
        age = now - (inc.last_hour_at + timedelta(hours=1))
        stale_after = timedelta(hours=settings.stale_hours(inc.detector))
        quiet = timedelta(hours=settings.quiet_hours(inc.detector))
        for channel in channels:
            on_channel = [r for r in alerted if r.channel == channel]
            if max((SEVERITY_RANK[r.severity] for r in on_channel), default=0) >= rank:
                continue  # this channel already knows (more hours of one incident add nothing)
            if not configured(channel):
                out.unconfigured[channel] += 1
                continue
            kind = "escalate" if 0 < alerted_rank < rank else "trigger"
            extra = {"previous_severity": "warning"} if kind == "escalate" else {}
            status, note = "pending", None
            mute = next((m for m in mutes if mute_matches(
                m.feature, m.detector, m.environment, inc.feature, inc.detector,
                inc.environment)), None)  # fmt: skip
            repeat_window = settings.suppression_seconds(inc.detector)
            previous = last_sent.get((inc.series, channel))
            if age > stale_after:
                status = "suppressed_stale"
                hours = settings.stale_hours(inc.detector)
                note = (f"latest anomalous hour ended {_hours(age)} before this run "
                        f"(stale_after_hours = {hours:g})")  # fmt: skip
            elif mute is not None:
                status = "suppressed_muted"
                note = f"muted until {mute.until:%Y-%m-%d %H:%M} UTC by {mute.source}"
                note += f": {mute.reason}" if mute.reason else ""
            elif (kind == "trigger" and repeat_window > 0 and previous is not None
                  and now - previous < timedelta(seconds=repeat_window)):  # fmt: skip
                status = "suppressed_repeat"
                note = (f"the same series was alerted on {channel} at {previous:%H:%M} UTC, "
                        f"within the {inc.detector} suppression interval "
                        f"({repeat_window / 3600:g} h)")  # fmt: skip
            add(new_row(kind, channel, {**facts, **extra}, status, note, inc.severity,
                        inc.incident_key))  # fmt: skip
        ended = latest_hour is not None and latest_hour >= inc.last_hour_at + quiet
        if ended:
            resolve = {**facts, "quiet_since": (inc.last_hour_at + timedelta(hours=1)).isoformat(
                timespec="minutes"), "latest_scored_hour": latest_hour.isoformat(
                timespec="minutes"), "vanished": False}  # fmt: skip
            _resolve(rows + [r for r in out.rows if r.incident_key == inc.incident_key],
                     resolve, routing, configured, out, add, new_row)  # fmt: skip

    for key, rows in by_key.items():  # alerted incidents whose rows left the mart
        if key in seen_keys or key.startswith("digest:"):
            continue
        alerted = [r for r in rows if r.alert_kind in ("trigger", "escalate")]
        if not alerted:
            continue
        facts = {**max(alerted, key=lambda r: SEVERITY_RANK[r.severity]).facts, "vanished": True,
                 "latest_scored_hour": latest_hour.isoformat(timespec="minutes")
                 if latest_hour else None}  # fmt: skip
        facts.pop("kind", None)
        _resolve(rows, facts, routing, configured, out, add, new_row)

    _group_storms(out, settings.storm_threshold, routing, now, run_id, source_run_id)
    return out


def _resolve(rows, facts, routing, configured, out, add, new_row) -> None:
    resolved = {r.channel for r in rows if r.alert_kind == "resolve"}
    channels = []
    for r in rows:
        if (r.alert_kind in ("trigger", "escalate") and r.status in ALERTED
                and r.channel_type in RESOLVABLE and r.channel not in resolved
                and r.channel not in channels):  # fmt: skip
            channels.append(r.channel)
    for channel in channels:
        if not configured(channel):
            out.unconfigured[channel] += 1
            continue
        add(new_row("resolve", channel, facts, "pending", None, facts["severity"],
                    facts["incident_key"]))  # fmt: skip


def _group_storms(out: Plan, threshold: int, routing: Routing, now, run_id, source_run_id):
    pending: dict[str, list[Delivery]] = defaultdict(list)
    for row in out.rows:
        if row.status == "pending" and row.channel_type in DIGESTIBLE:
            pending[row.channel].append(row)
    for channel, rows in pending.items():
        if len(rows) <= threshold:
            continue
        digest_key = (
            "digest:"
            + hashlib.md5("\n".join(sorted("|".join(r.key) for r in rows)).encode()).hexdigest()
        )
        items = [r.facts for r in rows]
        worst = max((r.severity for r in rows), key=SEVERITY_RANK.__getitem__)
        for row in rows:
            row.status, row.digest_key, row.next_attempt_at = "grouped", digest_key, None
            row.note = f"listed in digest {digest_key} ({len(rows)} alerts in one run)"
        facts = {
            "kind": "digest", "incident_key": digest_key, "severity": worst,
            "count": len(rows), "items": items, "dagster_run_id": source_run_id or run_id,
        }  # fmt: skip
        out.rows.append(
            Delivery(
                incident_key=digest_key, alert_kind="digest", channel=channel,
                channel_type=routing.channel_type(channel), status="pending", severity=worst,
                payload=json.dumps(facts, sort_keys=True), created_at=now, next_attempt_at=now,
                note=f"{len(rows)} alerts in one run (storm_threshold = {threshold})",
                alert_run_id=run_id,
            )
        )  # fmt: skip


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"
