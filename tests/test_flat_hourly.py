"""An hourly run reads the window's calls and the marts' own history, never the calls of the
past, and builds exactly what one run over the whole range builds.

Two warehouses over the same landing files: `hourly` is built by one run up to a morning, then
hour by hour as the schedule builds it; `whole` by one dbt run over the range. Every table of
the `marts` schema must hold the same rows (EXCEPT ALL both ways, all columns). The traffic has
the cases that could tell the two apart: incidents (a telemetry gap inside the hourly runs), a
feature whose only calls are inside an hourly window, one whose last call leaves the grid's week
between two hourly runs. One hourly run is made with every call before its day taken out of
raw.llm_calls and marts.fct_llm_calls: it must still build the same rows, so the hourly run does
not read the calls of the history (only the daily marts read the window's day). A late file then
reloads an older hour: the hours after it that were built before keep what they had (here: they
lack its new series) and the next hour is scored with it, as one run over everything scores it.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from helpers import dbt_build

from orchestration.lib.ingest import load_window
from spendwatch.generator import default_incidents, generate
from spendwatch.landing import landing_file

START = datetime(2026, 10, 25, 4, tzinfo=UTC)
DAYS = 24
END = START + timedelta(days=DAYS)  # 2026-11-18 04:00 (the incidents are placed from the end)
# Shorter baselines than the defaults, so that the hourly runs read less than all history and
# the stages of the series marts cut their rows (hourly_stage_lookbacks: 468 hours of sums read,
# centres over the last 300): what they leave out must not change a score.
BASELINE_VARS = {
    "baseline_weeks": 1, "min_hour_of_week_points": 1, "baseline_days": 3,
    "trailing_hours": 48, "min_trailing_points": 12, "spread_hours": 48, "spread_lag_hours": 6,
    "level_hours": {"hour_of_week": 12, "hour_of_day": 24}, "min_spread_points": 12,
}  # fmt: skip
# the hours built one by one: smart-reply's telemetry gap (warning, warning, critical)
FIRST = datetime(2026, 11, 16, 11, tzinfo=UTC)
LAST = FIRST + timedelta(hours=2)  # built without the calls before its day
LATE_HOUR = FIRST - timedelta(hours=30)  # the hour a late file reloads
SERIES_MARTS = ("agg_hourly_feature_cost", "agg_hourly_model_cost")
LATE_MODEL = "flat-test-model"  # priced by nothing, used by nothing else


def write_calls(
    landing: Path, hour: datetime, feature: str, count: int, writer: str, model: str = "gpt-4o-mini"
) -> None:
    """`count` calls of `feature` in `hour`, in a landing file of their own."""
    path = landing_file(landing, hour, writer)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{writer}/{hour:%Y%m%d%H}/{n}")),
            "occurred_at": (hour + timedelta(seconds=10 * n)).isoformat(),
            "provider": "openai", "model": model, "input_tokens": 900 + n,
            "output_tokens": 120, "feature": feature, "environment": "production",
            "team_id": f"team-{feature}", "user_id": f"user-{n % 3}",
        })
        for n in range(count)
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


def window(start: datetime, end: datetime) -> str:
    return json.dumps({"start_hour": f"{start:%Y-%m-%d %H:%M:%S}",
                       "end_hour": f"{end:%Y-%m-%d %H:%M:%S}", **BASELINE_VARS})  # fmt: skip


def run(home: Path, start: datetime, end: datetime, first: bool = False) -> None:
    """What the pipeline's dbt does for the window (and the seeds on the first run)."""
    args = (
        ("build", "--exclude", "resource_type:test", "resource_type:unit_test")
        if first
        else ("run",)
    )
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


def warehouse(home: Path, landing: Path) -> Path:
    path = home / "warehouse.duckdb"
    home.mkdir(parents=True, exist_ok=True)
    load_window(path, landing, START, END, now=END)
    return path


