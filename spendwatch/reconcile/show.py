"""`spendwatch reconcile show`: marts.cost_reconciliation as a table on the terminal.

One row per day, provider and model (its token kinds summed; `--by-kind` shows them), with the
invoice_drift finding of that day from marts.anomalies, and the unmapped billed lines apart.
Nothing is computed here that the mart does not hold: the rows are sums of its rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from spendwatch.warehouse import open_warehouse

MODEL_ROWS = """
with days as (
    select max(day) as last_day from marts.cost_reconciliation
),
rows as (
    select reconciled.*
    from marts.cost_reconciliation as reconciled, days
    where reconciled.day > days.last_day - cast(? as integer)
),
by_model as (
    select
        day, day_at, provider, model, {kind} as token_kind,
        sum(billed_usd) as billed_usd,
        sum(computed_usd) as computed_usd,
        sum(difference_usd) as difference_usd,
        sum(billed_tokens) as billed_tokens,
        sum(recorded_tokens) as recorded_tokens,
        max(unpriced_calls) as unpriced_calls,
        string_agg(distinct likely_cause, ', ' order by likely_cause) as likely_cause,
        string_agg(distinct provider_line_items, ', ' order by provider_line_items) as line_items
    from rows
    group by all
),
drift as (
    select hour_at, model, severity from marts.anomalies where detector = 'invoice_drift'
)
select
    by_model.*,
    100 * cast(difference_usd as double) / nullif(cast(computed_usd as double), 0)
        as difference_pct,
    drift.severity
from by_model
left join drift
    on drift.hour_at = by_model.day_at and drift.model = by_model.model
    and by_model.token_kind <> 'unmapped'
order by day desc, provider, token_kind = 'unmapped', abs(difference_usd) desc, model
"""


@dataclass
class ReconciliationRow:
    day: date
    provider: str
    model: str | None
    token_kind: str
    billed_usd: Decimal
    computed_usd: Decimal
    difference_usd: Decimal
    difference_pct: float | None
    billed_tokens: int | None
    recorded_tokens: int
    unpriced_calls: int
    likely_cause: str | None
    line_items: str | None
    severity: str | None


def reconciliation_rows(con, days: int, by_kind: bool = False) -> list[ReconciliationRow]:
    """The last `days` days of marts.cost_reconciliation (up to its latest day), per model (or
    per model and token kind); unmapped billed lines stay rows of their own."""
    kind = "token_kind" if by_kind else (
        "case when token_kind = 'unmapped' then 'unmapped' else 'all' end"
    )  # fmt: skip
    records = con.execute(MODEL_ROWS.format(kind=kind), [days]).fetchall()
    names = [d[0] for d in con.description]
    out = []
    for record in records:
        row = dict(zip(names, record, strict=True))
        out.append(ReconciliationRow(
            row["day"], row["provider"], row["model"], row["token_kind"], row["billed_usd"],
            row["computed_usd"], row["difference_usd"], row["difference_pct"],
            row["billed_tokens"], row["recorded_tokens"], row["unpriced_calls"],
            row["likely_cause"], row["line_items"], row["severity"],
        ))  # fmt: skip
    return out


def load_rows(warehouse: Path, days: int, by_kind: bool = False) -> list[ReconciliationRow]:
    """Open the warehouse read-only for the query only; an empty list when nothing was
    reconciled yet (no report imported)."""
    con = open_warehouse(warehouse, read_only=True, wait_seconds=60)
    try:
        found = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'marts' and table_name = 'cost_reconciliation'"
        ).fetchone()[0]
        if not found:
            return []
        return reconciliation_rows(con, days, by_kind)
    finally:
        con.close()


def _usd(value: Decimal | None) -> str:
    if value is None:
        return ""
    if value == 0:
        return "$0.00"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:,.4f}"


def _signed_usd(value: Decimal) -> str:
    return ("+" if value > 0 else "-" if value < 0 else "") + _usd(abs(value))


def _tokens(row: ReconciliationRow) -> str:
    """Recorded tokens as a share of the billed ones (usage report), or — without one."""
    if not row.billed_tokens:
        return "—"
    return f"{100 * row.recorded_tokens / row.billed_tokens:.1f} %"


def render(rows: list[ReconciliationRow], console: Console, by_kind: bool = False) -> None:
    table = Table(
        title="Billed (provider reports) against computed (spendwatch)", title_justify="left",
        box=box.SIMPLE_HEAD,
    )  # fmt: skip
    for name in ("day", "provider", "model", *(["token kind"] if by_kind else [])):
        table.add_column(name, no_wrap=True)
    for name in ("billed", "computed", "difference", "%", "tokens rec."):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("likely cause", no_wrap=True)
    table.add_column("alert", no_wrap=True)
    mapped = [row for row in rows if row.token_kind != "unmapped"]
    unmapped = [row for row in rows if row.token_kind == "unmapped"]
    for row in mapped:
        pct = "" if row.difference_pct is None else f"{row.difference_pct:+.1f} %"
        style = {"critical": "bold red", "warning": "yellow"}.get(row.severity or "", "")
        cells = [f"{row.day:%Y-%m-%d}", row.provider, row.model or ""]
        if by_kind:
            cells.append(row.token_kind)
        cells += [_usd(row.billed_usd), _usd(row.computed_usd), _signed_usd(row.difference_usd),
                  pct, _tokens(row), row.likely_cause or "", row.severity or ""]  # fmt: skip
        table.add_row(*cells, style=style)
    # a pipe or a file gets the whole table (the CLI's console is 140 wide there); a terminal
    # squeezes it to its width
    wide = console if console.is_terminal else Console(
        file=console.file, width=max(console.width, 200), no_color=True, highlight=False
    )  # fmt: skip
    wide.print(table)
    if unmapped:
        console.print("billed lines without a model and token kind (not in the totals above):")
        for row in unmapped:
            model = f"{row.model} " if row.model else ""
            console.print(
                f"  {row.day:%Y-%m-%d} {row.provider} {model}unmapped: {row.line_items or '?'} "
                f"{_usd(row.billed_usd)}",
                highlight=False, soft_wrap=True,
            )  # fmt: skip
    billed = sum((r.billed_usd for r in mapped), Decimal(0))
    computed = sum((r.computed_usd for r in mapped), Decimal(0))
    drift = len({(r.day, r.provider, r.model) for r in mapped if r.severity})
    console.print(
        f"total billed {_usd(billed)}, computed {_usd(computed)}, difference "
        f"{_signed_usd(billed - computed)}; {drift} invoice_drift finding(s); tokens rec. = "
        "recorded tokens as a share of the billed (usage report)",
        highlight=False,
        soft_wrap=True,
    )
