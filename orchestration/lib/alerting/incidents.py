"""Incidents as alerting sees them: the rows of `marts.anomalies` grouped by `incident_key`,
with the figures of the row that sets the incident's severity, and the words and numbers every
channel shows.

Only the columns of the `marts.anomalies` contract are read (docs/architecture.md), plus the
latest scored hour of `marts.agg_hourly_feature_cost` to tell when an incident has ended.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from spendwatch.config import AlertSettings

SEVERITY_RANK = {"warning": 1, "critical": 2}

INCIDENTS_SQL = """
with anomaly_rows as (
    select *, case severity when 'critical' then 2 else 1 end as severity_rank
    from marts.anomalies
),

headline as (
    -- the row that sets the incident's severity: the worst, then the latest
    select *
    from anomaly_rows
    qualify row_number() over (
        partition by incident_key order by severity_rank desc, hour_at desc, anomaly_id
    ) = 1
),

spans as (
    select
        incident_key,
        min(incident_started_at) as started_at,
        min(hour_at) as first_hour_at,
        max(hour_at) as last_hour_at,
        count(distinct hour_at) as hours,
        sum(estimated_excess_cost_usd) as excess_usd_total,
        min(case when severity = 'critical' then hour_at end) as critical_since
    from anomaly_rows
    group by incident_key
)

select
    headline.incident_key, headline.detector, headline.severity, headline.metric,
    headline.feature, headline.environment, headline.model, headline.team_id,
    coalesce(spans.started_at, spans.first_hour_at) as started_at, spans.first_hour_at,
    spans.last_hour_at, spans.hours, spans.critical_since,
    headline.anomaly_id, headline.hour_at, headline.observed_value, headline.baseline_value,
    headline.stddev_value, headline.z_score, headline.ratio_to_baseline,
    headline.estimated_excess_cost_usd, spans.excess_usd_total, headline.message,
    headline.runbook, headline.top_driver, headline.top_driver_usd, headline.drivers
from headline
inner join spans on spans.incident_key = headline.incident_key
order by spans.last_hour_at, headline.incident_key
"""


@dataclass(frozen=True)
class Incident:
    incident_key: str
    detector: str
    severity: str  # the worst so far
    metric: str | None
    feature: str | None
    environment: str | None
    model: str | None
    team_id: str | None
    started_at: datetime
    first_hour_at: datetime
    last_hour_at: datetime
    hours: int
    critical_since: datetime | None
    anomaly_id: str
    hour_at: datetime  # the headline row's hour
    observed_value: float | None
    baseline_value: float | None
    stddev_value: float | None
    z_score: float | None
    ratio_to_baseline: float | None
    estimated_excess_cost_usd: float | None
    excess_usd_total: float | None
    message: str | None
    runbook: str | None
    # the cost drivers of the headline hour (cost findings only; docs/detection.md)
    top_driver: str | None = None
    top_driver_usd: float | None = None
    drivers: str | None = None  # JSON: [{"driver", "usd", "share"}, ...] sorted by |usd|

    @property
    def series(self) -> tuple:
        """The series the incident belongs to (incidents of one series share it)."""
        return (self.detector, self.metric, self.feature, self.environment, self.model,
                self.team_id)  # fmt: skip

    def payload(self) -> dict[str, Any]:
        """The facts an alert shows, as JSON values (stored with each delivery)."""
        out = {}
        for key, value in asdict(self).items():
            if isinstance(value, datetime):
                value = value.isoformat(timespec="minutes")
            elif isinstance(value, float) and not math.isfinite(value):
                value = None
            out[key] = value
        return out


NUMBERS = (
    "observed_value", "baseline_value", "stddev_value", "z_score", "ratio_to_baseline",
    "estimated_excess_cost_usd", "excess_usd_total", "top_driver_usd",
)  # fmt: skip


def _number(value) -> float | None:
    return None if value is None else float(value)


def load_incidents(con: duckdb.DuckDBPyConnection) -> list[Incident]:
    cursor = con.execute(INCIDENTS_SQL)
    names = [d[0] for d in cursor.description]
    incidents = []
    for row in cursor.fetchall():
        record = dict(zip(names, row, strict=True))
        for key in NUMBERS:
            record[key] = _number(record[key])
        incidents.append(Incident(**record))
    return incidents


def latest_scored_hour(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The latest hour the pipeline has materialized (the hourly mart is dense for active
    series, so its newest hour is the newest hour scored)."""
    for sql in (
        "select max(hour_at) from marts.agg_hourly_feature_cost",
        "select max(hour_at) from marts.anomalies",
    ):
        try:
            return con.execute(sql).fetchone()[0]
        except duckdb.CatalogException:
            continue
    return None


# --- words and numbers ---------------------------------------------------------------------


def fmt_usd(value: float | None) -> str:
    if value is None:
        return "–"
    return f"${value:,.2f}" if abs(value) >= 0.1 or value == 0 else f"${value:.4f}"


