"""`spendwatch prices`: the dated price list (`seeds/model_prices.csv`) and its sync.

`sync` rebuilds the price rows of every model in `seeds/model_catalog.csv` from the figures that
ship inside the installed genai-prices package (offline: no network), prints what changed and
writes the seed unless `--dry-run`. Rows genai-prices cannot speak for are kept:

* models it does not know, and models whose prices our columns cannot hold (several tiers,
  time-of-day prices) keep their rows as they are;
* history it does not record: genai-prices lists a model's price changes with start dates, and
  an undated price means "as far back as genai-prices knows". Where our rows record a price change
  genai-prices does not (gpt-4o's launch price before 2024-10-02), every row before the last such
  change stays ours and genai-prices' figures apply from that change on.

A model with no rows yet starts at its catalog `released_on`; a model whose last row has a
`valid_to` (a snapshot priced on its own only for a while, then by its alias) keeps that end.

Mapping (genai-prices 0.2 → our columns): `input_mtok`, `output_mtok`, `cache_read_mtok`,
`cache_write_mtok` (the 5-minute write; 1-hour writes are not in the call event). A tiered price
(one tier, the same start for every unit) becomes `long_context_threshold_tokens` + `long_*`.
`batch_discount` is 1 − batch input price / standard input price of the model's
`{"processing": "batch"}` variant; without one, the row it replaces keeps its discount, else the
discount most of the provider's batch variants give. Audio, image, search and storage prices are
not call-event fields and are left out.

Used only by the CLI: `import spendwatch` does not import this module (nor genai-prices).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SEED = REPO / "seeds" / "model_prices.csv"
CATALOG_NAME = "model_catalog.csv"

COLUMNS = (
    "provider",
    "model",
    "valid_from",
    "valid_to",
    "input_usd_per_mtok",
    "output_usd_per_mtok",
    "cache_read_usd_per_mtok",
    "cache_write_usd_per_mtok",
    "long_context_threshold_tokens",
    "long_input_usd_per_mtok",
    "long_output_usd_per_mtok",
    "long_cache_read_usd_per_mtok",
    "long_cache_write_usd_per_mtok",
    "batch_discount",
    "source",
)
#: The numeric columns, in seed order.
FIGURES = COLUMNS[4:14]
#: genai-prices price key -> our column stem (`<stem>_usd_per_mtok`, `long_<stem>_usd_per_mtok`).
_UNITS = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cache_read",
    "cache_write_mtok": "cache_write",
}
_BATCH = {"processing": "batch"}
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class PricesError(ValueError):
    """A seed or catalog the sync cannot read; the message says where and what to fix."""


class Unrepresentable(ValueError):
    """genai-prices prices a model in a way our columns cannot hold."""


@dataclass(frozen=True)
class PriceRow:
    """One row of the price seed."""

    provider: str
    model: str
    valid_from: datetime
    valid_to: datetime | None
    figures: dict[str, Decimal | None]  # FIGURES -> value; None is an empty cell
    source: str = ""

    @property
    def key(self) -> tuple[str, str, datetime]:
        return (self.provider, self.model, self.valid_from)

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}@{self.valid_from:%Y-%m-%d}"

    def to_csv(self) -> dict[str, str]:
        row = {
            "provider": self.provider,
            "model": self.model,
            "valid_from": self.valid_from.strftime(_TIME_FORMAT),
            "valid_to": self.valid_to.strftime(_TIME_FORMAT) if self.valid_to else "",
            "source": self.source,
        }
        row.update({name: _fmt(self.figures.get(name)) for name in FIGURES})
        return row


@dataclass(frozen=True)
class CatalogEntry:
    provider: str
    model: str
    released_on: date | None


@dataclass(frozen=True)
class Change:
    kind: str  # added | changed | removed
    old: PriceRow | None
    new: PriceRow | None

    @property
    def label(self) -> str:
        return (self.new or self.old).label  # type: ignore[union-attr]

    def describe(self) -> str:
        if self.kind == "added":
            return _summary(self.new)
        if self.kind == "removed":
            return _summary(self.old)
        parts = []
        old, new = self.old, self.new
        assert old and new
        if old.valid_to != new.valid_to:
            parts.append(f"valid_to {_when(old.valid_to)} → {_when(new.valid_to)}")
        for name in FIGURES:
            a, b = old.figures.get(name), new.figures.get(name)
            if a != b:
                parts.append(f"{_short(name)} {_fmt(a) or '-'} → {_fmt(b) or '-'}")
        if old.source != new.source:
            parts.append(f"source {old.source!r} → {new.source!r}")
        return ", ".join(parts)


@dataclass
class SyncResult:
    rows: list[PriceRow]
    changes: list[Change]
    notes: list[str]
    unchanged: int
    genai_prices_version: str


# ----------------------------------------------------------------------------- reading, writing


def _fmt(value: Decimal | None) -> str:
    """A seed cell: shortest plain decimal (2.50 → 2.5, 2E+5 → 200000), "" for None."""
    return "" if value is None else format(value.normalize(), "f")


def _dec(text: str, where: str) -> Decimal | None:
    text = text.strip()
    if not text:
        return None
    try:
        return Decimal(text)
    except ArithmeticError as exc:
        raise PricesError(f"{where}: {text!r} is not a number") from exc


def _time(text: str, where: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise PricesError(f"{where}: {text!r} is not a timestamp like 2025-06-10 00:00:00") from exc
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def read_seed(path: Path) -> list[PriceRow]:
    """The rows of a price seed; a clear error for a missing file or a bad cell."""
    if not path.is_file():
        raise PricesError(f"price seed {path} not found: pass --seed PATH")
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise PricesError(f"{path}: missing columns {', '.join(sorted(missing))}")
        for number, raw in enumerate(reader, start=2):
            where = f"{path}:{number}"
            valid_from = _time(raw["valid_from"], where)
            if valid_from is None or not raw["provider"] or not raw["model"]:
                raise PricesError(f"{where}: provider, model and valid_from are required")
            rows.append(
                PriceRow(
                    provider=raw["provider"].strip().lower(),
                    model=raw["model"].strip(),
                    valid_from=valid_from,
                    valid_to=_time(raw["valid_to"], where),
                    figures={name: _dec(raw[name], f"{where} {name}") for name in FIGURES},
                    source=raw["source"].strip(),
                )
            )
    return rows


def read_catalog(path: Path) -> list[CatalogEntry]:
    if not path.is_file():
        raise PricesError(f"model catalog {path} not found: pass --catalog PATH")
    with path.open(newline="", encoding="utf-8") as handle:
        entries = []
        for number, raw in enumerate(csv.DictReader(handle), start=2):
            released = (raw.get("released_on") or "").strip()
            try:
                released_on = date.fromisoformat(released) if released else None
            except ValueError as exc:
                raise PricesError(
                    f"{path}:{number}: released_on {released!r} is not a date"
                ) from exc
            entries.append(
                CatalogEntry(raw["provider"].strip().lower(), raw["model"].strip(), released_on)
            )
    return entries


def write_seed(path: Path, rows: Iterable[PriceRow]) -> None:
    """Write the seed atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(row.to_csv() for row in rows)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- genai-prices


