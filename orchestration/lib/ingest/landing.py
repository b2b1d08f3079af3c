"""Landing files → lines: the files of an hour window, read (plain or gzip), checksummed and
split into lines, each either readable or flagged with why it is not (`truncated_line`,
`invalid_utf8`, `line_too_long`). Nothing here judges a line's content: that is `validate`.
"""

from __future__ import annotations

import gzip
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from spendwatch.landing import hour_dir, is_landing_file

MAX_LINE_BYTES = 64 * 1024


def partition_hours(start: datetime, end: datetime) -> list[datetime]:
    hours, at = [], start
    while at < end:
        hours.append(at)
        at += timedelta(hours=1)
    return hours


def landing_files(landing: Path, start: datetime, end: datetime) -> list[tuple[datetime, Path]]:
    """Every `*.jsonl` / `*.jsonl.gz` in the hour folders of [start, end), in a stable order."""
    found = []
    for hour in partition_hours(start, end):
        folder = hour_dir(landing, hour)
        if folder.is_dir():
            files = [p for p in folder.iterdir() if is_landing_file(p)]
            found.extend((hour, p) for p in sorted(files))
    return found


def _read_lines(path: Path) -> tuple[bytes, list[tuple[str, str | None]]]:
    """The file's bytes and its lines as (text, reason the line is unreadable or None)."""
    data = path.read_bytes()
    body = gzip.decompress(data) if path.name.endswith(".gz") else data
    parts = body.split(b"\n")
    tail = parts.pop()  # after the last newline: b"" when the file ends with one
    lines: list[tuple[str, str | None]] = []
    try:
        text_parts = body.decode("utf-8").split("\n")[: len(parts)]
        lines = [(t, None) for t in text_parts]
    except UnicodeDecodeError:
        for raw in parts:
            try:
                lines.append((raw.decode("utf-8"), None))
            except UnicodeDecodeError:
                lines.append((raw.decode("utf-8", "replace"), "invalid_utf8"))
    if tail:
        lines.append((tail.decode("utf-8", "replace"), "truncated_line"))
    return data, lines


def line_table(files: list[tuple[datetime, Path]]) -> tuple[dict, list[dict]]:
    sources, hours, numbers, texts, flags, log = [], [], [], [], [], []
    for hour, path in files:
        data, lines = _read_lines(path)
        n = len(lines)
        stat = path.stat()
        log.append({
            "partition_hour": hour.replace(tzinfo=None),
            "source_file": str(path),
            "size_bytes": stat.st_size,
            "modified_at": datetime.fromtimestamp(stat.st_mtime, UTC).replace(tzinfo=None),
            "checksum": hashlib.sha256(data).hexdigest(),
        })  # fmt: skip
        sources.extend([str(path)] * n)
        hours.extend([hour.replace(tzinfo=None)] * n)
        numbers.extend(range(1, n + 1))
        for text, flag in lines:
            if flag is None and len(text) > MAX_LINE_BYTES:  # chars ≤ bytes: cheap pre-check
                flag = "line_too_long" if len(text.encode("utf-8")) > MAX_LINE_BYTES else None
            texts.append(text.rstrip("\r") if flag != "line_too_long" else text)
            flags.append(flag)
    table = {
        "source_file": np.array(sources, dtype=object),
        "partition_hour": np.array(hours, dtype="datetime64[us]"),
        "line_number": np.array(numbers, dtype=np.int64),
        "line": np.array(texts, dtype=object),
        "read_error": np.array(flags, dtype=object),
    }
    return table, log
