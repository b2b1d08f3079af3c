"""An hourly run reads the window's calls and the marts' own history, never the calls of the
past, and builds exactly what one run over the whole range builds.

Two warehouses over the same landing files: `whole` is built by one dbt run over the range;
`hourly` by one run up to an evening, then hour by hour, the way the schedule builds it. Every
table of the `marts` schema must hold the same rows (EXCEPT ALL both ways, all columns). The
traffic has the cases that could tell the two apart: incidents (anomalies and incident keys), a
feature that starts inside an hourly window, and one whose last call leaves the grid's week in
the middle of the hourly runs. One hourly run is made with every call before its window taken
out of raw.llm_calls and marts.fct_llm_calls: it must still build the same rows, so the hourly
run does not read the calls of the history. Then a late file reloads an older hour: the hours
after it keep their scores (as before this change: only their sums are history), and the next
hours are scored with the reloaded hour as a fresh build scores them.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from helpers import dbt_build

from orchestration.lib.ingest import load_window
from spendwatch.generator import default_incidents, generate
from spendwatch.landing import landing_file

START = datetime(2026, 11, 1, 4, tzinfo=UTC)
DAYS = 17  # incidents need two weeks of history; the fresh ones land in the hourly runs
END = START + timedelta(days=DAYS)  # 2026-11-18 04:00
# the hours built one by one: smart-reply's telemetry gap (warning, warning, critical)
FIRST = datetime(2026, 11, 16, 11, tzinfo=UTC)
LAST = FIRST + timedelta(hours=2)  # built without the calls before its day
LATE_HOUR = FIRST - timedelta(hours=30)  # the hour a late file reloads
SERIES_MARTS = ("agg_hourly_feature_cost", "agg_hourly_model_cost")
ADDITIVE = (
    "calls, priced_calls, unpriced_calls, error_calls, retry_calls, cache_hit_calls, "
    "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, "
    "total_tokens, cost_usd, cache_savings_usd"
)


def write_calls(landing: Path, hour: datetime, feature: str, count: int, writer: str) -> None:
    """`count` calls of `feature` in `hour`, in a landing file of their own."""
    path = landing_file(landing, hour, writer)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{writer}/{hour:%Y%m%d%H}/{n}")),
            "occurred_at": (hour + timedelta(seconds=10 * n)).isoformat(),
            "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 900 + n,
            "output_tokens": 120, "feature": feature, "environment": "production",
            "team_id": "team-flat", "user_id": f"user-{n % 3}",
        })
        for n in range(count)
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


def window(start: datetime, end: datetime) -> str:
    return json.dumps({"start_hour": f"{start:%Y-%m-%d %H:%M:%S}",
                       "end_hour": f"{end:%Y-%m-%d %H:%M:%S}"})  # fmt: skip


def run(home: Path, start: datetime, end: datetime, first: bool = False) -> None:
    """What the pipeline's dbt does for the window (seeds and tests on the first run only)."""
    args = ("build", "--exclude", "resource_type:unit_test") if first else ("run",)
    dbt_build(home, *args, "--vars", window(start, end))


def differences(left: Path, right: Path, table: str, where: str = "true",
                columns: str = "*") -> tuple[int, int]:  # fmt: skip
    """Rows of marts.`table` (restricted by `where`, projected on `columns`) only in left and
    only in right, duplicates counted."""
    con = duckdb.connect()
    try:
        con.execute(f"attach '{left}' as l (read_only)")
        con.execute(f"attach '{right}' as r (read_only)")
        only = [
            con.execute(
                f"select count(*) from (select {columns} from {a}.marts.{table} where {where} "
                f"except all select {columns} from {b}.marts.{table} where {where})"
            ).fetchone()[0]
            for a, b in (("l", "r"), ("r", "l"))
        ]
        return only[0], only[1]
    finally:
        con.close()


def mart_tables(warehouse: Path) -> list[str]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' "
            "and table_type = 'BASE TABLE' order by 1"
        ).fetchall()
        return [name for (name,) in rows]
    finally:
        con.close()


def without_history(warehouse: Path, before: datetime, restore: bool) -> None:
    """Move the calls before `before` out of raw.llm_calls and marts.fct_llm_calls into
    scratch tables (or back)."""
    cut = f"timestamp '{before:%Y-%m-%d %H:%M:%S}'"
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("create schema if not exists scratch")
        for schema, table, hour in (("raw", "llm_calls", "date_trunc('hour', occurred_at)"),
                                    ("marts", "fct_llm_calls", "hour_at")):  # fmt: skip
            kept = f"scratch.{schema}_{table}"
            if restore:
                con.execute(f"insert into {schema}.{table} select * from {kept}")
                con.execute(f"drop table {kept}")
            else:
                con.execute(f"create table {kept} as select * from {schema}.{table} "
                            f"where {hour} < {cut}")  # fmt: skip
                con.execute(f"delete from {schema}.{table} where {hour} < {cut}")
        if restore:
            con.execute("drop schema scratch")
    finally:
        con.close()