@dataclass(frozen=True)
class GenaiModel:
    """A genai-prices model as dated periods of our figures."""

    ref: str  # provider_id/model_id
    periods: list[tuple[date | None, dict[str, Decimal | None]]]
    batch_discount: Decimal | None


def _base(price: Any) -> Decimal | None:
    return getattr(price, "base", price)


def _figures(model_price: Any) -> dict[str, Decimal | None]:
    from genai_prices.types import TieredPrices

    figures: dict[str, Decimal | None] = {name: None for name in FIGURES}
    threshold: int | None = None
    for key, stem in _UNITS.items():
        price = getattr(model_price, key, None)
        if isinstance(price, TieredPrices):
            if len(price.tiers) != 1:
                raise Unrepresentable(f"{key} has {len(price.tiers)} tiers (the seed holds one)")
            tier = price.tiers[0]
            if threshold is not None and tier.start != threshold:
                raise Unrepresentable("its units change tier at different input sizes")
            threshold = tier.start
            figures[f"{stem}_usd_per_mtok"] = price.base
            figures[f"long_{stem}_usd_per_mtok"] = tier.price
        else:
            figures[f"{stem}_usd_per_mtok"] = price
    if figures["input_usd_per_mtok"] is None or figures["output_usd_per_mtok"] is None:
        raise Unrepresentable("it has no input and output token prices")
    figures["long_context_threshold_tokens"] = Decimal(threshold) if threshold is not None else None
    return figures


def _batch_discount(info: Any, standard: Any) -> Decimal | None:
    for variant in info.price_variants or ():
        if variant.when != _BATCH:
            continue
        ratios = set()
        for key in ("input_mtok", "output_mtok"):
            batch, full = _base(getattr(variant.prices, key, None)), _base(getattr(standard, key))
            if batch is not None and full:
                ratios.add((Decimal(1) - batch / full).quantize(Decimal("0.000001")))
        if len(ratios) > 1:
            raise Unrepresentable("its batch variant discounts input and output differently")
        if ratios:
            return ratios.pop()
    return None


