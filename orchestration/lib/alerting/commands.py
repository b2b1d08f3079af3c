"""`spendwatch alerts send | list | test | mute | unmute`: the alert run by hand, and what a
person needs around it. Imported only when one of these commands runs (no Dagster here)."""

from __future__ import annotations

import getpass
import re
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.table import Table

from orchestration.lib.alerting.channels import destinations
from orchestration.lib.alerting.deliveries import (
    ensure_tables,
    naive,
    open_warehouse,
    read_deliveries,
    read_mutes,
    transaction,
)
from orchestration.lib.alerting.dispatch import RunReport, describe, run_alerts, send_test_messages
from orchestration.lib.alerting.incidents import (
    dimension,
    fmt_usd,
    latest_scored_hour,
    load_incidents,
)
from orchestration.lib.alerting.routing import known_detectors, load_routing
from spendwatch.config import Paths, alert_settings


class ConsoleLog:
    """The logger interface the alert run uses, printing to the terminal."""

    def __init__(self, console: Console):
        self.console = console

    def info(self, text: str) -> None:
        self.console.print(f"  {text}", highlight=False, markup=False)

    def warning(self, text: str) -> None:
        self.console.print(f"  [yellow]{_escape(text)}[/]", highlight=False)

    def error(self, text: str) -> None:
        self.console.print(f"  [red]{_escape(text)}[/]", highlight=False)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def send(p: Paths, console: Console, dry_run: bool, source_run_id: str | None = None) -> int:
    settings = alert_settings()
    report = run_alerts(
        p.warehouse, settings, ignore_backoff=True, dry_run=dry_run,
        source_run_id=source_run_id, logger=ConsoleLog(console),
    )  # fmt: skip
    print_report(report, console)
    return 0 if dry_run or not (report.count("failed") or report.count("retry")) else 1


def print_report(report: RunReport, console: Console) -> None:
    if report.dry_run:
        if not report.previews:
            console.print(f"dry run: {report.incidents} incidents, nothing would be sent")
        else:
            console.print(
                f"dry run: {len(report.previews)} alert(s) would be sent "
                "(nothing is sent or recorded):"
            )
        for d, text in report.previews:
            state = ""
            if d.channel in report.unconfigured:
                state = f" [dim](not configured: {_escape(report.unconfigured[d.channel])})[/]"
            console.print(f"  [bold]→ {d.channel}[/] {d.alert_kind}{state}", highlight=False)
            console.print(f"    {_escape(text)}", highlight=False, soft_wrap=True, emoji=False)
        suppressed = {s: n for s, n in report.planned.items() if s != "pending"}
        if suppressed:
            console.print(
                "  held back (not sent): "
                + ", ".join(f"{n} {s}" for s, n in sorted(suppressed.items()))
            )
        return
    sent, retry, failed = report.count("sent"), report.count("retry"), report.count("failed")
    released = report.count("released")
    recorded = {s: n for s, n in report.planned.items() if s not in ("pending",)}
    if not report.results:
        extra = (
            "; recorded " + ", ".join(f"{n} {s}" for s, n in sorted(recorded.items()))
            if recorded
            else ""
        )
        console.print(
            f"nothing to send: {report.incidents} incidents, no new or pending alerts{extra}"
        )
        return
    console.print(
        f"alert run {report.run_id}: [green]{sent} sent[/], {retry} to retry, "
        f"{failed} failed, {released} waiting behind a failed channel"
        + (
            "; recorded " + ", ".join(f"{n} {s}" for s, n in sorted(recorded.items()))
            if recorded
            else ""
        )
    )


def list_incidents(p: Paths, console: Console, hours: int) -> int:
    """Open incidents (and those of the last `hours`), with each channel's delivery state."""
    settings = alert_settings()
    routing = load_routing(settings.routing_file)
    found = destinations(routing, settings)
    now = naive(datetime.now(UTC))
    con = open_warehouse(p.warehouse, settings.warehouse_wait_seconds, read_only=True,
                         logger=ConsoleLog(console))  # fmt: skip
    try:
        incidents = load_incidents(con)
        latest = latest_scored_hour(con)
        rows = read_deliveries(con)
        mutes = read_mutes(con, now)
    finally:
        con.close()
    by_key = defaultdict(list)
    for r in rows:
        by_key[r.incident_key].append(r)
    digests = {r.incident_key: r for r in rows if r.alert_kind == "digest"}
    shown = []
    for inc in incidents:
        quiet = timedelta(hours=routing.settings.quiet_hours(inc.detector))
        over = latest is not None and latest >= inc.last_hour_at + quiet
        recent = inc.last_hour_at >= now - timedelta(hours=hours)
        unfinished = any(r.status in ("pending", "sending") for r in by_key[inc.incident_key])
        if not over or recent or unfinished:
            shown.append((inc, over))
    scored = f"{latest:%Y-%m-%d %H:00} UTC" if latest else "never"
    console.print(
        f"{len(shown)} incident(s) open or active in the last {hours} h "
        f"(latest scored hour: {scored}; {len(incidents)} incidents in marts.anomalies)"
    )
    if shown:
        table = Table(show_lines=False)
        for col in (
            "state",
            "severity",
            "detector",
            "where",
            "hours (UTC)",
            "excess",
            "deliveries",
        ):
            table.add_column(col, overflow="fold")
        for inc, over in sorted(shown, key=lambda x: (x[1], -x[0].last_hour_at.timestamp())):
            cells = []
            for r in by_key[inc.incident_key]:
                state = r.status
                if r.status == "grouped" and r.digest_key in digests:
                    state = f"grouped→{digests[r.digest_key].status}"
                if r.status == "pending" and r.attempts:
                    state += f" ({r.attempts} tries, next {r.next_attempt_at:%H:%M:%S})"
                cells.append(f"{r.channel} {r.alert_kind}: {state}")
            span = f"{inc.first_hour_at:%m-%d %H:00}–{inc.last_hour_at + timedelta(hours=1):%H:00}"
            table.add_row(
                "resolved" if over else "[bold]open[/]", inc.severity, inc.detector,
                dimension(inc.payload()), f"{span} ({inc.hours} h)",
                fmt_usd(inc.excess_usd_total), "\n".join(cells) or "[dim]none[/]",
            )  # fmt: skip
        console.print(table)
    missing = [f"{n} ({d.missing})" for n, d in found.items() if not d.configured]
    if missing:
        console.print(f"[dim]not configured: {'; '.join(missing)}[/]")
    if mutes or routing.active_mutes(now.replace(tzinfo=UTC)):
        console.print("active mutes: `spendwatch alerts mute --list`")
    return 0


