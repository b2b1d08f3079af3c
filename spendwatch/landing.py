"""The landing layout, named here and nowhere else:

    <landing>/date=YYYY-MM-DD/hour=HH/<writer>.jsonl[.gz]

One folder per UTC hour of call time; each writer (a tracker process, an OTel import, the
generator) owns its files in it, so writers never share a file. The tracker, the OTel import,
the ingest, the late-data sensor and the tests build every path through these functions; the
generator's DuckDB `partition_by` COPY writes the same names (tests/test_generator.py proves it).
Standard library only: the SDK imports it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

#: The file endings the ingest reads (plain or gzip JSON lines).
SUFFIXES = (".jsonl", ".jsonl.gz")
#: Every landing file of every hour, relative to the landing folder (for `Path.glob`).
ALL_FILES = "date=*/hour=*/*.jsonl*"


def _utc(at: datetime) -> datetime:
    """Aware times are converted to UTC; naive ones are taken as UTC already."""
    return at.astimezone(UTC) if at.tzinfo else at


def hour_dir(landing: Path, at: datetime) -> Path:
    """The folder of the UTC hour that holds `at`: `<landing>/date=YYYY-MM-DD/hour=HH`."""
    at = _utc(at)
    return Path(landing) / f"date={at:%Y-%m-%d}" / f"hour={at:%H}"


def landing_file(landing: Path, at: datetime, writer: str, gzip: bool = False) -> Path:
    """The file of one writer in the hour folder of `at`: `.../<writer>.jsonl[.gz]`."""
    return hour_dir(landing, at) / f"{writer}{SUFFIXES[1] if gzip else SUFFIXES[0]}"


def is_landing_file(path: Path) -> bool:
    return path.name.endswith(SUFFIXES)


def write_atomically(path: Path, text: str) -> None:
    """Write a landing file whole or not at all: a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