def test_hour_by_hour_builds_what_one_range_builds(tmp_path: Path, dbt_manifest: Path) -> None:
    landing = tmp_path / "landing" / "calls"
    generate(landing, START, DAYS, 4_000, 11, default_incidents(START, DAYS))
    # a feature whose only calls are inside an hourly window
    write_calls(landing, FIRST + timedelta(hours=1), "launch-day", 40, "flat-launch")
    # a feature whose last calls leave the grid's week between two hourly runs: it has a
    # (silent) row at FIRST, none after
    for back in range(3):
        at = FIRST + timedelta(hours=1 - 168 - back)
        write_calls(landing, at, "sunset", 25, f"flat-sunset-{back}")

    hourly_home = tmp_path / "hourly"
    hourly = warehouse(hourly_home, landing)
    run(hourly_home, START, FIRST + timedelta(hours=1), first=True)  # no table: reads calls
    run(hourly_home, FIRST + timedelta(hours=1), LAST)
    # the next hour with no call before its day left: the series marts take their history from
    # their own rows (the daily marts re-aggregate the window's whole day, by design)
    day_start = LAST.replace(hour=0)
    without_history(hourly, day_start, restore=False)
    run(hourly_home, LAST, LAST + timedelta(hours=1))
    without_history(hourly, day_start, restore=True)
    # a late file reloads an older hour (a series of its own: new feature, new model); the
    # pipeline rebuilds that hour, then goes on with the next
    write_calls(landing, LATE_HOUR, "late-feature", 60, "flat-late", model=LATE_MODEL)
    load_window(hourly, landing, LATE_HOUR, LATE_HOUR + timedelta(hours=1), now=END)
    run(hourly_home, LATE_HOUR, LATE_HOUR + timedelta(hours=1))
    run(hourly_home, LAST + timedelta(hours=1), LAST + timedelta(hours=2))

    # the same files, late one included, built by one run over the range
    whole_home = tmp_path / "whole"
    whole = warehouse(whole_home, landing)
    run(whole_home, START, LAST + timedelta(hours=2), first=True)

    tables = mart_tables(whole)
    assert set(SERIES_MARTS) | {"anomalies", "fct_llm_calls", "agg_daily_user_cost"} <= set(tables)
    assert tables == mart_tables(hourly)
    # the hours between the late hour and the next one built were built before the late file
    # came: they lack its series (and would keep older scores for a series it added to);
    # everything else is the same, row for row
    between = f"hour_at > {sql_hour(LATE_HOUR)} and hour_at <= {sql_hour(LAST)}"
    late_rows = {
        "agg_hourly_feature_cost": f"feature = 'late-feature' and {between}",
        "agg_hourly_model_cost": f"model = '{LATE_MODEL}' and {between}",
    }
    # the cost drivers read the feature mart's rows: the late feature's between them too
    late_drivers = f"feature = 'late-feature' and {between}"
    skipped = {**late_rows, "agg_hourly_feature_cost_drivers": late_drivers}
    for table in tables:
        where = f"not ({skipped[table]})" if table in skipped else "true"
        assert differences(whole, hourly, table, where) == (0, 0), table
    assert count(hourly, "agg_hourly_feature_cost_drivers", late_drivers) == 0
    assert count(whole, "agg_hourly_feature_cost_drivers", late_drivers) > 0
    for table, rows in late_rows.items():
        assert count(whole, table, rows) == (LAST - LATE_HOUR).total_seconds() // 3600
        assert count(hourly, table, rows) == 0
        later = f"hour_at > {sql_hour(LAST)} and not ({between}) and " + rows.split(" and ")[0]
        assert count(hourly, table, later) == 1  # the next hour is scored with the late calls

    # the cases the traffic was given for are really there
    con = duckdb.connect(str(hourly), read_only=True)
    try:
        features = con.execute(
            "select feature, hour_at, calls from marts.agg_hourly_feature_cost "
            "where feature in ('launch-day', 'sunset') and hour_at >= ? and hour_at <= ? "
            "order by 1, 2",
            [FIRST.replace(tzinfo=None), LAST.replace(tzinfo=None)],
        ).fetchall()
        gap = con.execute(
            "select hour_at, severity from marts.anomalies where detector = 'telemetry_gap' "
            "and feature = 'smart-reply' and hour_at >= ? and hour_at <= ? order by 1",
            [FIRST.replace(tzinfo=None), LAST.replace(tzinfo=None)],
        ).fetchall()
    finally:
        con.close()
    naive = [at.replace(tzinfo=None) for at in (FIRST, FIRST + timedelta(hours=1), LAST)]
    assert features == [("launch-day", naive[1], 40), ("launch-day", naive[2], 0),
                        ("sunset", naive[0], 0)]  # fmt: skip
    assert gap == [(naive[0], "warning"), (naive[1], "warning"), (naive[2], "critical")]


def sql_hour(at: datetime) -> str:
    return f"timestamp '{at:%Y-%m-%d %H:%M}'"


def count(warehouse: Path, table: str, where: str) -> int:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(f"select count(*) from marts.{table} where {where}").fetchone()[0]
    finally:
        con.close()
