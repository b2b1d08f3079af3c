"""`spendwatch reconcile import FILE...` and `spendwatch reconcile show`."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

from rich.console import Console

from spendwatch.config import Paths, target

#: what an import rebuilds, for the days its reports cover: the mart, the detectors' union
#: (invoice_drift is one of its views) and the dashboard
REBUILT = ("marts/cost_reconciliation", "marts/anomalies", "spend_report")


def cmd_import(args: argparse.Namespace, p: Paths, console: Console) -> int:
    from spendwatch.reconcile.load import import_reports

    if target() != "duckdb":
        raise ValueError(
            f"`spendwatch reconcile import` writes the DuckDB warehouse; the target is "
            f"{target()!r}. On Spark, write the rows of raw.provider_costs with the columns of "
            "spendwatch/reconcile/load.py DDL (docs/architecture.md, Reconciliation) and run "
            "`spendwatch materialize` over the report's days"
        )
    if not p.warehouse.exists():
        raise FileNotFoundError(
            f"no warehouse at {p.warehouse}: run `spendwatch demo` or `spendwatch materialize` "
            "first, so there are computed costs to reconcile against"
        )
    results = import_reports(p.warehouse, [Path(f) for f in args.files])
    for r in results:
        days = f"{r.first_day:%Y-%m-%d} → {r.last_day:%Y-%m-%d}"
        if r.imported:
            unmapped = f", {r.unmapped_rows} unmapped" if r.unmapped_rows else ""
            console.print(f"imported {r.path} ({r.shape}): {r.rows:,} rows{unmapped}, {days}")
        else:
            console.print(
                f"[dim]skipped {r.path}: the same content was imported as {r.already[0]} "
                f"at {r.already[1]:%Y-%m-%d %H:%M} UTC[/]"
            )
    new = [r for r in results if r.imported]
    if not new:
        console.print("nothing new: the reconciliation is unchanged")
        return 0
    if args.no_build:
        console.print("not rebuilt (--no-build): run `spendwatch reconcile import` without it, "
                      "or `spendwatch materialize` over the report's days")  # fmt: skip
        return 0
    start = min(r.first_day for r in new)
    end = max(r.last_day for r in new) + timedelta(days=1)
    return _rebuild(p, start, end, console, args)


def _rebuild(p: Paths, start, end, console: Console, args: argparse.Namespace) -> int:
    from orchestration.runner import materialize_range
    from spendwatch.cli import _run_failed, check_warehouse_free
    from spendwatch.reconcile.show import load_rows, render

    check_warehouse_free(p)
    summary = materialize_range(p, start, end, console, assets=REBUILT)
    state = "[green]succeeded[/]" if summary.success else "[red]FAILED[/]"
    console.print(
        f"rebuilt the reconciliation and the anomalies for {start:%Y-%m-%d} → "
        f"{end - timedelta(days=1):%Y-%m-%d}: run {summary.run_id} {state} in "
        f"{summary.seconds:.1f} s (dbt output: {summary.log_path})"
    )
    if not summary.success:
        return _run_failed(summary)
    days = (end - start).days
    render(load_rows(p.warehouse, days), console)
    return 0


def cmd_show(args: argparse.Namespace, p: Paths, console: Console) -> int:
    from spendwatch.reconcile.show import load_rows, render

    rows = load_rows(p.warehouse, args.days, args.by_kind)
    if not rows:
        console.print(
            "nothing reconciled yet: import a provider cost report with "
            "`spendwatch reconcile import FILE...`"
        )
        return 0
    render(rows, console, args.by_kind)
    return 0
