"""The `spendwatch` command: demo, generate, materialize, report, alerts, export, prices,
explain, import-otel.

Dagster and dbt are imported inside the commands that run them, so `spendwatch --help` and
`import spendwatch` stay light.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import shlex
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from spendwatch.config import Paths, paths

#: What the `[warehouse]` extra installs; the SDK alone (tracker, OTel import) needs none of it.
WAREHOUSE_MODULES = {
    "dagster", "dagster_dbt", "dbt", "duckdb", "great_expectations", "pandas", "numpy",
    "genai_prices", "httpx", "yaml", "plotly", "boto3", "botocore",
}  # fmt: skip

# wide enough for the tables when the output is a file or a pipe (rich assumes 80 columns)
console = Console(width=None if sys.stdout.isatty() else 140)


def _instant(text: str) -> datetime:
    """An ISO 8601 time (offset optional, UTC assumed), in UTC."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time such as 2026-11-01 or 2026-11-01T14:00Z"
        ) from exc
    return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)


def _hour(text: str) -> datetime:
    """An ISO 8601 time (offset optional, UTC assumed), floored to the hour."""
    return _instant(text).replace(minute=0, second=0, microsecond=0)


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = 0
    if not 1 <= days <= 92:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days from 1 to 92")
    return days


def _current_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


# --- errors a user can cause: one line each, never a traceback -------------------------------