def _periods(info: Any) -> list[tuple[date | None, Any]]:
    from genai_prices.types import ConditionalPrice, StartDateConstraint

    if not isinstance(info.prices, list):
        return [(None, info.prices)]
    periods: list[tuple[date | None, Any]] = []
    for index, conditional in enumerate(info.prices):
        assert isinstance(conditional, ConditionalPrice)
        constraint = conditional.constraint
        if constraint is None and index == 0:
            periods.append((None, conditional.prices))
        elif isinstance(constraint, StartDateConstraint):
            if periods and periods[-1][0] and periods[-1][0] >= constraint.start_date:
                raise Unrepresentable("its dated prices are not in date order")
            periods.append((constraint.start_date, conditional.prices))
        else:
            raise Unrepresentable(f"it has prices conditioned on {constraint!r}")
    return periods


class GenaiPrices:
    """Look-ups in the genai-prices data bundled with the installed package (no network)."""

    def __init__(self) -> None:
        from importlib.metadata import version

        from genai_prices.data_snapshot import get_snapshot

        self.snapshot = get_snapshot()
        self.version = version("genai-prices")
        self._provider_discounts: dict[str, Decimal | None] = {}

    def model(self, provider: str, model: str) -> GenaiModel | None:
        try:
            provider_info, info = self.snapshot.find_provider_model(model, None, provider, None)
        except LookupError:
            return None
        periods = _periods(info)
        return GenaiModel(
            ref=f"{provider_info.id}/{info.id}",
            periods=[(start, _figures(prices)) for start, prices in periods],
            batch_discount=_batch_discount(info, periods[-1][1]),
        )

    def provider_batch_discount(self, provider: str) -> Decimal | None:
        """The discount most of a provider's batch variants give (Batch APIs are per provider)."""
        if provider not in self._provider_discounts:
            found: Counter[Decimal] = Counter()
            for provider_info in self.snapshot.providers:
                if provider_info.id != provider:
                    continue
                for info in provider_info.models:
                    try:
                        discount = _batch_discount(info, _periods(info)[-1][1])
                    except Unrepresentable:
                        continue
                    if discount:
                        found[discount] += 1
            self._provider_discounts[provider] = found.most_common(1)[0][0] if found else None
        return self._provider_discounts[provider]


# ----------------------------------------------------------------------------- sync


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _active(periods: Sequence[tuple[date | None, Any]], at: datetime) -> Any:
    chosen = periods[0][1]
    for start, figures in periods:
        if start is None or _midnight(start) <= at:
            chosen = figures
    return chosen


def sync_model(
    provider: str,
    model: str,
    ours: list[PriceRow],
    genai: GenaiModel,
    start: datetime,
    fallback_discount: Decimal | None,
) -> tuple[list[PriceRow], str | None]:
    """One model's rows after the sync, and a note when some of ours were kept as history."""
    ours = sorted(ours, key=lambda row: row.valid_from)
    end = ours[-1].valid_to if ours else None
    dated = [_midnight(day) for day, _ in genai.periods if day is not None]
    unknown = [row.valid_from for row in ours[1:] if row.valid_from not in dated]
    anchor = max(unknown, default=start)
    kept = [row for row in ours if row.valid_from < anchor]
    cuts = [anchor] + [at for at in dated if anchor < at and (end is None or at < end)]
    rows: list[PriceRow] = []
    for index, cut in enumerate(cuts):
        until = cuts[index + 1] if index + 1 < len(cuts) else end
        figures = dict(_active(genai.periods, cut))
        discount = genai.batch_discount
        if discount is None:
            covering = [row for row in ours if row.valid_from <= cut] or ours
            discount = covering[-1].figures.get("batch_discount") if covering else None
        figures["batch_discount"] = discount if discount is not None else fallback_discount
        source = f"genai-prices ({genai.ref})"
        if rows and rows[-1].figures == figures:
            rows[-1] = replace(rows[-1], valid_to=until)
            continue
        rows.append(PriceRow(provider, model, cut, until, figures, source))
    note = None
    if kept:
        note = (
            f"{provider}/{model}: kept {len(kept)} row(s) before {anchor:%Y-%m-%d}, history "
            "genai-prices does not record"
        )
    return kept + rows, note


def diff(old: Sequence[PriceRow], new: Sequence[PriceRow]) -> tuple[list[Change], int]:
    """Added, changed and removed rows (key: provider, model, valid_from); the unchanged count."""
    before = {row.key: row for row in old}
    after = {row.key: row for row in new}
    changes, unchanged = [], 0
    for key, row in after.items():
        if key not in before:
            changes.append(Change("added", None, row))
        elif before[key] != row:
            changes.append(Change("changed", before[key], row))
        else:
            unchanged += 1
    changes += [Change("removed", row, None) for key, row in before.items() if key not in after]
    return changes, unchanged


