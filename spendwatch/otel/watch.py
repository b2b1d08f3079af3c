"""Follow the OpenTelemetry Collector's `file` exporter: import what each export file gained since
the last look, exactly once, however the Collector grows, rotates and compresses its files.

The Collector writes one `ExportTraceServiceRequest` per line (`format: json`), or, with
`compression: zstd`, each request zstd-compressed behind a 4-byte big-endian length. With
`rotation` it renames the full file to `<name>-<timestamp>.<ext>` and starts a new one; an
operator may gzip old files afterwards (logrotate). So a file is known by its content, not its
name: its key is a digest of its first complete record, which renaming, gzip and growth keep.
For each key the cursor holds the offset (into the uncompressed stream) up to which records were
imported; a look imports the complete records after it and moves it on. A half-written last line
(or a frame whose bytes have not all arrived) ends the look at the record before it and is taken
next time. Keys whose files are gone (deleted by `max_backups`) are forgotten.

The landing files of one look are named by the file's key and the offset the look started at
(`otel-<key>-<offset>.jsonl`, per UTC hour) and written atomically: a look repeated after a crash
between writing them and saving the cursor rewrites the same files rather than adding copies.

Standard library only, but for zstd (`zstandard`, imported when a zstd file is met).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spendwatch.landing import landing_file, write_atomically
from spendwatch.otel.mapping import events_of
from spendwatch.otel.otlp import field as otlp_field
from spendwatch.otel.otlp import is_zstd_framed, zstd_frames
from spendwatch.schema import CallEvent

__all__ = ["WatchResult", "read_records", "watch_exports"]

_GZIP_MAGIC = b"\x1f\x8b"
#: how many looks an ancestor of a model-call span is remembered (a few minutes at one a minute)
COVERED_LOOKS = 5


@dataclass
class Record:
    start: int  # offset of the record in the (uncompressed) stream
    end: int  # offset just past it
    payload: bytes  # the JSON text of one ExportTraceServiceRequest


@dataclass
class WatchResult:
    cursor: dict[str, Any]
    hours: dict[datetime, int] = field(default_factory=dict)  # hour -> events landed in it
    files: int = 0  # export files that had new records
    records: int = 0
    spans: int = 0
    imported: int = 0
    skipped: Counter = field(default_factory=Counter)
    written: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # files whose last record is incomplete


def _stream(data: bytes) -> bytes:
    """The file's bytes, gunzipped if gzip: as much as is there (a gzip still being written
    gives what it has so far)."""
    if data[:2] == _GZIP_MAGIC:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    return data


def read_records(data: bytes) -> tuple[list[Record], bool]:
    """The complete records of an export file's content, and whether an incomplete one follows.

    JSON lines (`format: json`), or length-prefixed zstd frames (`compression: zstd`); either
    may be gzipped as a whole. A binary `format: proto` file is refused with what to change.
    """
    stream = _stream(data)
    if is_zstd_framed(stream):
        return _frames(stream)
    if stream[:1] not in (b"{", b"[", b" ", b"\n", b"\r", b"\t", b"\xef", b""):
        raise ValueError(
            "not OTLP/JSON: set `format: json` on the Collector's file exporter (spendwatch "
            "reads JSON lines, optionally with `compression: zstd`)"
        )
    records, position = [], 0
    while True:
        newline = stream.find(b"\n", position)
        if newline < 0:
            break
        line = stream[position:newline].strip()
        if line:
            records.append(Record(position, newline + 1, line))
        position = newline + 1
    return records, bool(stream[position:].strip())


def _frames(stream: bytes) -> tuple[list[Record], bool]:
    frames, partial = zstd_frames(stream)
    return [Record(start, end, payload) for start, end, payload in frames], partial


def _exports(folder: Path) -> list[Path]:
    """Export files, oldest first (rotated files before the one still written)."""
    found = [
        p for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith((".tmp", ".swp"))
    ]  # fmt: skip
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def _key(first_record: bytes) -> str:
    return hashlib.sha256(first_record).hexdigest()[:16]


def _new_records(path: Path, offsets: dict[str, dict[str, Any]]) -> tuple[str | None, list, bool]:
    """(the file's key, its complete records after the key's offset, whether an incomplete one
    follows). A plain file is read from its first line (the key) and its offset on: a file that
    grows is not read whole every look. Compressed ones are decompressed whole."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        if head[:2] == _GZIP_MAGIC or is_zstd_framed(head):
            records, incomplete = read_records(head + handle.read())
            if not records:
                return None, [], incomplete
            key = _key(records[0].payload)
            done = int(offsets.get(key, {}).get("offset", 0))
            return key, [r for r in records if r.start >= done], incomplete
        handle.seek(0)
        first = handle.readline()
        while first.strip() == b"" and first.endswith(b"\n"):  # blank lines before the first
            first = handle.readline()
        if not first.endswith(b"\n"):
            return None, [], bool(first.strip())
        key = _key(first.strip())
        done = int(offsets.get(key, {}).get("offset", 0))
        handle.seek(done)
        records, incomplete = read_records(handle.read())
    for record in records:  # positions in the file, not in what was read
        record.start += done
        record.end += done
    return key, records, incomplete


