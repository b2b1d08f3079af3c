"""The sync: every catalog model's seed rows rebuilt from genai-prices, keeping the rows and the
history genai-prices cannot speak for (see the package's docstring), and the diff it prints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from spendwatch.prices.genai import GenaiModel, GenaiPrices, Unrepresentable
from spendwatch.prices.seed import (
    CATALOG_NAME,
    FIGURES,
    CatalogEntry,
    PriceRow,
    _fmt,
    _short,
    _summary,
    _when,
)


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
