"""The raw load on Spark (issue 15, item 2): the same landing files loaded by the DuckDB ingest
and by the Spark load give the same rejected lines and reasons, the same loaded rows (every
column), the same load log; a re-load changes nothing; an hour whose files are gone keeps its
rows unless allow_empty. One Spark process runs the whole sequence (tests/spark_scenario.py)."""

from __future__ import annotations

import json
import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_faults_ingest import HOLES
from test_ingest import CORPUS, line, write_hour

HOUR = datetime(2026, 11, 3, 14, tzinfo=UTC)
PREV = HOUR - timedelta(hours=1)
NOW = HOUR + timedelta(minutes=20)  # as test_ingest: 14:50 is in the future

# lines beyond the DuckDB tests' corpus: where the two engines' JSON readers could disagree
EXTRA: list[tuple[bytes, str | None]] = [
    (line(event_id="prev-1"), "duplicate_event_id"),  # loaded in the hour before
    (line(event_id="  ws-id  ", feature="\u3000smart\t", status=" ok "), None),  # trimmed
    (line(event_id="ws-only-model", model=" \t "), "missing_required_field"),
    (line(event_id="attempt-2.0", attempt=2.0), "wrong_type"),
    (line(event_id="attempt-str", attempt="2"), "wrong_type"),
    (line(event_id="attempt-big", attempt=2**40), "invalid_value"),
    (line(event_id="attempt-zero", attempt=0), "invalid_value"),
    (line(event_id="attempt-huge", attempt=2**64), "wrong_type"),  # beyond UBIGINT
    (line(event_id="version-1.0", schema_version=1.0), "wrong_type"),
    (line(event_id="version-str", schema_version="1"), "wrong_type"),
    (line(event_id="tokens-100.0", input_tokens=100.0), "invalid_tokens"),
    (line(event_id="tokens-exp", input_tokens=1e5), "invalid_tokens"),
    (line(event_id="tokens-1e400")[:-1] + b', "reasoning_tokens": 1e400}', "invalid_tokens"),
    (line(event_id="latency-neg", latency_ms=-1.5), "invalid_value"),
    (line(event_id="latency-str", latency_ms="3"), "wrong_type"),
    (line(event_id="latency-ok", latency_ms=12.25, cost_usd_reported=0.00125), None),
    (line(event_id="bool-status", status=True), "wrong_type"),
    (line(event_id="tags-null-value", tags={"k": None}), "wrong_type"),
    (line(event_id="tags-empty", tags={}), None),
    (line(event_id="tags-null", tags=None)[:-1] + b', "tags": null}', None),
    (line(event_id="tags-unicode", tags={"r\u00e9gion": "\u00eele-de-France", "a": "b"}), None),
    (b'{"event_id": "escaped-\\u00e9", "occurred_at": "2026-11-03T14:06:00Z", '
     b'"provider": "openai", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1, '
     b'"feature": "caf\\u00e9 \\"quoted\\""}', None),
    (line(event_id="null-feature", feature=None)[:-1] + b', "feature": null}',
     "missing_required_field"),
    (line(event_id="nested-dup")[:-1] + b', "extra": {"a": 1, "a": 2}}', None),
    (line(event_id="ts-lower", occurred_at="2026-11-03t14:07:00z"), "timestamp_unparseable"),
    (line(event_id="glued") + line(event_id="glued-2"), "invalid_json"),  # a lost newline
    (line(event_id="ts-no-seconds", occurred_at="2026-11-03T14:07Z"), None),
    (line(event_id="ts-hour-offset", occurred_at="2026-11-03T16:08:00+02"), None),
    (line(event_id="ts-compact-offset", occurred_at="2026-11-03T09:09:00.250-0500"), None),
    (line(event_id="ts-space", occurred_at="2026-11-03 14:10:00.123456Z"), None),
    (line(event_id="ts-date-only", occurred_at="2026-11-03"), "timestamp_unparseable"),
    (line(event_id="ts-bad-month", occurred_at="2026-13-03T14:10:00Z"), "timestamp_unparseable"),
    (line(event_id="ts-number", occurred_at=1700000000), "wrong_type"),
    (line(event_id="ts-before", occurred_at="2026-11-03T13:59:59.999Z"),
     "timestamp_outside_partition"),
    (b'"just a string"', "not_an_object"),
    (b"null", "not_an_object"),
    (b'{"event_id": "trailing"} x', "invalid_json"),
    (b"{'single': 'quotes'}", "invalid_json"),
    (b"", "empty_line"),
    (b"\t \xe3\x80\x80", "empty_line"),
]  # fmt: skip
# DuckDB's validation holes (issue 13), moved into this test's hour
HOLE_LINES = [
    (hole.replace("2026-11-03T10:05:00Z", "2026-11-03T14:05:00Z").encode(), reason)
    for _, hole, reason in HOLES
]


