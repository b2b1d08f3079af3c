"""Import OpenTelemetry GenAI spans (OTLP/JSON exports) as call events.

Applications already instrumented with OpenTelemetry (OpenLLMetry, OpenInference-to-OTel
bridges, the official `opentelemetry-instrumentation-openai-v2`, ...) need not add the tracker:
export spans as OTLP/JSON (the collector's `file` exporter, or any OTLP/JSON dump) and run
`spendwatch import-otel FILE...`. Spans that follow the GenAI semantic conventions become call
events in the landing folder; every other span is skipped and counted.

Re-importing is idempotent: an event's id is the span's traceId + spanId, and the output files
of one input file are named by the input's path (a hash of its absolute path) and replaced
atomically, so importing the same export twice leaves exactly the same landing files, and
importing an export that grew since (a collector still appending to it) replaces them with the
grown content instead of adding a second copy of every span already imported (which the ingest
would reject as duplicate_event_id). A rotated export is a new file: import it too.

The package: `otlp` (OTLP/JSON decoding), `mapping` (span -> call event), and here the import
itself (files in, landing files out). `spendwatch import-otel` is its command line.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from spendwatch.config import paths
from spendwatch.landing import landing_file, write_atomically
from spendwatch.otel.mapping import events_of, span_to_event
from spendwatch.otel.otlp import read_requests
from spendwatch.schema import CallEvent

__all__ = ["import_otel", "span_to_event"]

WRITER_ID = "otel"


def _expand(files: Iterable[str | os.PathLike]) -> Iterator[Path]:
    for item in files:
        path = Path(item)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.name.endswith((".json", ".jsonl", ".json.gz")):
                    yield child
        else:
            yield path


def import_otel(
    files: Iterable[str | os.PathLike], home: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Convert OTLP/JSON trace exports into landing files under `home` (default $SPENDWATCH_HOME).

    `files` may name files (JSON, JSON lines, optionally gzip) or folders (searched for *.json,
    *.jsonl, *.json.gz). Returns counts: files, spans, imported, skipped, skipped_by_reason,
    written (landing files) and errors (files that could not be read; the others still import).
    """
    landing = paths(home)
    skipped: Counter = Counter()
    stats: dict[str, Any] = {"files": 0, "spans": 0, "imported": 0, "errors": [], "written": []}
    covered: set[tuple[str, str]] = set()  # model calls' ancestors, across the files in order
    for source in _expand(files):
        try:
            data = source.read_bytes()
            requests = read_requests(data)
        except (OSError, ValueError, EOFError) as exc:
            stats["errors"].append(f"{source}: {exc}")
            continue
        stats["files"] += 1
        events, span_count = events_of(requests, skipped, covered)
        stats["spans"] += span_count
        digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:16]
        by_hour: dict[Path, list[CallEvent]] = {}
        for event in events:
            target = landing_file(landing.landing, event.occurred_at, f"{WRITER_ID}-{digest}")
            by_hour.setdefault(target, []).append(event)
        for target, hour_events in sorted(by_hour.items()):
            hour_events.sort(key=lambda e: (e.occurred_at, e.event_id))
            try:
                write_atomically(target, "".join(e.to_json_line() + "\n" for e in hour_events))
            except OSError as exc:
                stats["errors"].append(f"{target}: cannot write: {exc}")
                continue
            stats["imported"] += len(hour_events)
            stats["written"].append(str(target))
    stats["skipped"] = sum(skipped.values())
    stats["skipped_by_reason"] = dict(sorted(skipped.items()))
    return stats
