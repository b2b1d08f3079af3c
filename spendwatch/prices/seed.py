"""The price seed (`seeds/model_prices.csv`) and the model catalog: rows read, checked, written
and described. Standard library only."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from spendwatch.config import REPO_DIR

DEFAULT_SEED = REPO_DIR / "seeds" / "model_prices.csv"
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
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class PricesError(ValueError):
    """A seed or catalog the sync cannot read; the message says where and what to fix."""


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


# the words `prices sync` and `prices list` describe rows with
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