def write_landing(landing: Path) -> dict[str, list[tuple[bytes, str | None]]]:
    """The landing files (for both engines); returns each file's lines and expected reasons."""
    files = {
        "app-1.jsonl": CORPUS,
        "app-2.jsonl": EXTRA + HOLE_LINES,
        # gzip: a bad line, an event seen in app-1 (duplicate within the load), and CRLF
        "app-3.jsonl.gz": [(line(event_id="gz-1"), None), (b"[]", "not_an_object"),
                           (line(event_id="ok-unicode"), "duplicate_event_id"),
                           (line(event_id="gz-2"), None)],
        "gone.jsonl": [(line(event_id="gone-1"), None)],
    }  # fmt: skip
    for name, lines in files.items():
        ending = b"\r\n" if name.endswith(".gz") else b"\n"
        write_hour(landing, HOUR, name, ending.join(raw for raw, _ in lines) + ending)
    # a writer still writing (no final newline), in plain and gzip; a BOM; invalid UTF-8 last
    write_hour(
        landing, HOUR, "app-4.jsonl", line(event_id="w-1") + b"\n" + line(event_id="w-2")[:40]
    )
    write_hour(landing, HOUR, "app-5.jsonl.gz", line(event_id="wz-1") + b"\n" + b'{"event_id": "wz')
    write_hour(
        landing,
        HOUR,
        "app-6.jsonl",
        b"\xef\xbb\xbf"
        + line(event_id="bom-1")
        + b"\n"
        + line(event_id="latin-last", feature="caf\u00e9").replace(b"\xc3\xa9", b"\xe9"),
    )
    write_hour(
        landing, HOUR, "app-7.jsonl", line(event_id="u16-1").decode().encode("utf-16") + b"\n"
    )
    write_hour(landing, PREV, "prev.jsonl",
          line(event_id="prev-1", occurred_at="2026-11-03T13:05:00Z") + b"\n"
          + line(event_id="prev-2", occurred_at="2026-11-03T13:06:00Z") + b"\n")  # fmt: skip
    return files


@pytest.fixture(scope="module")
def outcome(tmp_path_factory) -> dict:
    """The scenario on DuckDB and on Spark, from two homes holding the same landing files."""
    from spark_scenario import duckdb_scenario

    from orchestration.lib.spark import run_in_spark

    root = tmp_path_factory.mktemp("spark_load")
    duck, spark = root / "duck", root / "spark"
    files = write_landing(duck / "landing" / "calls")
    shutil.copytree(duck / "landing", spark / "landing")  # copy2: same bytes and mtimes
    started = time.monotonic()
    at = {"prev": PREV.isoformat(), "hour": HOUR.isoformat(), "now": NOW.isoformat()}
    spark_out = run_in_spark("tests.spark_scenario:spark_scenario", spark, **at)
    spark_seconds = time.monotonic() - started
    duck_out = duckdb_scenario(duck, PREV, HOUR, NOW)
    return {
        "files": files,
        "duckdb": normalise(duck_out, duck / "landing" / "calls"),
        "spark": normalise(spark_out, spark / "landing" / "calls"),
        "spark_results": spark_out["results"],
        "spark_seconds": spark_seconds,
    }