def fmt_value(metric: str | None, value: float | None) -> str:
    """A metric's value in its unit: dollars, percent or a count."""
    if value is None:
        return "–"
    metric = metric or ""
    if metric.endswith("_usd") or metric == "cost_usd":
        return fmt_usd(value)
    if metric.endswith(("_rate", "_share")):
        return f"{100 * value:.1f} %"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.3g}"


def fmt_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×" if value < 10 else f"{value:,.0f}×"


def fmt_hour(value: str | datetime | None) -> str:
    if value is None:
        return "–"
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return f"{at:%Y-%m-%d %H:%M} UTC"


def hour_span(facts: dict[str, Any]) -> str:
    """`2026-11-26 14:00–16:00 UTC (3 h)`: the incident's hours, end exclusive."""
    first = datetime.fromisoformat(facts["first_hour_at"])
    last = datetime.fromisoformat(facts["last_hour_at"]) + timedelta(hours=1)
    end = f"{last:%H:%M}" if last.date() == first.date() else f"{last:%Y-%m-%d %H:%M}"
    return f"{first:%Y-%m-%d %H:%M}–{end} UTC ({facts['hours']} h)"


def dimension(facts: dict[str, Any]) -> str:
    """`smart-reply/production` (or the team, or the model, for findings without a feature)."""
    head = facts.get("feature") or facts.get("team_id") or facts.get("model") or "all features"
    env = facts.get("environment")
    return f"{head}/{env}" if env else head


def runbook_url(settings: AlertSettings, facts: dict[str, Any]) -> str:
    """`<base>/<detector>.md`; the anomaly's `runbook` column names the file."""
    name = (facts.get("runbook") or f"docs/runbooks/{facts['detector']}.md").rsplit("/", 1)[-1]
    return settings.runbook_base_url + name


def dagster_run_url(settings: AlertSettings, run_id: str | None) -> str | None:
    return f"{settings.dagster_url}/runs/{run_id}" if run_id else None


def sentence(facts: dict[str, Any]) -> str:
    """The anomaly's own message, without the `feature/environment: ` it starts with (the
    title already says where)."""
    text = facts.get("message") or ""
    return text.removeprefix(f"{dimension(facts)}: ")


def title(kind: str, facts: dict[str, Any]) -> str:
    """One line: what, how bad, where. Used as Slack header, email subject, PagerDuty summary."""
    sev = facts["severity"].upper()
    where = dimension(facts)
    if kind == "resolve":
        return f"RESOLVED {facts['detector']} · {where}"
    if kind == "escalate":
        return f"{sev} (escalated) {facts['detector']} · {where}"
    return f"{sev} {facts['detector']} · {where}"


def digest_order(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A digest's alerts: new before resolved, critical first, then by excess dollars."""
    return sorted(
        items,
        key=lambda i: (
            i["kind"] == "resolve",
            i["severity"] != "critical",
            -(i.get("estimated_excess_cost_usd") or 0),
        ),
    )


def cost_drivers(facts: dict[str, Any], limit: int = 3) -> list[dict[str, Any]]:
    """The headline hour's cost drivers that moved money (largest first, at most `limit`),
    from the anomaly's `drivers` JSON; [] for findings without them."""
    try:
        drivers = json.loads(facts.get("drivers") or "[]")
    except ValueError:
        return []
    return [d for d in drivers if d.get("usd")][:limit]


def drivers_line(facts: dict[str, Any]) -> str | None:
    """'input_tokens_per_call +$33.10 (80 %) · model_mix +$6.30 (15 %)', or None."""
    parts = []
    for d in cost_drivers(facts):
        share = f" ({100 * d['share']:.0f} %)" if d.get("share") is not None else ""
        sign = "+" if d["usd"] > 0 else "-"
        parts.append(f"{d['driver']} {sign}{fmt_usd(abs(d['usd']))}{share}")
    return " · ".join(parts) or None


def figures(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """The figures every channel shows, as (label, value) pairs."""
    metric = facts.get("metric")
    pairs = [
        ("Feature", facts.get("feature") or "–"),
        ("Environment", facts.get("environment") or "–"),
        ("Model", facts.get("model") or "–"),
        ("Team", facts.get("team") or facts.get("team_id") or "–"),
        (f"Observed ({metric})" if metric else "Observed",
         fmt_value(metric, facts.get("observed_value"))),
        ("Baseline", fmt_value(metric, facts.get("baseline_value"))),
        ("Ratio to baseline", fmt_ratio(facts.get("ratio_to_baseline"))),
        ("Est. excess cost", f"{fmt_usd(facts.get('estimated_excess_cost_usd'))} in the hour, "
                             f"{fmt_usd(facts.get('excess_usd_total'))} so far"),
        ("Hour (UTC)", fmt_hour(facts.get("hour_at"))),
        ("Incident", hour_span(facts)),
    ]  # fmt: skip
    if (line := drivers_line(facts)) is not None:
        pairs.append(("Cost drivers", line))
    return pairs
