"""The `make bench` harness at its tiny size: every row of the table measured, and the floor
honest — its hourly aggregate is the warehouse's marts.agg_hourly_feature_cost (calls, and cost
to the micro-dollar), and the pandas peer computes the same numbers as the floor.

Four real `spendwatch materialize` runs (full build, second home, an incremental hour on each):
a few minutes on two busy cores.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from benchmarks import scale

ROWS = [
    "generate", "ingest,", "floor: DuckDB read_json", "ingest / read_json rate", "full build:",
    "floor: one DuckDB script", "peer: pandas by hand", "full build / floor",
    "pandas / full build", "build of the second home", "incremental hour, 2 h",
    "incremental hour, 6 h", "incremental 6 h / 2 h", "peak RSS of spendwatch's steps",
    "warehouse file", "Dagster instance folder", "floor = warehouse",
]  # fmt: skip


def _number(text: str) -> float:
    match = re.search(r"[\d,]+(\.\d+)?", text)
    assert match, f"no number in {text!r}"
    return float(match.group().replace(",", ""))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> scale.Results:
    return scale.run(scale.SIZES["tiny"], work_root=tmp_path_factory.mktemp("bench"), keep=True)


def test_every_row_is_measured_with_positive_numbers(tiny: scale.Results):
    for step in ("read_json", "ingest", "floor", "pandas", "build_full", "build_short",
                 "incremental_short", "incremental_full"):  # fmt: skip
        runs = tiny.steps[step]
        assert runs and all(m.seconds > 0 and m.peak_rss > 0 for m in runs), step
    rows = scale.rows(tiny)
    expected = [next((r.measure for r in rows if r.measure.startswith(n)), n) for n in ROWS]
    assert [r.measure for r in rows] == expected
    for row in rows:
        assert _number(row.value) > 0, row
        assert not row.rss or _number(row.rss) > 0, row
        assert (row.met is None) == (row.target == ""), row
    # what was generated is what every step read
    landing = tiny.work / "home-full" / "landing" / "calls"
    con = duckdb.connect()
    lines, series = con.execute(
        "select count(*), count(distinct (date_trunc('hour', occurred_at), feature, environment))"
        " from read_json($glob, format = 'newline_delimited') where occurred_at < $end",
        {"glob": str(landing / "*" / "*" / "*.jsonl"), "end": tiny.plan.end},
    ).fetchone()
    con.close()
    assert lines == tiny.calls >= 1_000  # 20k calls a quarter-day, fewer at night
    for step in ("floor", "pandas"):
        assert tiny.steps[step][0].result["calls"] == lines
        assert tiny.steps[step][0].result["rows"] == series
    assert tiny.steps["ingest"][0].result["loaded"] == lines
    assert tiny.warehouse_bytes > 0 and tiny.dagster_bytes > 0


def test_the_floor_computes_what_the_warehouse_does(tiny: scale.Results):
    a = tiny.agreement
    assert a["rows"] == a["warehouse_rows"] > 0
    assert a["mismatched_warehouse"] == 0 and a["mismatched_pandas"] == 0
    con = duckdb.connect(str(tiny.compare_db), read_only=True)
    con.execute("attach ? as warehouse (read_only)", [str(tiny.warehouse)])
    floor_cost, mart_cost, mart_calls = con.execute(
        "select (select sum(cost_usd) from floor_hourly), sum(cost_usd), sum(calls) "
        "from warehouse.marts.agg_hourly_feature_cost where hour_at < ?",
        [tiny.plan.end.replace(tzinfo=None)],
    ).fetchone()
    con.close()
    assert mart_calls == tiny.calls and float(mart_cost) > 1  # real money, not an empty match
    assert abs(floor_cost - float(mart_cost)) < 1e-6 * a["rows"]


def test_the_comparison_sees_a_micro_dollar(tiny: scale.Results, tmp_path: Path):
    """The agreement check can fail: one hour's cost off by 2 µ$ in the floor, or one trailing
    stddev off in pandas, is counted."""
    copy = tmp_path / "compare.duckdb"
    copy.write_bytes(tiny.compare_db.read_bytes())
    con = duckdb.connect(str(copy))
    con.execute(  # the dearest series of the first hour; pandas is changed in the last hour
        "update floor_hourly set cost_usd = cost_usd + 0.000002 "
        "where (hour_at, feature, environment) = (select (hour_at, feature, environment) "
        "from floor_hourly where hour_at = (select min(hour_at) from floor_hourly) "
        "order by cost_usd desc limit 1)"
    )
    con.execute(
        "update pandas_hourly set cost_usd_stddev = cost_usd_stddev * 1.001 "
        "where hour_at = (select max(hour_at) from pandas_hourly where cost_usd_stddev > 0)"
        " and cost_usd_stddev > 0"
    )
    changed = con.execute(
        "select count(*) from pandas_hourly where hour_at = (select max(hour_at) "
        "from pandas_hourly where cost_usd_stddev > 0) and cost_usd_stddev > 0"
    ).fetchone()[0]
    con.close()
    a = scale.agreement(tiny.warehouse, copy, tiny.plan.start, tiny.plan.end)
    assert a["mismatched_warehouse"] == 1
    assert a["mismatched_pandas"] == 1 + changed  # the floor's changed row, and pandas' rows


def test_the_table_replaces_its_section_of_the_page(tiny: scale.Results, tmp_path: Path):
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nintro kept\n")
    scale.write_docs(tiny, page)
    scale.write_docs(tiny, page)
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nintro kept\n")
    assert text.count(scale.BEGIN) == 1 and text.count(scale.END) == 1
    assert "| full build / floor |" in text and "cores" in text and "DuckDB 2" in text
    page.write_text(text.replace(scale.END, scale.END + "\n\nafter kept\n"))
    scale.write_docs(tiny, page)
    assert page.read_text().split(scale.END, 1)[1].strip() == "after kept"