def normalise(out: dict, landing: Path) -> dict:
    """Paths relative to the landing folder, tags as parsed JSON, rows sorted."""
    root = str(landing) + "/"

    def value(v):
        if isinstance(v, str) and root in v:
            return v.replace(root, "")
        return v

    tags_at = 3 + list(__import__("spendwatch.schema").schema.WAREHOUSE_COLUMNS).index("tags")
    snapshots = []
    for snap in out["snapshots"]:
        calls = []
        for row in snap["calls"]:
            row = [value(v) for v in row]
            row[tags_at] = json.loads(row[tags_at])
            calls.append(row)
        snapshots.append({
            "calls": sorted(calls, key=lambda r: (r[0], r[1])),
            "rejected": sorted(([value(v) for v in r] for r in snap["rejected"]),
                               key=lambda r: (r[0], r[1])),
            "load_log": sorted(([value(v) for v in r] for r in snap["load_log"]),
                               key=lambda r: (r[1], r[0])),
        })  # fmt: skip
    results = []
    for r in out["results"]:
        results.append({
            "lines": r["lines"], "loaded": r["loaded"], "rejected": r["rejected"],
            "rejected_by_reason": r["rejected_by_reason"],
            "kept_hours": {str(datetime.fromisoformat(str(h)).astimezone(UTC)): n
                           for h, n in r["kept_hours"].items()},
            "file_errors": {value(k): value(v) for k, v in r["file_errors"].items()},
        })  # fmt: skip
    return {"snapshots": snapshots, "results": results}


pytestmark = pytest.mark.spark


def test_the_rules_are_written_once() -> None:
    """Both engines' queries come from one rule list: the same reasons in the same order, the
    same token-part rules, the same details."""
    from orchestration.lib.ingest.validate import validate_sql

    duck, spark = validate_sql(NOW, engine="duckdb"), validate_sql(NOW, engine="spark")
    reasons = re.compile(r"(?:then|else) '([a-z_]+)'")
    assert reasons.findall(duck) == reasons.findall(spark)
    # every code of validate's table but the reader's own and duplicate_event_id
    assert len(set(reasons.findall(duck))) == 16
    details = re.compile(r"when '([a-z_]+)' then")
    assert details.findall(duck) == details.findall(spark)
    assert "try_parse_json" in spark and "json_transform" in duck


def test_same_rejected_lines_and_reasons(outcome) -> None:
    duck, spark = (outcome[e]["snapshots"][0]["rejected"] for e in ("duckdb", "spark"))
    assert [r[:2] + r[3:4] for r in spark] == [r[:2] + r[3:4] for r in duck]
    # and every line has the reason the corpus names (the DuckDB ingest's; not only "equal")
    by_line = {(r[0], r[1]): r[3] for r in spark}
    for name, lines in outcome["files"].items():
        for number, (_, reason) in enumerate(lines, 1):
            if name != "gone.jsonl":
                assert by_line.get((f"date=2026-11-03/hour=14/{name}", number)) == reason, (
                    name, number)  # fmt: skip
    assert by_line[("date=2026-11-03/hour=14/app-4.jsonl", 2)] == "truncated_line"
    assert by_line[("date=2026-11-03/hour=14/app-5.jsonl.gz", 2)] == "truncated_line"
    assert by_line[("date=2026-11-03/hour=14/app-6.jsonl", 2)] == "invalid_utf8"
    assert by_line[("date=2026-11-03/hour=14/app-7.jsonl", 1)] == "invalid_utf8"


def test_same_details_event_ids_and_raw_lines(outcome) -> None:
    duck, spark = (outcome[e]["snapshots"][0]["rejected"] for e in ("duckdb", "spark"))
    assert spark == duck
    details = {r[5]: r[4] for r in spark if r[5]}
    assert details["prev-1"] == (
        "already loaded in hour 2026-11-03 13:00 (date=2026-11-03/hour=13/prev.jsonl)"
    )
    assert details["ok-unicode"] == "first seen in date=2026-11-03/hour=14/app-1.jsonl line 2"
    assert details["attempt-big"] == "status=ok attempt=1099511627776 latency_ms=null"


def test_same_loaded_rows_every_column(outcome) -> None:
    duck, spark = (outcome[e]["snapshots"][0]["calls"] for e in ("duckdb", "spark"))
    assert spark == duck
    by_id = {r[3]: r for r in spark}
    assert {"ws-id", "ts-hour-offset", "escaped-\u00e9", "bom-1", "gz-2", "w-1", "wz-1"} <= set(
        by_id
    )
    assert by_id["ws-id"][3 + 9] == "smart"  # feature, trimmed of U+3000 and a tab
    assert by_id["ts-hour-offset"][4] == "2026-11-03 14:08:00.000000"
    assert by_id["tags-unicode"][-2] == {"r\u00e9gion": "\u00eele-de-France", "a": "b"}


