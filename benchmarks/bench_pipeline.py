"""Generator and ingest throughput, each against a floor measured in the same run.

- generate: calls per second writing the landing layout (numpy draws + one DuckDB COPY).
  Floor: DuckDB writing the same number of rows of a fixed JSON record to one file — the cost
  of the bytes alone, without drawing or partitioning.
- ingest: landing lines per second through `load_window` (read, split, validate in SQL, load,
  quarantine, load log). Floor: DuckDB's own `read_json` of the same files into a table, with
  no validation, quarantine or reconciliation, in memory; and (`file_floor`, `file_ratio`) into
  a database file, where the ingest writes (the write alone costs DuckDB ~5 us a row).
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from orchestration.lib.ingest import load_window
from spendwatch.generator import generate

CALLS = 1_000_000
START = datetime(2026, 10, 5, tzinfo=UTC)
DAYS = 7


def _result(name: str, value: float, unit: str, floor: float) -> dict:
    return {
        "name": name,
        "value": round(value),
        "unit": unit,
        "floor": round(floor),
        "ratio": round(value / floor, 3) if floor else None,
    }


def run(calls: int = CALLS, tmp_dir: str | None = None) -> list[dict]:
    """Measure with `calls` calls in a temporary folder (under `tmp_dir` when given). Paths
    reach DuckDB as parameters, so any folder name works (tests run it under `o'brien/`)."""
    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        root = Path(tmp)
        landing = root / "landing"
        began = time.perf_counter()
        result = generate(landing, START, DAYS, calls // DAYS, seed=1)
        gen_seconds = time.perf_counter() - began

        con = duckdb.connect()
        con.execute("set enable_progress_bar = false")
        began = time.perf_counter()
        con.execute(
            f"""copy (select i as event_id, '2026-10-05T10:00:00.000Z' as occurred_at,
                'openai' as provider, 'gpt-4o-mini' as model, 1200 as input_tokens,
                300 as output_tokens, 0 as cache_read_tokens, 0 as cache_write_tokens,
                'smart-reply' as feature, '/api/v1/reply' as endpoint,
                'production' as environment, 'team-messaging' as team_id,
                'user-0001' as user_id, 'v1' as prompt_version, 'ok' as status,
                1 as attempt, 812.5 as latency_ms, {{'region': 'us-east-1'}} as tags
                from range({result.calls}) as t(i))
            to $out (format json)""",
            {"out": str(root / "floor.jsonl")},
        )
        write_floor = time.perf_counter() - began

        began = time.perf_counter()
        loaded = load_window(root / "warehouse.duckdb", landing, START, START.replace(day=12))
        ingest_seconds = time.perf_counter() - began
        assert loaded.loaded == result.calls, "the benchmark data must load cleanly"

        read_floor = _read_floor(con, landing)
        con.close()
        con = duckdb.connect(str(root / "floor.duckdb"))  # where the ingest writes: a file
        file_floor = _read_floor(con, landing)
        con.close()
    ingest = _result("ingest", loaded.lines / ingest_seconds, "lines/s", loaded.lines / read_floor)
    ingest["file_floor"] = round(loaded.lines / file_floor)
    ingest["file_ratio"] = round(ingest["value"] / ingest["file_floor"], 3)
    return [
        _result("generate", result.calls / gen_seconds, "calls/s", result.calls / write_floor),
        ingest,
    ]


def _read_floor(con: duckdb.DuckDBPyConnection, landing: Path) -> float:
    """Seconds DuckDB takes to read the landing files into a table, with no validation."""
    con.execute("set enable_progress_bar = false")
    began = time.perf_counter()
    con.execute(
        "create table floor as select * from read_json($files, format = 'newline_delimited')",
        {"files": str(landing / "*" / "*" / "*.jsonl")},
    )
    return time.perf_counter() - began