def sync(rows: list[PriceRow], catalog: list[CatalogEntry], genai: GenaiPrices) -> SyncResult:
    """The seed rows after syncing every catalog model with genai-prices (nothing written)."""
    by_model: dict[tuple[str, str], list[PriceRow]] = {}
    for row in rows:
        by_model.setdefault((row.provider, row.model), []).append(row)
    order = {(entry.provider, entry.model): index for index, entry in enumerate(catalog)}
    notes: list[str] = []
    result: list[PriceRow] = []
    for entry in catalog:
        name = f"{entry.provider}/{entry.model}"
        ours = by_model.get((entry.provider, entry.model), [])
        try:
            found = genai.model(entry.provider, entry.model)
        except Unrepresentable as exc:
            notes.append(
                f"{name}: rows kept, genai-prices prices it in a way the seed cannot hold: {exc}"
            )
            result += ours
            continue
        if found is None:
            notes.append(
                f"{name}: not in genai-prices {genai.version}; rows kept"
                if ours
                else f"{name}: not in genai-prices and no rows: add its prices by hand"
            )
            result += ours
            continue
        if ours:
            start = min(row.valid_from for row in ours)
        elif entry.released_on:
            start = _midnight(entry.released_on)
        else:
            notes.append(
                f"{name}: no rows and no released_on in the catalog: cannot date its prices"
            )
            continue
        if entry.released_on and _midnight(entry.released_on) != start:
            notes.append(
                f"{name}: catalog released_on {entry.released_on} but first row {start:%Y-%m-%d}"
            )
        synced, note = sync_model(
            entry.provider,
            entry.model,
            ours,
            found,
            start,
            genai.provider_batch_discount(entry.provider),
        )
        result += synced
        if note:
            notes.append(note)
    for key, extra in by_model.items():
        if key not in order:
            notes.append(f"{key[0]}/{key[1]}: not in {CATALOG_NAME}; rows kept as they are")
            result += extra
    result.sort(
        key=lambda row: (
            order.get((row.provider, row.model), len(order)),
            row.model,
            row.valid_from,
        )
    )
    changes, unchanged = diff(rows, result)
    return SyncResult(result, changes, notes, unchanged, genai.version)


# ----------------------------------------------------------------------------- command line


_SHORT = {
    "input_usd_per_mtok": "input",
    "output_usd_per_mtok": "output",
    "cache_read_usd_per_mtok": "cache_read",
    "cache_write_usd_per_mtok": "cache_write",
    "long_context_threshold_tokens": "long_above",
    "long_input_usd_per_mtok": "long_input",
    "long_output_usd_per_mtok": "long_output",
    "long_cache_read_usd_per_mtok": "long_cache_read",
    "long_cache_write_usd_per_mtok": "long_cache_write",
    "batch_discount": "batch_discount",
}


def _short(name: str) -> str:
    return _SHORT.get(name, name)


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d}" if at else "open"


def _summary(row: PriceRow | None) -> str:
    assert row is not None
    parts = [f"until {_when(row.valid_to)}"]
    parts += [f"{_short(n)} {_fmt(v)}" for n, v in row.figures.items() if v is not None]
    return ", ".join(parts)


def cmd_sync(args: argparse.Namespace) -> int:
    seed = Path(args.seed)
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


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    at = _time(args.at, "--at") if args.at else datetime.now(UTC).replace(tzinfo=None)
    rows = [
        row for row in read_seed(Path(args.seed))
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
    console = Console()
    (console if console.is_terminal else Console(width=140)).print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spendwatch prices", description="The dated price list and its sync with genai-prices."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sync_cmd = sub.add_parser(
        "sync", help="update the price seed from genai-prices' bundled data (offline)"
    )
    sync_cmd.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    sync_cmd.add_argument("--seed", default=str(DEFAULT_SEED), help="price seed CSV to update")
    sync_cmd.add_argument(
        "--catalog", help=f"model catalog CSV (default: {CATALOG_NAME} beside the seed)"
    )
    sync_cmd.set_defaults(func=cmd_sync)
    list_cmd = sub.add_parser("list", help="print the prices valid at a time (default: now)")
    list_cmd.add_argument("--at", help="UTC timestamp, e.g. 2024-09-01 or 2025-06-10 12:00")
    list_cmd.add_argument("--seed", default=str(DEFAULT_SEED), help="price seed CSV")
    list_cmd.set_defaults(func=cmd_list)
    return parser


def main_prices(argv: list[str]) -> int:
    """`spendwatch prices sync [--dry-run] [--seed PATH] [--catalog PATH]` | `list [--at T]`."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PricesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main_prices(sys.argv[1:]))