def watch_exports(folder: Path, landing: Path, cursor: dict[str, Any] | None) -> WatchResult:
    """Import what the export files under `folder` gained since `cursor` into `landing`.

    Returns the new cursor (save it only after this returns), the UTC hours that got events and
    the counts. A file whose size and modification time are those of the last look is not read
    again. A file that cannot be read or decoded is reported in `errors` and looked at again
    next time; a record that is not an OTLP/JSON request is reported and passed over.
    """
    offsets: dict[str, dict[str, Any]] = dict((cursor or {}).get("files", {}))
    look = int((cursor or {}).get("look", 0)) + 1
    # ancestors of model-call spans seen in the last COVERED_LOOKS looks: an agent span that
    # reaches the file after its model calls (it ends after them) is still known as covered
    remembered = {
        (name[:32], name[32:]): stamp
        for name, stamp in (cursor or {}).get("covered", {}).items()
        if look - int(stamp) < COVERED_LOOKS
    }
    covered = set(remembered)
    result = WatchResult(cursor={})
    present: set[str] = set()
    unreadable: set[str] = set()
    for path in _exports(folder) if folder.is_dir() else []:
        try:
            stat = path.stat()  # before reading: a file that grows meanwhile is read again
            seen = {"file": path.name, "size": stat.st_size, "mtime": stat.st_mtime_ns}
            unchanged = [
                key for key, state in offsets.items()
                if all(state.get(name) == value for name, value in seen.items())
            ]  # fmt: skip
            if unchanged:
                present.add(unchanged[0])
                if offsets[unchanged[0]].get("waiting"):
                    result.waiting.append(path.name)
                continue
            key, new, incomplete = _new_records(path, offsets)
        except (OSError, ValueError, zlib.error, EOFError) as exc:
            result.errors.append(f"{path}: {exc}")
            unreadable.add(path.name)
            continue
        if incomplete:
            result.waiting.append(path.name)
        if key is None:
            continue
        present.add(key)
        state = offsets.get(key, {"offset": 0})
        offsets[key] = {**state, **seen, "waiting": incomplete}
        if not new:
            continue
        requests = []
        for record in new:
            try:
                request = json.loads(record.payload)
                if not isinstance(request, dict) or otlp_field(request, "resourceSpans") is None:
                    raise ValueError("no resourceSpans")
            except ValueError as exc:
                result.errors.append(
                    f"{path} at byte {record.start}: not an OTLP/JSON trace request ({exc}); "
                    "passed over"
                )
                continue
            requests.append(request)
        events, span_count = events_of(requests, result.skipped, covered)
        by_target: dict[Path, list[CallEvent]] = {}
        for event in events:
            target = landing_file(landing, event.occurred_at, f"otel-{key}-{new[0].start:012d}")
            by_target.setdefault(target, []).append(event)
        for target, hour_events in sorted(by_target.items()):
            hour_events.sort(key=lambda e: (e.occurred_at, e.event_id))
            write_atomically(target, "".join(e.to_json_line() + "\n" for e in hour_events))
            result.written.append(str(target))
            hour = hour_events[0].occurred_at.astimezone(UTC)
            hour = hour.replace(minute=0, second=0, microsecond=0)
            result.hours[hour] = result.hours.get(hour, 0) + len(hour_events)
        offsets[key]["offset"] = new[-1].end
        result.files += 1
        result.records += len(new)
        result.spans += span_count
        result.imported += len(events)
    # files the Collector deleted (max_backups) are forgotten; a file that failed to read stays
    result.cursor = {
        "look": look,
        "files": {
            key: state for key, state in sorted(offsets.items())
            if key in present or state.get("file") in unreadable
        },
        "covered": {
            trace + span: remembered.get((trace, span), look) for trace, span in sorted(covered)
        },
    }  # fmt: skip
    return result