class CliError(Exception):
    """A problem the user can fix, said in one line; `code` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


#: exit status when another process holds the warehouse (as `alerts` when it stays locked)
LOCKED = 3
_LOCKED_FILE = re.compile(r'Could not set lock on file "(?P<path>[^"]*)"')


def _in_use(path: str | Path, holder: str, waited: str = "") -> str:
    return (
        f"the warehouse {path} is in use by {holder}{waited}: wait until it finishes (a "
        "materialization, `make ui`, a notebook or a report holding it open) or stop it, then "
        "run the command again"
    )


def lock_conflict(exc: BaseException | str) -> str | None:
    """The one-line message for DuckDB's "Could not set lock" error, also when dbt or Dagster
    quote it (None for any other), naming the process that holds the file."""
    from spendwatch.warehouse import lock_holder

    match = _LOCKED_FILE.search(str(exc))
    return None if match is None else _in_use(match["path"], lock_holder(str(exc)) or "")


def check_warehouse_free(p: Paths) -> None:
    """Wait while another process holds the warehouse file (saying who, once), up to
    $SPENDWATCH_WAREHOUSE_WAIT_SECONDS; then refuse in one line naming the holder. Nothing to
    check before the first run."""
    if not p.warehouse.exists():
        return
    from spendwatch.warehouse import WarehouseBusy, default_wait_seconds, open_warehouse

    held_by: list[str] = []

    def waiting(holder: str) -> None:
        held_by.append(holder)
        console.print(f"the warehouse is in use by {holder}: waiting for it ...")

    wait = default_wait_seconds()
    try:
        open_warehouse(p.warehouse, wait_seconds=wait, on_wait=waiting).close()
    except WarehouseBusy:
        holder = held_by[0] if held_by else "another process"
        raise CliError(_in_use(p.warehouse, holder, f" for more than {wait:g} s"), LOCKED) from None


def check_landing_files(p: Paths, start: datetime, end: datetime) -> None:
    """Refuse a range without a single landing file: a run over it would load nothing."""
    from orchestration.lib.ingest.landing import landing_files

    if not landing_files(p.landing, start, end):
        raise CliError(
            f"no landing files from {start:%Y-%m-%d %H:00} to {end:%Y-%m-%d %H:00} UTC in "
            f"{p.landing}: nothing to load. Record calls first (the tracker, `spendwatch "
            "generate` or `spendwatch import-otel`), or check the range and --home / "
            "SPENDWATCH_HOME"
        )


def user_error(exc: BaseException) -> tuple[str, int] | None:
    """The message and exit status of an error the user can fix; None for a real bug (whose
    traceback is kept)."""
    from spendwatch.warehouse import WarehouseBusy

    if isinstance(exc, CliError):
        return str(exc), exc.code
    if isinstance(exc, WarehouseBusy):  # a run kept writing longer than the CLI would wait
        return str(exc), LOCKED
    if (message := lock_conflict(exc)) is not None:  # DuckDB's, or dbt's / Dagster's quoting it
        return message, LOCKED
    if not isinstance(exc, OSError):
        return None
    where = exc.filename or "a file"
    fix = "choose a spendwatch home you can write: --home DIR or SPENDWATCH_HOME=DIR"
    if isinstance(exc, PermissionError):
        return f"permission denied on {where}: {fix}", 2
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        return f"cannot create {where}: a file is in the way where a folder should be; {fix}", 2
    if exc.errno == errno.EROFS:
        return f"cannot write {where}: the file system is read-only; {fix}", 2
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"cannot write {where}: no space left on the device (or quota exceeded)", 2
    return None


def print_error(message: str) -> None:
    """`error: <message>` on one line, whatever the width (no markup read from the message)."""
    console.print(Text.assemble(("error: ", "red"), message), soft_wrap=True)


def cmd_generate(args: argparse.Namespace) -> int:
    from spendwatch.generator import TrafficModel, generate, load_incidents

    out = args.out or paths(args.home).landing
    incidents = load_incidents(args.incidents, args.start, args.days)
    traffic = TrafficModel.smooth() if args.traffic == "smooth" else TrafficModel()
    began = time.monotonic()
    result = generate(
        out, args.start, args.days, args.calls_per_day, args.seed, incidents, traffic=traffic
    )
    console.print(
        f"wrote [bold]{result.calls:,}[/] calls in {result.files:,} hourly files to {result.out} "
        f"({time.monotonic() - began:.1f} s); {len(result.incidents)} incidents in "
        f"{result.out / 'incidents.json'}"
    )
    return 0


def cmd_materialize(args: argparse.Namespace) -> int:
    from orchestration.runner import materialize_range

    p = paths(args.home)
    end = args.end or _current_hour()
    if args.allow_empty:  # read by the ingest asset of this in-process run
        os.environ["SPENDWATCH_ALLOW_EMPTY_RELOAD"] = "1"  # (a range without files is the point)
    elif end > args.start:  # an empty range is refused by materialize_range with its own message
        check_landing_files(p, args.start, end)
    check_warehouse_free(p)
    summary = materialize_range(p, args.start, end, console)
    state = "[green]succeeded[/]" if summary.success else "[red]FAILED[/]"
    console.print(
        f"run {summary.run_id} {state}: {summary.hours} hours, {summary.materializations} assets "
        f"in {summary.seconds:.1f} s (Dagster instance: {p.dagster_home}; dbt output: "
        f"{summary.log_path})"
    )
    return 0 if summary.success else _run_failed(summary)


def _run_failed(summary) -> int:
    """One line saying why the run failed: a lock conflict by name, else its first error."""
    if summary.error and (message := lock_conflict(summary.error)):
        print_error(message)
        return LOCKED
    if summary.error:
        print_error(f"{summary.error} (full output: {summary.log_path})")
    return 1


def cmd_demo(args: argparse.Namespace) -> int:
    from orchestration.runner import materialize_range
    from spendwatch.generator import generate, load_incidents

    p = paths(args.home)
    end = _current_hour()
    start = end - timedelta(days=args.days)
    p.landing.mkdir(parents=True, exist_ok=True)  # an unusable home fails here, in one line
    console.rule("spendwatch demo")
    began = time.monotonic()
    began_at = time.time()
    incidents = load_incidents(args.incidents, start, args.days)
    gen = generate(p.landing, start, args.days, args.calls_per_day, args.seed, incidents)
    console.print(
        f"1. generated [bold]{gen.calls:,}[/] calls over {args.days} days "
        f"({start:%Y-%m-%d %H:00} → {end:%Y-%m-%d %H:00} UTC) with {len(incidents)} incidents "
        f"into {p.landing}"
    )
    console.print("2. materializing ingest + dbt marts for the whole range as one Dagster run")
    check_warehouse_free(p)
    summary = materialize_range(p, start, end, console)
    if not summary.success:
        console.print(
            f"[red]run {summary.run_id} failed[/]: see {summary.log_path} or open `make ui`"
        )
        return _run_failed(summary)
    console.print(
        f"   run {summary.run_id} succeeded in {summary.seconds:.1f} s (dbt output: "
        f"{summary.log_path})"
    )
    print_summary(p, start, end)
    demo_alerts(p, summary.run_id)
    if p.report.exists() and p.report.stat().st_mtime >= began_at:
        # the run's spend_report asset rendered it after the detectors
        console.print(
            f"5. dashboard (the run's spend_report asset): [bold]{p.report}[/] "
            f"({p.report.stat().st_size / 1e6:.1f} MB) — open it in a browser"
        )
    else:
        result = write_report(p, p.report, REPORT_DAYS, None)
        console.print(f"5. dashboard: [bold]{result.path}[/] — open it in a browser")
    console.print(f"demo finished in {time.monotonic() - began:.0f} s")
    return 0


def demo_alerts(p: Paths, run_id: str) -> None:
    """The alerts of the run's fresh incidents: sent when a channel is configured, else the
    dry run's preview (what would be sent where)."""
    from orchestration.lib.alerting.commands import send
    from spendwatch.warehouse import WarehouseBusy

    configured = any(
        os.environ.get(v)
        for v in ("SPENDWATCH_SLACK_WEBHOOK_URL", "SPENDWATCH_PAGERDUTY_ROUTING_KEY",
                  "SPENDWATCH_SMTP_HOST")
    )  # fmt: skip
    how = "sending" if configured else "no channel configured: dry run of"
    console.print(f"4. alerts: {how} the alerts of fresh incidents (`spendwatch alerts send`)")
    try:
        send(p, console, dry_run=not configured, source_run_id=run_id)
    except (ValueError, WarehouseBusy) as exc:
        console.print(f"[red]alerts not sent:[/] {exc}")


