"""`spendwatch export datadog|cloudwatch [--start --end]` and `spendwatch export --status`.
Imported only when one of these commands runs (no Dagster here)."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestration.lib.exports import log as export_log
from orchestration.lib.exports.run import export_metrics
from spendwatch import warehouse
from spendwatch.config import EXPORT_DESTINATIONS, Paths, export_settings


class ConsoleLog:
    def __init__(self, console: Console):
        self.console = console

    def info(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def warning(self, text: str) -> None:
        self.console.print(f"[yellow]{escape(text)}[/]", highlight=False, soft_wrap=True)


def export(
    p: Paths, console: Console, destination: str, start: datetime | None, end: datetime | None
) -> int:
    settings = export_settings()
    missing = settings.missing(destination)
    if missing:
        raise ValueError(f"the {destination} export is not configured: {missing} (README, "
                         "\"Metrics in Datadog and CloudWatch\")")  # fmt: skip
    report = export_metrics(
        p.warehouse, destination, settings, start=start, end=end, logger=ConsoleLog(console)
    )
    return 0 if report.ok else 1


def _at(value: datetime | None) -> str:
    return "—" if value is None else f"{value:%Y-%m-%d %H:%M}"


def show_status(p: Paths, console: Console, failures: int = 10) -> int:
    settings = export_settings()
    con = warehouse.open_warehouse(p.warehouse, read_only=True)
    try:
        rows, open_rows = export_log.status(con, failures)
    finally:
        con.close()
    by_destination = {r.destination: r for r in rows}
    table = Table(title="metric exports (ops.metric_exports)", title_justify="left")
    for name in ("destination", "hours", "sent", "partial", "failed", "first hour",
                 "last hour sent", "last attempt", "points sent"):  # fmt: skip
        numeric = name in ("hours", "sent", "partial", "failed", "points sent")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    for destination in EXPORT_DESTINATIONS:
        r = by_destination.get(destination)
        if r is None:
            table.add_row(destination, "0", "", "", "", "—", "—", "—", "")
            continue
        table.add_row(
            destination, f"{r.hours:,}", f"{r.sent:,}", f"{r.partial:,}", f"{r.failed:,}",
            _at(r.first_hour), _at(r.last_sent_hour), _at(r.last_attempt_at),
            f"{r.points_sent:,}",
        )  # fmt: skip
    console.print(table)
    for destination in EXPORT_DESTINATIONS:
        missing = settings.missing(destination)
        r = by_destination.get(destination)
        where = f"; latest export to {r.target}" if r is not None and r.target else ""
        state = "configured" if missing is None else f"not configured ({missing})"
        console.print(f"{destination}: {state}{where}", highlight=False, soft_wrap=True)
    if not open_rows:
        console.print("every exported hour was sent completely")
        return 0
    waiting = Table(
        title=f"hours not sent completely (newest {failures}; retried by the next export)",
        title_justify="left",
    )
    for name in ("hour (UTC)", "destination", "status", "points", "attempts", "last attempt",
                 "error"):  # fmt: skip
        waiting.add_column(name, overflow="fold")
    for hour_at, destination, status, sent, points, attempts, last, error in open_rows:
        waiting.add_row(
            _at(hour_at), destination, status, f"{sent:,}/{points:,}", str(attempts), _at(last),
            escape(error or ""),
        )  # fmt: skip
    console.print(waiting)
    return 0
