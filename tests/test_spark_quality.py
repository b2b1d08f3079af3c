"""The Great Expectations suites on the Spark target: the same raw and mart rows in DuckDB and in
Spark give the same frames, the same outcomes and the same ops.check_results rows, so dbt's
data_quality detector finds the same anomalies on both engines.

One Spark process runs the whole Spark side (`spark_side`, through run_in_spark as the Dagster
assets call it) and hands back JSON; the DuckDB side runs here; the tests compare the two.
This module is imported by that Spark process too (as tests.test_spark_quality): it imports
nothing from the test helpers.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from orchestration.lib import quality
from orchestration.lib.quality import (
    outcome_from_dict,
    outcome_to_dict,
    recorded_outcome,
    run_fct_suite,
    run_raw_suites,
)
from orchestration.lib.spark import run_in_spark

pytestmark = pytest.mark.spark

START = datetime(2026, 3, 2)  # a Monday; the window is six hours
END = START + timedelta(hours=6)
NOW, LATER = END + timedelta(hours=1), END + timedelta(hours=2)
H = [START + timedelta(hours=i) for i in range(6)]
RERUN = (H[2], H[3])  # the marts suite is re-run for this hour only, at LATER
SUITES = ("raw_load_hours", "fct_llm_calls")


def ts(value: datetime) -> str:
    return f"timestamp '{value:%Y-%m-%d %H:%M:%S.%f}'"


# The tables the suites read, with the columns they read (the Spark load writes the full
# columns of orchestration/lib/ingest/load.py; dbt builds the mart). `{using}` is Spark's.
TABLES = [
    "create schema if not exists raw",
    "create schema if not exists marts",
    """create table raw.load_log (partition_hour timestamp, source_file string,
        size_bytes bigint, modified_at timestamp, checksum string, lines bigint, loaded bigint,
        rejected bigint, loaded_at timestamp, file_error string){using}""",
    "create table raw.llm_calls (partition_hour timestamp, event_id string, "
    "occurred_at timestamp){using}",
    """create table marts.agg_hourly_model_cost (hour_at timestamp, provider string,
        model string, calls bigint, priced_calls bigint, unpriced_calls bigint){using}""",
]


def load_log(hour: datetime, file: str, lines: int, loaded: int, error: str | None = None):
    error_sql = "null" if error is None else f"'{error}'"
    return (
        f"({ts(hour)}, '{file}', 1000, {ts(hour)}, 'sha256:x', {lines}, {loaded}, "
        f"{lines - loaded}, {ts(NOW)}, {error_sql})"
    )


# Every raw check fails in exactly one hour of the window: H1 has no file (hours_contiguous),
# H2 5 % rejected (rejected_share), H3 a truncated gzip (broken_files), H4 files gone since
# they loaded (landing_files_present), H5 only an empty file: its newest event is H3's, 175
# minutes before its end (freshness, warn), and it loaded none of its usual 100 lines
# (volume_vs_usual, warn). H0 and H5 have the same hour of the four previous weeks.
HISTORY = [START + timedelta(hours=h) - timedelta(weeks=w) for w in (1, 2, 3, 4) for h in (0, 5)]
ROWS = [
    "insert into raw.load_log values "
    + ", ".join(
        [load_log(h, "app.jsonl", 100, 100) for h in HISTORY]
        + [
            load_log(H[0], "app.jsonl", 100, 100),
            load_log(H[2], "app.jsonl", 100, 95),
            load_log(H[3], "app.jsonl", 50, 50),
            load_log(H[3], "batch.jsonl.gz", 10, 10, "truncated_gzip"),
            load_log(H[4], "app.jsonl", 20, 20, "landing_files_missing"),
            load_log(H[5], "app.jsonl", 0, 0),
        ]
    ),
    "insert into raw.llm_calls values "
    + ", ".join(
        f"({ts(hour)}, 'e-{i}', {ts(at)})"
        for i, (hour, at) in enumerate(
            [
                (H[0], H[0] + timedelta(minutes=10, seconds=30)),
                (H[2], H[2] + timedelta(minutes=20, seconds=15)),
                (H[3], H[3] + timedelta(minutes=5, seconds=30, milliseconds=500)),
            ]
        )
    ),
    # H2: 10 of 100 calls unpriced (two models); H3 has a mart row without calls
    "insert into marts.agg_hourly_model_cost values "
    + ", ".join(
        [
            f"({ts(H[0])}, 'openai', 'gpt-4o-mini', 100, 100, 0)",
            f"({ts(H[2])}, 'openai', 'gpt-4o-mini', 90, 90, 0)",
            f"({ts(H[2])}, 'openai', 'gpt-9', 8, 0, 8)",
            f"({ts(H[2])}, 'anthropic', 'zzz-1', 2, 0, 2)",
            f"({ts(H[3])}, 'openai', 'gpt-4o-mini', 0, 0, 0)",
            f"({ts(H[5])}, 'openai', 'gpt-4o', 50, 50, 0)",
        ]
    ),
]

ALL_ROWS = """select asset, suite, check_name, severity, partition_hour, passed, unexpected_count,
    element_count, observed_value, details, checked_at
    from ops.check_results order by suite, check_name, partition_hour"""


def same(spark, duck) -> bool:
    """Equal as JSON text: 1 and 1.0, or "1" and 1, differ (`==` would let them pass)."""
    return json.dumps(spark, sort_keys=True) == json.dumps(duck, sort_keys=True)


def plain(value):
    """JSON as run_in_spark returns it (datetimes as text)."""
    return json.loads(json.dumps(value, default=str))


def frames(con) -> dict:
    return {
        name: json.loads(frame(con, START, END).to_json(orient="records", date_format="iso"))
        for name, frame in (("hours", quality.hours_frame), ("priced", quality.priced_frame))
    }


def spark_side(spark, home: Path, start: str, end: str, now: str, later: str) -> dict:
    """Everything the Spark target does, in the Spark process: tables from the same rows, both
    suites recorded, a re-run of each, and what ops.check_results holds afterwards."""
    for statement in TABLES + ROWS:
        spark.sql(statement.format(using=" using parquet"))
    return {
        "frames": frames(spark),
        "raw": quality.run_raw_suites_spark(spark, home, start, end, now),
        "fct": quality.run_fct_suite_spark(spark, home, start, end, now),
        "raw_again": quality.run_raw_suites_spark(spark, home, start, end, later),
        "fct_again": quality.run_fct_suite_spark(
            spark, home, RERUN[0].isoformat(), RERUN[1].isoformat(), later
        ),
        "rows": quality._engine(spark).rows(ALL_ROWS, {}),
        "recorded": {
            suite: quality.recorded_outcome_spark(spark, home, suite, start, end)
            for suite in SUITES
        },
        "nothing_recorded": nothing_recorded(
            lambda: quality.recorded_outcome_spark(spark, home, SUITES[1], later, later)
        ),
    }


def nothing_recorded(read) -> str:
    try:
        read()
    except LookupError as error:
        return str(error)
    return "no LookupError"


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("spark_quality")
    with pytest.MonkeyPatch.context() as mp:
        # a machine outside UTC: the hours must not move (Spark's session zone is UTC; PySpark
        # would read naive datetimes in the process's zone if they crossed as datetimes)
        mp.setenv("TZ", "America/New_York")
        spark = run_in_spark(
            "tests.test_spark_quality:spark_side", home,
            start=START.isoformat(), end=END.isoformat(), now=NOW.isoformat(),
            later=LATER.isoformat(),
        )  # fmt: skip
    warehouse = home / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse))
    try:
        for statement in TABLES + ROWS:
            con.execute(statement.format(using=""))
        duck_frames = frames(con)
    finally:
        con.close()
    duck = {
        "frames": duck_frames,
        "raw": [outcome_to_dict(o) for o in run_raw_suites(warehouse, START, END, NOW)],
        "fct": outcome_to_dict(run_fct_suite(warehouse, START, END, NOW)),
        "raw_again": [outcome_to_dict(o) for o in run_raw_suites(warehouse, START, END, LATER)],
        "fct_again": outcome_to_dict(run_fct_suite(warehouse, *RERUN, LATER)),
    }
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        duck["rows"] = con.execute(ALL_ROWS).fetchall()
    finally:
        con.close()
    duck["recorded"] = {
        suite: outcome_to_dict(recorded_outcome(warehouse, suite, START, END)) for suite in SUITES
    }
    duck["nothing_recorded"] = nothing_recorded(
        lambda: recorded_outcome(warehouse, SUITES[1], LATER, LATER)
    )
    return {"home": home, "warehouse": warehouse, "spark": spark, "duckdb": plain(duck)}


def test_the_frames_are_the_same_on_both_engines(both) -> None:
    spark, duck = both["spark"]["frames"], both["duckdb"]["frames"]
    assert same(spark, duck)
    hours = {row["partition_hour"][:13]: row for row in spark["hours"]}
    assert list(hours) == [f"{h:%Y-%m-%dT%H}" for h in H]
    h0, h2, h3, h4, h5 = (hours[f"{H[i]:%Y-%m-%dT%H}"] for i in (0, 2, 3, 4, 5))
    assert (h0["files"], h0["loaded"], h0["loaded_vs_usual"], h0["lag_minutes"]) == (
        1, 100, 1.0, 50)  # fmt: skip  # 01:00 − 00:10 (the seconds do not count)
    assert (h2["rejected"], h2["rejected_share"]) == (5, 0.05)
    assert (h3["files"], h3["broken_files"], h4["missing_files"]) == (2, 1, 1)
    assert (h5["lag_minutes"], h5["loaded_vs_usual"]) == (175, 0.0)
    priced = {row["hour_at"][:13]: row for row in spark["priced"]}
    assert list(priced) == [f"{H[i]:%Y-%m-%dT%H}" for i in (0, 2, 5)]  # H3 has no calls
    h2 = priced[f"{H[2]:%Y-%m-%dT%H}"]
    assert (h2["calls"], h2["priced_share"], h2["unpriced_models"]) == (
        100, 0.9, "openai/gpt-9, anthropic/zzz-1")  # fmt: skip  # ordered by model


def test_the_suites_fail_the_same_checks_and_hours(both) -> None:
    spark, duck = both["spark"], both["duckdb"]
    for key in ("raw", "fct", "raw_again", "fct_again"):
        assert same(spark[key], duck[key]), key
    (raw,) = spark["raw"]
    failed = {o["check_name"]: o for o in raw["outcomes"] if not o["passed"]}
    assert {n: (o["severity"], o["failing_hours"], o["unexpected_count"])
            for n, o in failed.items()} == {
        "hours_contiguous": ("error", [H[1].isoformat()], 1),
        "rejected_share": ("error", [H[2].isoformat()], 1),
        "broken_files": ("error", [H[3].isoformat()], 1),
        "landing_files_present": ("error", [H[4].isoformat()], 1),
        "freshness": ("warn", [H[5].isoformat()], 1),
        "volume_vs_usual": ("warn", [H[5].isoformat()], 1),
    }  # fmt: skip
    assert failed["rejected_share"]["values_by_hour"] == {H[2].isoformat(): [0.05]}
    (priced,) = spark["fct"]["outcomes"]
    assert (priced["passed"], priced["failing_hours"], priced["element_count"]) == (
        False, [H[2].isoformat()], 3)  # fmt: skip


def test_check_results_hold_the_same_rows_and_reruns_replace_their_window(both) -> None:
    spark, duck = both["spark"]["rows"], both["duckdb"]["rows"]
    assert same(spark, duck)
    # six raw checks and one marts check, each once per hour: no duplicates after the re-runs
    keys = [(r[1], r[2], r[4]) for r in spark]
    assert len(keys) == len(set(keys)) == 7 * 6
    checked = {(r[1], r[4]): r[10] for r in spark}
    assert {checked[("raw_load_hours", f"{h}")] for h in H} == {f"{LATER}"}
    # the marts suite re-ran for H2 only: its other hours keep the first run's rows
    assert [checked[("fct_llm_calls", f"{h}")] for h in H] == [
        f"{NOW}", f"{NOW}", f"{LATER}", f"{NOW}", f"{NOW}", f"{NOW}"]  # fmt: skip
    failing = [(r[2], r[4], r[6], r[8]) for r in spark if not r[5]]
    assert failing == [
        ("priced_share", f"{H[2]}", 1, "0.9"),
        ("broken_files", f"{H[3]}", 1, "1"),
        ("freshness", f"{H[5]}", 1, "175"),
        ("hours_contiguous", f"{H[1]}", 1, "0"),
        ("landing_files_present", f"{H[4]}", 1, "1"),
        ("rejected_share", f"{H[2]}", 1, "0.05"),
        ("volume_vs_usual", f"{H[5]}", 1, "0.0"),
    ]
    assert all(r[3] == ("error" if r[2] not in ("freshness", "volume_vs_usual") else "warn")
               for r in spark)  # fmt: skip


def test_the_recorded_outcomes_are_the_same(both) -> None:
    """What a Dagster check shows of a suite another step ran: the same on both engines, and
    the same clear error where nothing was recorded."""
    spark, duck = both["spark"], both["duckdb"]
    assert same(spark["recorded"], duck["recorded"])
    assert spark["nothing_recorded"] == duck["nothing_recorded"]
    assert spark["nothing_recorded"].startswith("no outcome of suite fct_llm_calls recorded")
    for suite in SUITES:
        assert not outcome_from_dict(spark["recorded"][suite]).passed  # an error-level failure


def test_a_check_gets_its_outcome_through_run_in_spark(both) -> None:
    """The call the Dagster check makes: recorded_outcome_spark in a Spark process of its own,
    turned back into a SuiteOutcome, equals DuckDB's recorded_outcome of the same window."""
    spark = outcome_from_dict(run_in_spark(
        "orchestration.lib.quality:recorded_outcome_spark", both["home"],
        suite="raw_load_hours", start=START.isoformat(), end=END.isoformat(),
    ))  # fmt: skip
    duck = recorded_outcome(both["warehouse"], "raw_load_hours", START, END)
    assert spark == duck
    assert same(spark.metadata(), duck.metadata())
    assert [o.check_name for o in spark.failed] == [
        "broken_files", "freshness", "hours_contiguous", "landing_files_present",
        "rejected_share", "volume_vs_usual"]  # fmt: skip