def cmd_alerts(args: argparse.Namespace) -> int:
    from orchestration.lib.alerting import commands
    from spendwatch.warehouse import WarehouseBusy

    p = paths(args.home)
    try:
        match args.alerts_command:
            case "send":
                return commands.send(p, console, args.dry_run)
            case "list":
                return commands.list_incidents(p, console, args.hours)
            case "test":
                return commands.test_channels(console)
            case "mute" if args.list:
                return commands.list_mutes(p, console)
            case "mute":
                return commands.mute(p, console, args.feature, args.detector, args.environment,
                                     args.duration, args.until, args.reason)  # fmt: skip
            case "unmute":
                return commands.unmute(p, console, args.mute_id)
    except WarehouseBusy as exc:
        console.print(f"[red]error:[/] {exc}")
        return 3
    return 2


def cmd_export(args: argparse.Namespace) -> int:
    from orchestration.lib.exports import commands

    p = paths(args.home)
    if args.status:
        if args.destination or args.start or args.end:
            raise CliError("--status shows the export log: give it alone (`spendwatch export "
                           "--status`)", 2)  # fmt: skip
        return commands.show_status(p, console)
    if not args.destination:
        raise CliError("say where to: `spendwatch export datadog` or `spendwatch export "
                       "cloudwatch` (or `spendwatch export --status`)", 2)  # fmt: skip
    if args.end and not args.start:
        raise CliError("--end needs --start (without a range: every complete hour of the last 7 "
                       "days not exported yet)", 2)  # fmt: skip
    return commands.export(p, console, args.destination, args.start, args.end)


REPORT_DAYS = 14  # spendwatch.report.DEFAULT_DAYS, without importing it for --help


