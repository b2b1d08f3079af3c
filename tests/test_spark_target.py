"""The Spark target builds the same warehouse as DuckDB (`make test` and `make test-spark`).

A small landing set — four days of traffic with incidents in the last two, and a file of bad
lines — is materialized twice through the CLI, as a user runs it: once on the embedded DuckDB
default, once with SPENDWATCH_TARGET=spark (the Spark load, dbt-spark's session method, the
suites on Spark). `orchestration.lib.engine_parity` then compares the two warehouses: the same
rejected lines and reasons, the same row counts per table, calls and tokens equal and cost to
the micro-dollar per hour × feature × model, the same anomaly ids, severities and incident keys.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestration.lib.engine_parity import compare, duckdb_summary
from orchestration.lib.spark import is_server_of, run_in_spark
from spendwatch.generator import Incident, TrafficModel, generate

pytestmark = [pytest.mark.spark, pytest.mark.engine_parity, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
DAYS = 4
END = START + timedelta(days=DAYS)

#: incidents in the last two days: a fallback to a model the feature may not use (model drift
#: needs no baseline, so it is found), a retry storm and a volume spike (too little history for
#: a seasonal baseline: they shape the traffic, the volume detectors stay warming up)
INCIDENTS = [
    Incident("model_fallback", "smart-reply", "production", "2026-03-05T10:00:00Z", 3,
             "model_drift", "critical", {"model": "claude-3-opus", "share": 0.6}),
    Incident("retry_storm", "chat-assistant", "production", "2026-03-04T15:00:00Z", 3,
             "retry_storm", "critical", {"retry_share": 0.45, "error_share": 0.35}),
    Incident("volume_spike", "rag-search", "production", "2026-03-05T14:00:00Z", 3,
             "volume_spike", "critical", {"multiplier": 4.0}),
]  # fmt: skip

GOOD = {
    "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 100, "output_tokens": 20,
    "feature": "smart-reply", "environment": "production",
}  # fmt: skip


def _bad_lines(hour: datetime) -> str:
    """A writer's file with one line of each kind the ingest rejects, and good ones between."""
    at = (hour + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def line(**fields) -> str:
        return json.dumps({"event_id": f"bad-{len(fields)}-{sorted(fields)}", **GOOD,
                           "occurred_at": at, **fields})  # fmt: skip

    lines = [
        json.dumps({**GOOD, "event_id": "good-1", "occurred_at": at}),
        "",
        "{not json",
        "[1, 2]",
        line(input_tokens=-1),
        line(input_tokens="100"),
        line(feature="  "),
        line(status="maybe"),
        line(attempt=0),
        line(cache_read_tokens=500),
        line(reasoning_tokens=50),
        line(occurred_at="2026-03-05T09:05:00"),
        line(occurred_at="yesterday"),
        line(occurred_at=(hour - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")),
        line(schema_version=2),
        '{"event_id": "dup-key", "event_id": "again"}',
        json.dumps({**GOOD, "event_id": "good-1", "occurred_at": at}),  # a duplicate id
        json.dumps({**GOOD, "event_id": "good-2", "occurred_at": at, "tags": {"a": "b"}}),
    ]
    return "\n".join(lines) + "\n" + '{"event_id": "half-writ'  # a line still being written


def _landing(root: Path) -> Path:
    landing = root / "landing" / "calls"
    generate(landing, START, DAYS, 2000, 11, INCIDENTS, traffic=TrafficModel())
    hour = START + timedelta(days=3, hours=9)
    folder = landing / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"
    (folder / "bad-writer.jsonl").write_text(_bad_lines(hour))
    return landing


def _materialize(home: Path, target: str) -> subprocess.Popen:
    """`spendwatch materialize` of the whole range on `target`, started (not waited for)."""
    env = {
        **os.environ,
        "SPENDWATCH_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "SPENDWATCH_TARGET": target,
    }
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("spendwatch")), "materialize",
         "--start", START.isoformat(), "--end", END.isoformat()],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _servers_of(folder: Path) -> list[int]:
    """The pids of Spark Connect servers running on the metastore under `folder`."""
    pids = [int(path.name) for path in Path("/proc").glob("[0-9]*")]
    return [pid for pid in pids if is_server_of(pid, folder)]


def test_spark_builds_the_same_warehouse_as_duckdb(tmp_path: Path) -> None:
    landing = _landing(tmp_path / "source")
    homes = {target: tmp_path / target for target in ("duckdb", "spark")}
    for home in homes.values():
        shutil.copytree(landing, home / "landing" / "calls")

    # both at once, as two users would: the engines share nothing but the landing files
    began = time.monotonic()
    runs = {target: _materialize(home, target) for target, home in homes.items()}
    seconds = {}
    for target, run in runs.items():
        output, _ = run.communicate()
        seconds[target] = time.monotonic() - began
        assert run.returncode == 0, f"{target}: {output[-5000:]}"
    # the Spark run had one Connect server (dbt and the Python steps its clients), stopped after
    server = homes["spark"] / "spark"
    assert "SparkConnectServer" in (server / "connect-server.log").read_text()
    assert not (server / "connect-server.pid").exists()
    assert not _servers_of(server), "the run's Spark Connect server outlived the run"

    duck = duckdb_summary(homes["duckdb"] / "warehouse.duckdb")
    spark = run_in_spark("orchestration.lib.engine_parity:spark_summary", homes["spark"])
    differences, compared = compare(duck, spark)

    print(f"\nDuckDB and Spark on {DAYS} days ({duck['counts']['raw.llm_calls']:,} calls):")
    print(f"  materialize: DuckDB {seconds['duckdb']:.0f} s, Spark {seconds['spark']:.0f} s")
    print("\n".join(f"  {line}" for line in compared))
    assert not differences, "\n".join(differences)

    # the comparison compared something: bad lines were rejected, incidents were found
    reasons = {reason for _, _, reason in duck["rejected"]}
    assert {"invalid_json", "truncated_line", "duplicate_event_id", "duplicate_key",
            "timestamp_outside_partition", "cache_tokens_exceed_input"} <= reasons  # fmt: skip
    detectors = {(row[2], row[3]) for row in duck["anomalies"]}
    assert ("model_drift", "critical") in detectors  # the fallback to claude-3-opus
    assert any(d == "data_quality" for d, _ in detectors)  # the hour of the bad lines
    assert duck["counts"]["marts.anomalies"] > 0