def test_same_load_log(outcome) -> None:
    duck, spark = (outcome[e]["snapshots"][0]["load_log"] for e in ("duckdb", "spark"))
    assert spark == duck
    for row in spark:
        assert row[5] == row[6] + row[7]  # lines = loaded + rejected
    errors = {r[0]: r[8] for r in spark if r[8]}
    assert errors == {
        "date=2026-11-03/hour=14/app-7.jsonl":
            "not_utf8: date=2026-11-03/hour=14/app-7.jsonl: a UTF-16 byte order mark"
    }  # fmt: skip
    assert outcome["duckdb"]["results"][:2] == outcome["spark"]["results"][:2]


def test_reloading_changes_nothing(outcome) -> None:
    for engine in ("duckdb", "spark"):
        first, again = outcome[engine]["snapshots"][:2]
        assert again == first, engine


def test_an_hour_whose_files_are_gone_keeps_its_rows_unless_allow_empty(outcome) -> None:
    duck, spark = outcome["duckdb"], outcome["spark"]
    assert spark["snapshots"][2:] == duck["snapshots"][2:]
    assert spark["results"][2:5] == duck["results"][2:5]
    kept, emptied = spark["snapshots"][2:]
    prev_rows = [r[3] for r in kept["calls"] if r[2].startswith("2026-11-03 13:")]
    assert prev_rows == ["prev-1", "prev-2"]
    assert {r[8] for r in kept["load_log"] if r[1].startswith("2026-11-03 13:")} == {
        "landing_files_missing"
    }
    assert spark["results"][3]["kept_hours"] == {"2026-11-03 13:00:00+00:00": 2}
    assert not any(r[0].endswith("gone.jsonl") for r in kept["calls"] + kept["load_log"])
    assert not [r for r in emptied["calls"] if r[2].startswith("2026-11-03 13:")]
    assert not [r for r in emptied["load_log"] if r[1].startswith("2026-11-03 13:")]
    assert spark["results"][4]["kept_hours"] == {}
    # with prev emptied, its event in 14:00 is no longer a duplicate
    assert "prev-1" in {r[3] for r in emptied["calls"]}


def test_a_damaged_gzip_file_is_quarantined_and_the_others_load(outcome) -> None:
    """Where the engines differ, on purpose (docs/architecture.md, "The raw load"): DuckDB
    loads the lines before the damage, Spark's gzip reader none; both name the file."""
    cut = "date=2026-11-03/hour=15/cut.jsonl.gz"
    duck, spark = outcome["duckdb"]["results"][5], outcome["spark"]["results"][5]
    assert duck["file_errors"][cut].startswith(f"corrupt_gzip: {cut}: ")
    assert spark["file_errors"][cut] == (
        f"corrupt_gzip: {cut}: Spark's gzip reader could not read it to its end; "
        "none of its lines were loaded"
    )
    assert set(spark["file_errors"]) == set(duck["file_errors"]) == {cut}
    assert (spark["lines"], spark["loaded"], spark["rejected"]) == (1, 1, 0)  # good.jsonl
    assert duck["rejected"] == 0 and 500 < duck["loaded"] < 2000


def test_the_json_result_becomes_a_load_result(outcome) -> None:
    """What the Dagster asset gets back from run_in_spark is the DuckDB load's LoadResult."""
    from orchestration.lib.ingest.load import LoadResult
    from orchestration.lib.ingest.spark_load import load_result

    result = load_result(outcome["spark_results"][3])
    assert isinstance(result, LoadResult)
    assert (result.start, result.end) == (PREV, HOUR + timedelta(hours=1))
    assert result.kept_hours == {PREV: 2}
    assert result.warnings()[0].startswith(
        "landing files for 2026-11-03T13 are missing; 2 rows kept"
    )
    assert result.rejected_by_reason == outcome["duckdb"]["results"][3]["rejected_by_reason"]
