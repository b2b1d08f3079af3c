"""The spend dashboard: one self-contained HTML file rendered from the warehouse.

`build_report(warehouse, out)` aggregates the marts in SQL (`queries`), embeds the results as
JSON beside the chart library (Plotly, inlined) and the page's own script (`render`), and
writes the file atomically. Opened from disk or a CI artifact, the page makes no network
request of any kind. Used by `spendwatch report`, `spendwatch demo` and the Dagster asset
`spend_report`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from spendwatch.report import queries
from spendwatch.report.queries import ReportError, Window

__all__ = ["DEFAULT_DAYS", "STEPS", "ReportError", "ReportResult", "build_report", "collect"]

#: Days of hourly detail a report shows unless told otherwise.
DEFAULT_DAYS = 14
MAX_DAYS = 92
PROJECT_DIR = Path(__file__).resolve().parents[2]

#: progress(step, total, description): called before each step, and once more at the end.
Progress = Callable[[int, int, str], None]


@dataclass
class ReportResult:
    path: Path
    size_bytes: int
    seconds: float
    as_of: datetime
    days: int
    environment: str | None
    calls: int
    spend_usd: float
    incidents: int
    open_incidents: int
    alerting: bool
    step_seconds: dict[str, float] = field(default_factory=dict)


STEPS = (
    "opening the warehouse",
    "spend by hour, feature and model",
    "features and models per period",
    "teams, users and endpoints",
    "seasonal baselines",
    "KPIs and budgets",
    "incidents and alert deliveries",
    "data quality",
    "prices for the calculator",
    "rendering the page",
)


def collect(
    warehouse: Path,
    days: int = DEFAULT_DAYS,
    environment: str | None = None,
    today: date | None = None,
    progress: Progress | None = None,
    timings: dict[str, float] | None = None,
    wait_seconds: float = 60.0,
) -> dict:
    """Every dataset the page embeds, aggregated in the warehouse. Opens the warehouse
    read-only for as long as the queries take and closes it."""
    if not 1 <= days <= MAX_DAYS:
        raise ReportError(f"--days must be between 1 and {MAX_DAYS}; got {days}")
    timings = timings if timings is not None else {}
    clock = [time.monotonic()]
    current = [0]

    def step(i: int) -> None:
        current[0] = i
        if i > 0:
            now = time.monotonic()
            timings[STEPS[i - 1]] = round(now - clock[0], 3)
            clock[0] = now
        if progress:
            progress(i, len(STEPS), STEPS[i] if i < len(STEPS) else "done")

    step(0)

    def waiting() -> None:
        if progress:
            progress(0, len(STEPS), "waiting for the warehouse (another process is writing it)")

    con = queries.connect(Path(warehouse), wait_seconds=wait_seconds, on_wait=waiting)
    try:
        extent = queries.extent(con, environment)
        as_of = extent["last_hour"] + timedelta(hours=1)
        window = Window(as_of, days, environment, today or datetime.now(UTC).date())
        envs = queries.environments(con, window)
        step(1)
        queries.build_cube(con, window)
        top = queries.top_lists(con)
        hourly = queries.hourly_series(con, window)
        daily = queries.daily_series(con, window)
        step(2)
        fm = queries.feature_model_periods(con, window)
        step(3)
        drivers = queries.drivers(con, window)
        step(4)
        band = queries.band(con, window)
        flagged = queries.anomaly_hours(con, window)
        step(5)
        kpis = queries.kpis(con, window)
        budgets = queries.budgets(con, window)
        team_budgets = queries.team_budgets(con, window)
        step(6)
        incidents = queries.incidents(con, window)
        counts = queries.incident_counts(con, window)
        deliveries = queries.deliveries(con, incidents.get("incident_key", []))
        step(7)
        quality = {
            "rejected": queries.rejected(con, window),
            "load": queries.load_log(con, window),
            "checks": queries.checks(con, window),
            "usage_detail": queries.usage_detail(con, window),
            "has_checks": queries.has_table(con, "ops", "check_results"),
        }
        reconciliation = queries.reconciliation(con)
        step(8)
        prices = queries.prices(con)
    except duckdb.Error as exc:
        raise ReportError(
            f"reading the warehouse {warehouse} failed ({STEPS[current[0]]}): {exc}. A warehouse "
            "built by another spendwatch version may lack a table or column the report reads: "
            "rebuild the marts with `spendwatch materialize --start …`"
        ) from exc
    finally:
        con.close()
    step(9)
    runbooks = _runbooks(incidents.get("runbook", []))
    return {
        "meta": {
            "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
            "as_of": as_of.strftime("%Y-%m-%d %H:%M"),
            "first_hour": extent["first_hour"].strftime("%Y-%m-%d %H:%M"),
            "hourly_start": window.hourly_start.strftime("%Y-%m-%d %H:%M"),
            "prev_month_start": window.prev_month_start.strftime("%Y-%m-%d"),
            "month_start": window.month_start.strftime("%Y-%m-%d"),
            "today": window.today.isoformat(),
            "days": days,
            "ranges": window.ranges,
            "environment": environment,
            "environments": envs,
            "open_within_hours": queries.OPEN_WITHIN_HOURS,
            "top_features": queries.TOP_FEATURES,
            "top_models": queries.TOP_MODELS,
            "top_drivers": queries.TOP_DRIVERS,
            "max_incidents": queries.MAX_INCIDENTS,
            "alerting": deliveries is not None,
            "warehouse": str(warehouse),
            "version": _version(),
        },
        "features": top["features"],
        "models": top["models"],
        "hourly": hourly,
        "daily": daily,
        "fm": fm,
        "drivers": drivers,
        "band": band,
        "anomaly_hours": flagged,
        "kpis": kpis,
        "budgets": budgets,
        "team_budgets": team_budgets,
        "incidents": incidents,
        "incident_counts": counts,
        "deliveries": deliveries or {},
        "quality": quality,
        "prices": prices,
        "reconciliation": reconciliation,
        "runbooks": runbooks,
    }


def build_report(
    warehouse: Path | str,
    out: Path | str,
    days: int = DEFAULT_DAYS,
    environment: str | None = None,
    today: date | None = None,
    progress: Progress | None = None,
    wait_seconds: float = 60.0,
) -> ReportResult:
    """Aggregate the warehouse and write the dashboard to `out` (atomically)."""
    from spendwatch.report.render import render

    began = time.monotonic()
    timings: dict[str, float] = {}
    data = collect(Path(warehouse), days, environment, today, progress, timings, wait_seconds)
    render_began = time.monotonic()
    html = render(data)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    partial.write_text(html, encoding="utf-8")
    os.replace(partial, out)  # a reader never sees half a page
    timings[STEPS[-1]] = round(time.monotonic() - render_began, 3)
    if progress:
        progress(len(STEPS), len(STEPS), "done")
    calls = sum(data["hourly"].get("calls", []))
    spend = sum(v or 0 for v in data["hourly"].get("cost", []))
    incidents = data["incidents"]
    return ReportResult(
        path=out,
        size_bytes=out.stat().st_size,
        seconds=time.monotonic() - began,
        as_of=datetime.strptime(data["meta"]["as_of"], "%Y-%m-%d %H:%M"),
        days=days,
        environment=environment,
        calls=int(calls),
        spend_usd=float(spend),
        incidents=len(incidents.get("incident_key", [])),
        open_incidents=sum(1 for v in incidents.get("is_open", []) if v),
        alerting=data["meta"]["alerting"],
        step_seconds=timings,
    )


def _runbooks(paths: list[str | None]) -> dict[str, str]:
    """The text of each runbook the incidents name (files under docs/runbooks/), so the page
    shows them without a link to follow."""
    root = (PROJECT_DIR / "docs" / "runbooks").resolve()
    texts = {}
    for name in sorted({p for p in paths if p}):
        path = (PROJECT_DIR / name).resolve()
        if path.parent == root and path.suffix == ".md" and path.is_file():
            texts[name] = path.read_text(encoding="utf-8")
    return texts


def _version() -> str:
    from spendwatch import __version__

    return __version__