@pytest.fixture(scope="module")
def landing(tmp_path_factory, dbt_manifest) -> Path:
    out = tmp_path_factory.mktemp("landing") / "calls"
    generate(out, START, DAYS, 4_000, 11, default_incidents(START, DAYS))
    # a feature whose only calls are inside an hourly window
    write_calls(out, FIRST + timedelta(hours=1), "launch-day", 40, "flat-launch")
    # a feature whose last calls leave the grid's week between two hourly runs: it has a
    # (silent) row at FIRST, none after
    for back in range(3):
        at = FIRST + timedelta(hours=1 - 168 - back)
        write_calls(out, at, "sunset", 25, f"flat-sunset-{back}")
    return out


def warehouse(home: Path, landing: Path) -> Path:
    path = home / "warehouse.duckdb"
    home.mkdir(parents=True, exist_ok=True)
    load_window(path, landing, START, END, now=END)
    return path


def test_hour_by_hour_builds_what_one_range_builds(tmp_path: Path, landing: Path) -> None:
    whole_home, hourly_home = tmp_path / "whole", tmp_path / "hourly"
    whole, hourly = warehouse(whole_home, landing), warehouse(hourly_home, landing)
    first_phase_end = LAST + timedelta(hours=1)
    day_start = LAST.replace(hour=0)

    run(whole_home, START, first_phase_end, first=True)
    run(hourly_home, START, FIRST, first=True)  # an empty table: the calls are read
    for hour in range(2):
        run(hourly_home, FIRST + timedelta(hours=hour), FIRST + timedelta(hours=hour + 1))
    # the last hour with no call before its day left: the series marts take their history
    # from their own rows (the daily marts re-aggregate the window's whole day, by design)
    without_history(hourly, day_start, restore=False)
    run(hourly_home, LAST, first_phase_end)
    without_history(hourly, day_start, restore=True)

    tables = mart_tables(whole)
    assert set(SERIES_MARTS) | {"anomalies", "fct_llm_calls", "agg_daily_team_cost"} <= set(tables)
    assert tables == mart_tables(hourly)
    for table in tables:
        assert differences(whole, hourly, table) == (0, 0), table

    # the cases the traffic was given for are really there
    con = duckdb.connect(str(hourly), read_only=True)
    try:
        features = con.execute(
            "select feature, hour_at, calls from marts.agg_hourly_feature_cost "
            "where feature in ('launch-day', 'sunset') and hour_at >= ? order by 1, 2",
            [FIRST.replace(tzinfo=None)],
        ).fetchall()
        gap = con.execute(
            "select hour_at, severity from marts.anomalies where detector = 'telemetry_gap' "
            "and feature = 'smart-reply' and hour_at >= ? order by 1",
            [FIRST.replace(tzinfo=None)],
        ).fetchall()
    finally:
        con.close()
    naive = [at.replace(tzinfo=None) for at in (FIRST, FIRST + timedelta(hours=1), LAST)]
    assert features == [("launch-day", naive[1], 40), ("launch-day", naive[2], 0),
                        ("sunset", naive[0], 0)]  # fmt: skip
    assert gap == [(naive[0], "warning"), (naive[1], "warning"), (naive[2], "critical")]

    # a late file reloads an older hour in both; the hourly warehouse rebuilds that hour and
    # goes on hour by hour, the other is rebuilt over the whole range
    write_calls(landing, LATE_HOUR, "code-review", 300, "flat-late")
    for path in (whole, hourly):
        load_window(path, landing, LATE_HOUR, LATE_HOUR + timedelta(hours=1), now=END)
    run(hourly_home, LATE_HOUR, LATE_HOUR + timedelta(hours=1))
    second_phase_end = first_phase_end + timedelta(hours=1)
    run(hourly_home, first_phase_end, second_phase_end)
    run(whole_home, START, second_phase_end)

    late, resumed = (
        f"timestamp '{LATE_HOUR:%Y-%m-%d %H:%M}'",
        f"timestamp '{first_phase_end:%Y-%m-%d %H:%M}'",
    )
    for table in tables:
        if table in SERIES_MARTS:
            # the hours up to the late one and those built after it: every column
            scored = f"hour_at <= {late} or hour_at >= {resumed}"
            assert differences(whole, hourly, table, scored) == (0, 0), table
            # the hours in between keep the scores they had, but their sums are history
            stale = f"hour_at > {late} and hour_at < {resumed}"
            keys = (
                "hour_at, feature, environment"
                if "feature" in table
                else "hour_at, provider, model, environment"
            )
            assert differences(whole, hourly, table, stale, f"{keys}, {ADDITIVE}") == (0, 0)
        elif table == "anomalies":
            # detectors of the hours after the late one read the stale scores
            assert differences(whole, hourly, table, f"hour_at <= {late}") == (0, 0)
        else:
            assert differences(whole, hourly, table) == (0, 0), table
