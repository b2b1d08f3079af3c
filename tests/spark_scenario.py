"""The load sequence tests/test_spark_load.py runs on both engines: the same steps, and after
each a snapshot of the three raw tables as plain values (timestamps as text), so the two
engines' outcomes compare as equal lists. The Spark side runs in a process of its own
(`run_in_spark("tests.spark_scenario:spark_scenario", ...)`), hence a module without test
imports."""

from __future__ import annotations

import gzip
import json
import shutil
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from spendwatch.config import paths
from spendwatch.landing import hour_dir
from spendwatch.schema import WAREHOUSE_COLUMNS

#: strftime / date_format patterns giving the same text
TS = {"duckdb": "strftime({}, '%Y-%m-%d %H:%M:%S.%f')",
      "spark": "date_format({}, 'yyyy-MM-dd HH:mm:ss.SSSSSS')"}  # fmt: skip
TEXT = {"duckdb": "{}::varchar", "spark": "cast({} as string)"}


def snapshot_sql(engine: str) -> dict[str, str]:
    """Every column that a load decides (not loaded_at / rejected_at: the time of the load)."""

    def col(name: str, kind: str = "") -> str:
        if kind == "TIMESTAMP":
            return TS[engine].format(name)
        if kind == "JSON":
            return TEXT[engine].format(name)
        return name

    calls = ", ".join(col(n, t) for n, t in WAREHOUSE_COLUMNS.items())
    return {
        "calls": f"select source_file, line_number, {col('partition_hour', 'TIMESTAMP')}, "
        f"{calls} from raw.llm_calls",
        "rejected": f"select source_file, line_number, {col('partition_hour', 'TIMESTAMP')}, "
        "reason, reason_detail, event_id, raw_line from raw.llm_calls_rejected",
        "load_log": f"select source_file, {col('partition_hour', 'TIMESTAMP')}, size_bytes, "
        f"{col('modified_at', 'TIMESTAMP')}, checksum, lines, loaded, rejected, file_error "
        "from raw.load_log",
    }


def steps(load: Callable, snapshot: Callable, home: Path, prev: datetime, hour: datetime,
          now: datetime) -> dict:  # fmt: skip
    """prev's hour alone, then hour's (whose lines repeat events of prev); hour again (nothing
    changes); then prev's files and hour's `gone.jsonl` are removed and both hours reloaded,
    first keeping prev (its files are gone), then with allow_empty; last, the next hour with a
    damaged gzip file."""
    out: dict = {"results": [], "snapshots": []}
    nxt = hour + timedelta(hours=1)
    out["results"].append(load(prev, prev + timedelta(hours=1), now, False))
    out["results"].append(load(hour, nxt, now, False))
    out["snapshots"].append(snapshot())
    out["results"].append(load(hour, nxt, now, False))
    out["snapshots"].append(snapshot())
    landing = paths(home).landing
    shutil.rmtree(hour_dir(landing, prev))
    (hour_dir(landing, hour) / "gone.jsonl").unlink()
    out["results"].append(load(prev, nxt, now, False))
    out["snapshots"].append(snapshot())
    out["results"].append(load(prev, nxt, now, True))
    out["snapshots"].append(snapshot())
    # a damaged gzip file beside a good one, in the next hour (where the engines differ)
    folder = hour_dir(landing, nxt)
    folder.mkdir(parents=True)
    (folder / "good.jsonl").write_bytes(_event_line("next-good", nxt) + b"\n")
    whole = gzip.compress(b"".join(_event_line(f"cut-{i}", nxt) + b"\n" for i in range(2000)))
    (folder / "cut.jsonl.gz").write_bytes(whole[: len(whole) * 2 // 3])
    out["results"].append(load(nxt, nxt + timedelta(hours=1), nxt + timedelta(hours=1), False))
    return out


def _event_line(event_id: str, hour: datetime) -> bytes:
    return json.dumps({"event_id": event_id, "occurred_at": f"{hour:%Y-%m-%dT%H}:05:00Z",
                       "provider": "openai", "model": "gpt-4o", "input_tokens": 100,
                       "output_tokens": 20, "feature": "smart-reply"}).encode()  # fmt: skip


def spark_scenario(spark, home, prev: str, hour: str, now: str) -> dict:
    from orchestration.lib.ingest.spark_load import load_window_spark

    home = Path(home)
    queries = snapshot_sql("spark")

    def load(start, end, at, allow_empty):
        started = time.monotonic()
        result = load_window_spark(spark, home, start, end, now=at, allow_empty=allow_empty)
        print(f"spark load {start:%H}-{end:%H}: {time.monotonic() - started:.1f} s",
              file=sys.stderr)  # fmt: skip
        return result

    def snapshot():
        return {k: [list(r) for r in spark.sql(q).collect()] for k, q in queries.items()}

    return steps(load, snapshot, home, *(datetime.fromisoformat(t) for t in (prev, hour, now)))


def duckdb_scenario(home: Path, prev: datetime, hour: datetime, now: datetime) -> dict:
    import dataclasses

    import duckdb

    from orchestration.lib.ingest import load_window

    p = paths(home)
    queries = snapshot_sql("duckdb")

    def load(start, end, at, allow_empty):
        result = load_window(p.warehouse, p.landing, start, end, now=at, allow_empty=allow_empty)
        return dataclasses.asdict(result)

    def snapshot():
        con = duckdb.connect(str(p.warehouse), read_only=True)
        try:
            return {k: [list(r) for r in con.execute(q).fetchall()] for k, q in queries.items()}
        finally:
            con.close()

    return steps(load, snapshot, home, prev, hour, now)