def write_report(p: Paths, out: Path, days: int, environment: str | None):
    """Build the dashboard with a progress display (on a terminal, or SPENDWATCH_PROGRESS=1)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from spendwatch.report import build_report

    with Progress(
        TextColumn("[bold]report"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=True,
        disable=not console.is_terminal and os.environ.get("SPENDWATCH_PROGRESS") != "1",
    ) as progress:
        task = progress.add_task("opening the warehouse", total=None)

        def update(step: int, total: int, what: str) -> None:
            progress.update(task, completed=step, total=total, description=what)

        return build_report(p.warehouse, out, days=days, environment=environment, progress=update)


def cmd_report(args: argparse.Namespace) -> int:
    p = paths(args.home)
    out = Path(args.out).expanduser() if args.out else p.report
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder: give a file name such as {out / 'report.html'}")
    result = write_report(p, out, args.days, args.environment)
    scope = f"environment {result.environment}" if result.environment else "all environments"
    console.print(
        f"wrote [bold]{result.path}[/] ({result.size_bytes / 1e6:.1f} MB) in "
        f"{result.seconds:.1f} s: {result.days} days to {result.as_of:%Y-%m-%d %H:%M} UTC, "
        f"{scope}, {result.calls:,} calls, ${result.spend_usd:,.2f}, {result.incidents} "
        f"incidents ({result.open_incidents} open)",
        soft_wrap=True,
    )
    console.print(f"open it: {result.path.resolve().as_uri()}", soft_wrap=True)
    return 0


def print_summary(p: Paths, start: datetime, end: datetime) -> None:
    import duckdb

    con = duckdb.connect(str(p.warehouse), read_only=True)
    try:
        window = [start.replace(tzinfo=None), end.replace(tzinfo=None)]
        calls, cost, unpriced, hours = con.execute(
            "select sum(calls), sum(cost_usd), sum(unpriced_calls), count(distinct hour_at) "
            "from marts.agg_hourly_feature_cost where hour_at >= ? and hour_at < ?",
            window,
        ).fetchone()
        rejected = con.execute(
            "select count(*) from raw.llm_calls_rejected where partition_hour >= ? "
            "and partition_hour < ?",
            window,
        ).fetchone()[0]
        console.print(
            f"3. warehouse {p.warehouse}: [bold]{calls:,}[/] calls in {hours} hours, "
            f"[bold]${cost:,.2f}[/] spend, {unpriced:,} unpriced, {rejected:,} rejected lines"
        )
        for title, dim in (("Spend by feature", "feature"), ("Spend by model", "model")):
            table_name = "agg_hourly_feature_cost" if dim == "feature" else "agg_hourly_model_cost"
            rows = con.execute(
                f"select {dim}, sum(calls), sum(cost_usd), sum(cost_usd) / sum(priced_calls) "
                f"from marts.{table_name} where hour_at >= ? and hour_at < ? "
                "group by 1 order by 3 desc",
                window,
            ).fetchall()
            table = Table(title=title, title_justify="left")
            table.add_column(dim)
            table.add_column("calls", justify="right")
            table.add_column("cost (USD)", justify="right")
            table.add_column("per call", justify="right")
            for name, n, usd, per_call in rows:
                table.add_row(name, f"{n:,}", f"{usd:,.2f}", f"{per_call or 0:.5f}")
            console.print(table)
        incidents = con.execute(
            """
            select detector,
                max_by(severity, case severity when 'critical' then 2 else 1 end) as worst,
                count(distinct incident_key), count(*),
                sum(estimated_excess_cost_usd), arg_max(message, estimated_excess_cost_usd)
            from marts.anomalies where hour_at >= ? and hour_at < ?
            group by detector order by worst, 5 desc nulls last
            """,
            window,
        ).fetchall()
        table = Table(title="Anomalies found (marts.anomalies)", title_justify="left")
        for column in ("detector", "worst", "incidents", "hours", "excess USD", "biggest"):
            table.add_column(column, overflow="fold")
        for detector, worst, n_incidents, hours, excess, message in incidents:
            table.add_row(
                detector, worst, str(n_incidents), str(hours),
                f"{excess:,.2f}" if excess is not None else "-", message,
            )  # fmt: skip
        console.print(table)
    finally:
        con.close()
    query = (
        f"import duckdb; print(duckdb.connect({str(p.warehouse)!r}, read_only=True)"
        ".sql('from marts.agg_hourly_feature_cost limit 5'))"
    )  # quoted for the shell whatever the home's name (o'brien, spaces, ...)
    console.print(
        Text(
            f"Query it:  .venv/bin/python -c {shlex.quote(query)}\n"
            "Open the Dagster UI:  make ui   (then http://127.0.0.1:3000)"
        ),
        soft_wrap=True,
    )


def cmd_import_otel(args: argparse.Namespace) -> int:
    from spendwatch.otel import import_otel

    stats = import_otel(args.files, args.home)
    reasons = ", ".join(f"{k}: {v}" for k, v in stats["skipped_by_reason"].items())
    print(
        f"imported {stats['imported']} call events from {stats['spans']} spans in "
        f"{stats['files']} file(s) into {paths(args.home).landing}; skipped {stats['skipped']}"
        + (f" ({reasons})" if reasons else "")
    )
    for error in stats["errors"]:
        print(f"error: {error}", file=sys.stderr)
    return 1 if stats["errors"] else 0


def cmd_prices(args: argparse.Namespace) -> int:
    """`prices sync|list`; a seed or catalog it cannot read is reported on stderr (exit 2)."""
    from spendwatch.prices import PricesError

    try:
        return args.run(args)
    except PricesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_prices_sync(args: argparse.Namespace) -> int:
    from collections import Counter

    from spendwatch.prices import (
        CATALOG_NAME,
        DEFAULT_SEED,
        GenaiPrices,
        read_catalog,
        read_seed,
        sync,
        write_seed,
    )

    seed = Path(args.seed) if args.seed else DEFAULT_SEED
    catalog_path = Path(args.catalog) if args.catalog else seed.with_name(CATALOG_NAME)
    rows = read_seed(seed)
    result = sync(rows, read_catalog(catalog_path), GenaiPrices())
    print(f"genai-prices {result.genai_prices_version} (bundled data) vs {seed}")
    marks = {"added": "+", "changed": "~", "removed": "-"}
    for change in result.changes:
        print(f"  {marks[change.kind]} {change.kind:<7} {change.label}: {change.describe()}")
    for note in result.notes:
        print(f"  = {note}")
    counts = Counter(change.kind for change in result.changes)
    summary = (
        f"{counts['added']} added, {counts['changed']} changed, {counts['removed']} removed, "
        f"{result.unchanged} unchanged"
    )
    if args.dry_run:
        print(f"{summary}; dry run, nothing written")
    elif result.changes:
        write_seed(seed, result.rows)
        print(f"{summary}; wrote {seed}. Re-price history with `dbt build --full-refresh`.")
    else:
        print(f"{summary}; {seed} is up to date")
    return 0


def cmd_prices_list(args: argparse.Namespace) -> int:
    from spendwatch.prices.seed import DEFAULT_SEED, _fmt, _time, read_seed

    at = _time(args.at, "--at") if args.at else datetime.now(UTC).replace(tzinfo=None)
    rows = [
        row for row in read_seed(Path(args.seed) if args.seed else DEFAULT_SEED)
        if row.valid_from <= at and (row.valid_to is None or at < row.valid_to)
    ]  # fmt: skip
    table = Table(title=f"Prices valid at {at:%Y-%m-%d %H:%M} UTC (USD per 1M tokens)")
    for name in ("provider", "model", "since", "input", "output", "cache read", "cache write",
                 "long above", "long in/out", "batch off"):  # fmt: skip
        table.add_column(name, justify="left" if name in ("provider", "model") else "right")
    for row in rows:
        f = {k: _fmt(v) for k, v in row.figures.items()}
        long = f"{f['long_input_usd_per_mtok'] or f['input_usd_per_mtok']}/" \
               f"{f['long_output_usd_per_mtok'] or f['output_usd_per_mtok']}"  # fmt: skip
        table.add_row(
            row.provider, row.model, f"{row.valid_from:%Y-%m-%d}",
            f["input_usd_per_mtok"], f["output_usd_per_mtok"],
            f["cache_read_usd_per_mtok"] or "=input", f["cache_write_usd_per_mtok"] or "=input",
            f["long_context_threshold_tokens"],
            long if f["long_context_threshold_tokens"] else "",
            f["batch_discount"] or "0",
        )  # fmt: skip
    console.print(table)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Why the cost of a feature (or team) changed between two periods: the LMDI drivers of
    macros/cost_drivers.sql run on the warehouse, read-only."""
    import json

    from spendwatch.explain import ExplainError, detail, explain
    from spendwatch.warehouse import open_warehouse

    dimension, name = ("team", args.team) if args.team else ("feature", args.feature)
    period = (args.start, args.end)
    if args.vs:
        compared = (args.vs[0], args.vs[1])
    else:
        compared = (args.start - timedelta(days=7), args.end - timedelta(days=7))
    p = paths(args.home)
    con = open_warehouse(p.warehouse, read_only=True)
    try:
        result = explain(con, dimension, name, args.environment, period, compared)
    except ExplainError as exc:
        raise CliError(str(exc), 2) from None
    finally:
        con.close()
    if args.json:
        print(json.dumps(result.as_json(), ensure_ascii=False))
        return 0
    body = result.as_json()
    where = f" ({args.environment})" if args.environment else ""
    table = Table(
        title=f"Why {dimension} {name}{where} cost {body['cost_usd']:,.2f} USD from "
        f"{body['period'][0]} to {body['period'][1]} against {body['compared_cost_usd']:,.2f} "
        f"from {body['compared_with'][0]} to {body['compared_with'][1]}",
        title_justify="left",
    )
    table.add_column("driver")
    table.add_column("USD", justify="right")
    table.add_column("share", justify="right")
    table.add_column("what moved", overflow="fold")
    for d, shown in zip(result.drivers, body["drivers"], strict=True):
        share = "-" if shown["share"] is None else f"{100 * shown['share']:.1f} %"
        table.add_row(d.driver, f"{shown['usd']:+,.2f}", share, detail(d))
    table.add_section()
    table.add_row("total change", f"{body['total_change_usd']:+,.2f}", "", "")
    console.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spendwatch", description="LLM token-spend observability warehouse."
    )
    parser.add_argument(
        "--home", help="spendwatch home (default $SPENDWATCH_HOME or ./.spendwatch)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate 28 days of traffic, materialize it, summarise")
    demo.add_argument("--days", type=int, default=28)
    demo.add_argument("--calls-per-day", type=int, default=20_000)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument(
        "--incidents", default="default", help="default | none | path of a JSON list of incidents"
    )
    demo.set_defaults(func=cmd_demo)

    gen = sub.add_parser("generate", help="write synthetic call logs in the landing layout")
    gen.add_argument(
        "--start", type=_hour, required=True, help="first hour, ISO (UTC if no offset)"
    )
    gen.add_argument("--days", type=int, default=28)
    gen.add_argument("--calls-per-day", type=int, default=20_000)
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument(
        "--incidents", default="default", help="default | none | path of a JSON list of incidents"
    )
    gen.add_argument(
        "--traffic",
        choices=["real-shape", "smooth"],
        default="real-shape",
        help="real-shape: the irregularities of real request streams (default); smooth: Poisson "
        "noise around the seasonal curve",
    )
    gen.add_argument("--out", help="landing folder (default $SPENDWATCH_HOME/landing/calls)")
    gen.set_defaults(func=cmd_generate)

    mat = sub.add_parser("materialize", help="ingest + dbt for an hour range, as one Dagster run")
    mat.add_argument("--start", type=_hour, required=True, help="first hour, ISO")
    mat.add_argument("--end", type=_hour, help="end hour, exclusive (default: the current hour)")
    mat.add_argument(
        "--allow-empty",
        action="store_true",
        help="delete the loaded rows of hours whose landing files are gone (by default they "
        "are kept and the landing_files_present check fails)",
    )
    mat.set_defaults(func=cmd_materialize)

    alerts = sub.add_parser(
        "alerts", help="deliver, list, test and mute alerts (Slack, PagerDuty, email)"
    )
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True)
    send = alerts_sub.add_parser(
        "send", help="deliver every new or pending alert now (the alerts job, by hand)"
    )
    send.add_argument(
        "--dry-run", action="store_true", help="print what would be sent; send and record nothing"
    )
    listing = alerts_sub.add_parser("list", help="open incidents and each channel's delivery state")
    listing.add_argument(
        "--hours", type=int, default=24, help="also show incidents active in the last N hours"
    )
    alerts_sub.add_parser("test", help="send one test message to every configured channel")
    mute = alerts_sub.add_parser("mute", help="silence a feature and/or detector for a while")
    mute.add_argument("--feature")
    mute.add_argument("--detector")
    mute.add_argument("--environment")
    mute.add_argument("--for", dest="duration", help="how long: 30m, 4h, 2d")
    mute.add_argument("--until", help="until when, ISO (UTC if no offset)")
    mute.add_argument("--reason", default="")
    mute.add_argument("--list", action="store_true", help="show the active mutes")
    unmute = alerts_sub.add_parser("unmute", help="lift a mute set with `alerts mute`")
    unmute.add_argument("mute_id")
    alerts.set_defaults(func=cmd_alerts)

    exp = sub.add_parser(
        "export",
        help="send the hourly cost metrics to Datadog or CloudWatch; --status shows the log",
        description="Push the hourly mart figures (llm.calls, llm.tokens, llm.cost_usd, "
        "llm.cost_per_call_usd, llm.cache_hit_rate by feature, model, provider and environment) "
        "as metrics. Without a range: every complete hour of the last 7 days not exported yet "
        "(or changed since), failed hours included.",
    )
    exp.add_argument("destination", nargs="?", choices=["datadog", "cloudwatch"])
    exp.add_argument("--start", type=_hour, help="first hour, ISO (UTC if no offset)")
    exp.add_argument("--end", type=_hour, help="end hour, exclusive (default: the current hour)")
    exp.add_argument(
        "--status", action="store_true", help="what was exported, and what failed (with why)"
    )
    exp.set_defaults(func=cmd_export)

    rep = sub.add_parser(
        "report", help="write the self-contained HTML dashboard from the warehouse"
    )
    rep.add_argument("--out", help="HTML file to write (default $SPENDWATCH_HOME/report.html)")
    rep.add_argument(
        "--days", type=_days, default=REPORT_DAYS,
        help=f"days of hourly detail, 1-92 (default {REPORT_DAYS})",
    )  # fmt: skip
    rep.add_argument("--environment", help="only this environment (default: all, with a filter)")
    rep.set_defaults(func=cmd_report)

    otel = sub.add_parser(
        "import-otel",
        help="convert OTLP/JSON GenAI span exports into landing files",
        description="Import OpenTelemetry GenAI spans (OTLP/JSON trace exports) as call events.",
    )
    otel.add_argument("files", nargs="+", metavar="FILE", help="OTLP/JSON file or folder")
    # also accepted after the command; the SUPPRESS default keeps a --home given before it
    otel.add_argument(
        "--home",
        default=argparse.SUPPRESS,
        help="spendwatch home (default: $SPENDWATCH_HOME or ./.spendwatch)",
    )
    otel.set_defaults(func=cmd_import_otel)

    expl = sub.add_parser(
        "explain",
        help="why a feature's (or team's) cost changed: volume, model mix, tokens, cache, price",
        description="Split the change of cost between two periods into the drivers volume, "
        "model_mix, input_tokens_per_call, output_tokens_per_call, cache, retries and price "
        "(LMDI: they add up to the change). Times are ISO 8601, UTC unless they carry an offset.",
    )
    who = expl.add_mutually_exclusive_group(required=True)
    who.add_argument("--feature", help="the product feature")
    who.add_argument("--team", help="a team (team_id) instead of a feature")
    expl.add_argument("--environment", help="one environment (default: all of them)")
    expl.add_argument("--from", dest="start", type=_instant, required=True, metavar="A")
    expl.add_argument("--to", dest="end", type=_instant, required=True, metavar="B")
    expl.add_argument(
        "--vs", nargs=2, type=_instant, metavar=("C", "D"),
        help="the period to compare with (default: the same span one week earlier)",
    )  # fmt: skip
    expl.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    expl.add_argument(
        "--home", default=argparse.SUPPRESS,
        help="spendwatch home (default: $SPENDWATCH_HOME or ./.spendwatch)",
    )  # fmt: skip
    expl.set_defaults(func=cmd_explain)

    prices = sub.add_parser(
        "prices",
        help="sync the price seed from genai-prices (prices sync --dry-run)",
        description="The dated price list and its sync with genai-prices.",
    )
    prices_sub = prices.add_subparsers(dest="prices_command", required=True)
    default_seed = "seeds/model_prices.csv in this checkout"
    sync_cmd = prices_sub.add_parser(
        "sync", help="update the price seed from genai-prices' bundled data (offline)"
    )
    sync_cmd.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    sync_cmd.add_argument("--seed", help=f"price seed CSV to update (default: {default_seed})")
    sync_cmd.add_argument(
        "--catalog", help="model catalog CSV (default: model_catalog.csv beside the seed)"
    )
    sync_cmd.set_defaults(func=cmd_prices, run=cmd_prices_sync)
    list_cmd = prices_sub.add_parser("list", help="print the prices valid at a time (default: now)")
    list_cmd.add_argument("--at", help="UTC timestamp, e.g. 2024-09-01 or 2025-06-10 12:00")
    list_cmd.add_argument("--seed", help=f"price seed CSV (default: {default_seed})")
    list_cmd.set_defaults(func=cmd_prices, run=cmd_prices_list)

    reconcile = sub.add_parser(
        "reconcile",
        help="check the warehouse against the providers' cost reports (import, show)",
        description="Import OpenAI / Anthropic cost and usage reports and compare what was "
        "billed with what spendwatch computed (marts.cost_reconciliation, invoice_drift).",
    )
    reconcile_sub = reconcile.add_subparsers(dest="reconcile_command", required=True)
    rec_import = reconcile_sub.add_parser(
        "import",
        help="load cost/usage report files (JSON pages of the admin APIs), then rebuild the "
        "reconciliation and the anomalies for their days",
    )
    rec_import.add_argument("files", nargs="+", help="report files (one page, an array of "
                            "pages, or a page per line)")  # fmt: skip
    rec_import.add_argument(
        "--no-build", action="store_true", help="load only; rebuild later (materialize)"
    )
    rec_import.set_defaults(func=cmd_reconcile, run="import")
    rec_show = reconcile_sub.add_parser("show", help="billed against computed, per day and model")
    rec_show.add_argument("--days", type=_days, default=14, help="days up to the latest (14)")
    rec_show.add_argument("--by-kind", action="store_true", help="one row per token kind")
    rec_show.set_defaults(func=cmd_reconcile, run="show")
    return parser


def cmd_reconcile(args: argparse.Namespace) -> int:
    from spendwatch.reconcile import commands

    run = commands.cmd_import if args.run == "import" else commands.cmd_show
    return run(args, paths(args.home), console)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in WAREHOUSE_MODULES:
            raise
        Console(stderr=True).print(
            f"[red]error:[/] `spendwatch {args.command}` needs the warehouse stack ({exc.name} is "
            "not installed): pip install 'spendwatch\\[warehouse]'",
            soft_wrap=True,
        )
        return 2
    except (ValueError, FileNotFoundError) as exc:
        if (known := user_error(exc)) is None:
            known = (str(exc), 2)
        print_error(known[0])
        return known[1]
    except Exception as exc:
        if (known := user_error(exc)) is None:
            raise  # not something the user can fix: keep the traceback
        print_error(known[0])
        return known[1]


if __name__ == "__main__":
    sys.exit(main())