def test_channels(console: Console) -> int:
    results = send_test_messages(alert_settings())
    table = Table(title="spendwatch alerts test", title_justify="left")
    for col in ("channel", "result", "detail"):
        table.add_column(col, overflow="fold")
    for name, state, detail in results:
        style = {"ok": "green", "FAILED": "red"}.get(state, "dim")
        table.add_row(name, f"[{style}]{state}[/]", _escape(detail))
    console.print(table)
    return 1 if any(state == "FAILED" for _, state, _ in results) else 0


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhd])$")


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"--for {text!r}: write a duration such as 30m, 4h or 2d")
    n, unit = float(m.group(1)), m.group(2)
    return timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: n})


def mute(
    p: Paths, console: Console, feature: str | None, detector: str | None,
    environment: str | None, duration: str | None, until: str | None, reason: str,
) -> int:  # fmt: skip
    if not (feature or detector):
        raise ValueError("alerts mute needs --feature, --detector or both (or --list)")
    if detector and detector not in known_detectors():
        raise ValueError(
            f"unknown detector {detector!r}; known: {', '.join(sorted(known_detectors()))}"
        )
    now = naive(datetime.now(UTC))
    if bool(duration) == bool(until):
        raise ValueError("alerts mute needs exactly one of --for (e.g. 4h) and --until (ISO time)")
    if duration:
        until_at = now + parse_duration(duration)
    else:
        try:
            at = datetime.fromisoformat(until.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"--until {until!r} is not an ISO time (2026-12-01T09:00Z)") from None
        until_at = naive(at if at.tzinfo else at.replace(tzinfo=UTC))
        if until_at <= now:
            raise ValueError(f"--until {until} is in the past")
    mute_id = uuid.uuid4().hex[:8]
    settings = alert_settings()
    con = open_warehouse(p.warehouse, settings.warehouse_wait_seconds, logger=ConsoleLog(console))
    try:
        transaction(con, ensure_tables)
        transaction(
            con,
            lambda c: c.execute(
                "insert into ops.alert_mutes values (?, ?, ?, ?, ?, ?, ?, ?)",
                [mute_id, feature, detector, environment, until_at, reason, now, _user()],
            ),
        )
    finally:
        con.close()
    scope = " ".join(
        f"{k}={v}" for k, v in (("feature", feature), ("detector", detector),
                                ("environment", environment)) if v
    )  # fmt: skip
    console.print(
        f"mute {mute_id}: {scope} until {until_at:%Y-%m-%d %H:%M} UTC"
        + (f" ({reason})" if reason else "")
        + f"; lift it early with `spendwatch alerts unmute {mute_id}`"
    )
    return 0


def list_mutes(p: Paths, console: Console) -> int:
    settings = alert_settings()
    routing = load_routing(settings.routing_file)
    now = naive(datetime.now(UTC))
    con = open_warehouse(p.warehouse, settings.warehouse_wait_seconds, read_only=True,
                         logger=ConsoleLog(console))  # fmt: skip
    try:
        rows = read_mutes(con, now)
    finally:
        con.close()
    table = Table(title="active mutes", title_justify="left")
    for col in ("id", "feature", "detector", "environment", "until (UTC)", "reason"):
        table.add_column(col)
    for m in rows:
        table.add_row(m.mute_id, m.feature or "*", m.detector or "*", m.environment or "*",
                      f"{m.until_at:%Y-%m-%d %H:%M}", m.reason or "")  # fmt: skip
    for m in routing.active_mutes(now.replace(tzinfo=UTC)):
        table.add_row(routing.path.name, m.feature or "*", m.detector or "*",
                      m.environment or "*", f"{m.until:%Y-%m-%d %H:%M}", m.reason)  # fmt: skip
    console.print(table)
    return 0


def unmute(p: Paths, console: Console, mute_id: str) -> int:
    settings = alert_settings()
    con = open_warehouse(p.warehouse, settings.warehouse_wait_seconds, logger=ConsoleLog(console))
    try:
        transaction(con, ensure_tables)
        gone = transaction(
            con,
            lambda c: c.execute(
                "delete from ops.alert_mutes where mute_id = ? returning mute_id", [mute_id]
            ).fetchall(),
        )
    finally:
        con.close()
    if not gone:
        raise ValueError(
            f"no mute {mute_id!r} (see `spendwatch alerts mute --list`; mutes in the routing "
            "file are lifted by editing it)"
        )
    console.print(f"mute {mute_id} lifted")
    return 0


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


__all__ = ["describe", "list_incidents", "list_mutes", "mute", "send", "test_channels", "unmute"]
