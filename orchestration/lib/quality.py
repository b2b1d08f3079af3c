"""Telemetry completeness with Great Expectations: run the suites of `expectations/`, record
every outcome in `ops.check_results`, and hand Dagster an asset-check result.

Suites are JSON files (one per checked frame), loaded into GX 1.x `ExpectationSuite`s and run in
an ephemeral context on pandas frames built from the warehouse for the run's hour window:

| suite | frame: one row per hour of the window | asset checked |
|---|---|---|
| raw_load_hours | files, rejected share, freshness, volume against the usual | raw_llm_calls |
| fct_llm_calls | priced share, from the hourly model mart | marts/fct_llm_calls |

Only what the ingest cannot know is checked here: the rules of a single line (required fields,
types, non-negative and consistent tokens, unique ids) are the ingest's, which quarantines a
line that breaks them, so they cannot fail on raw.llm_calls.

Each expectation's severity (GX's own field) is its level: `critical` = **error** (a failure
becomes a `data_quality` row of marts.anomalies through `int_anomalies__data_quality`), `warning` =
**warn** (shown on the asset check and recorded, not alerted). Outcomes are recorded per
expectation and per hour (the failing rows' hours), so an alert names the hour that is wrong.

Both engines: the frames, `record` and the recorded outcome take a DuckDB connection or a
SparkSession (the Spark target, `SPENDWATCH_TARGET=spark`) and run the same SQL; the
`*_spark` functions at the end are the entry points `orchestration.lib.spark.run_in_spark`
calls. docs/architecture.md, "Data quality", says why Spark rewrites ops.check_results whole.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path

import pandas as pd

from orchestration.lib.ingest import partition_hours
from orchestration.lib.quality_ddl import (
    CHECK_RESULTS_COLUMNS,
    CHECK_RESULTS_DDL,
    CHECK_RESULTS_SPARK_DDL,
)
from spendwatch.warehouse import open_warehouse

SUITES_DIR = Path(__file__).resolve().parents[2] / "expectations"
ERROR, WARN = "error", "warn"
SAMPLE_SIZE = 5


@dataclass
class ExpectationOutcome:
    check_name: str
    severity: str
    passed: bool
    unexpected_count: int | None
    element_count: int | None
    observed_value: str | None
    sample: list
    failing_hours: list[datetime] = field(default_factory=list)
    values_by_hour: dict[datetime, list] = field(default_factory=dict)


@dataclass
class SuiteOutcome:
    suite: str
    asset: str
    outcomes: list[ExpectationOutcome]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes if o.severity == ERROR)

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.passed]

    def metadata(self) -> dict:
        return {
            "suite": self.suite,
            "expectations": len(self.outcomes),
            "failed_error_level": sum(1 for o in self.failed if o.severity == ERROR),
            "failed_warn_level": sum(1 for o in self.failed if o.severity == WARN),
            "failures": [
                {
                    "check": o.check_name,
                    "severity": o.severity,
                    "unexpected_count": o.unexpected_count,
                    "element_count": o.element_count,
                    "observed_value": o.observed_value,
                    "failing_hours": [f"{h:%Y-%m-%d %H:00}" for h in o.failing_hours[:24]],
                    "sample": [_plain(v) for v in o.sample[:SAMPLE_SIZE]],
                }
                for o in self.failed
            ],
        }


def _plain(value):
    if isinstance(value, float) and value != value:  # NaN (a pandas null) is not JSON
        return None
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return _plain(value.item())
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


@cache
def _context():
    import great_expectations as gx

    for name in ("great_expectations", "great_expectations.core", "py.warnings"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    return context


def load_suite(name: str):
    import great_expectations as gx

    spec = json.loads((SUITES_DIR / f"{name}.json").read_text())
    return gx.ExpectationSuite(name=spec["name"], expectations=spec["expectations"],
                               meta=spec.get("meta", {}))  # fmt: skip


def _check_name(config) -> str:
    kwargs = config.kwargs
    columns = [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs]
    return (config.meta or {}).get("check") or ".".join([config.type, *columns])


def validate(suite_name: str, asset: str, frame: pd.DataFrame, hour_column: str) -> SuiteOutcome:
    """Run one suite over a frame; map failing rows back to the hours they belong to."""
    suite = load_suite(suite_name)
    context = _context()
    source = context.data_sources.add_or_update_pandas(f"spendwatch_{suite_name}")
    data_asset = source.add_dataframe_asset(name=f"{suite_name}_frame")
    batch_definition = data_asset.add_batch_definition_whole_dataframe("window")
    frame = frame.reset_index(drop=True)
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(
        suite,
        result_format={
            "result_format": "COMPLETE",
            "unexpected_index_column_names": [],
            "partial_unexpected_count": SAMPLE_SIZE,
        },
    )
    outcomes = []
    hours = frame.get(hour_column)
    for r in result.results:
        config = r.expectation_config
        res = r.result or {}
        indices = res.get("unexpected_index_list") or []
        values = res.get("unexpected_list") or []
        failing, by_hour = [], {}
        if not r.success and hours is not None and len(frame):
            rows = [i if isinstance(i, int) else next(iter(i.values()), None) for i in indices]
            for row, value in zip(rows, values, strict=False):
                if isinstance(row, int):
                    hour = pd.Timestamp(hours.iloc[row]).to_pydatetime()
                    by_hour.setdefault(hour, []).append(_plain(value))
            # an aggregate expectation (no failing rows) is about every hour of the window
            failing = sorted(by_hour) or sorted(pd.Timestamp(h).to_pydatetime() for h in set(hours))
        observed = res.get("observed_value")
        outcomes.append(
            ExpectationOutcome(
                check_name=_check_name(config),
                severity=ERROR if str(config.severity.value) == "critical" else WARN,
                passed=bool(r.success),
                unexpected_count=res.get("unexpected_count"),
                element_count=res.get("element_count"),
                observed_value=None if observed is None else str(_plain(observed)),
                sample=list(res.get("partial_unexpected_list") or []),
                failing_hours=failing,
                values_by_hour=by_hour,
            )
        )
    return SuiteOutcome(suite_name, asset, outcomes)


USUAL_WEEKS = 4  # loaded_vs_usual: the median of the same hour of week over these weeks
FRESHNESS_LOOKBACK_HOURS = 24


# --- one SQL text, two engines --------------------------------------------------------------
# The frames and ops.check_results are read and written with the same SQL on DuckDB and on
# Spark. Parameters are written `$name` (DuckDB's marker; Spark's `:name` is substituted) and
# bound as text that the SQL casts, so no value is ever spliced into the text. The few spellings
# the engines do not share are the methods of `_Engine`. Timestamps cross between Python and
# Spark as text or through toPandas (which honours the session time zone, UTC): PySpark's
# createDataFrame/collect would read naive datetimes in the Python process's local zone.


@dataclass(frozen=True)
class _Engine:
    name: str  # "duckdb" | "spark"
    handle: object  # a DuckDB connection or a SparkSession

    @property
    def spark(self) -> bool:
        return self.name == "spark"

    def _text(self, sql: str) -> str:
        return re.sub(r"\$(\w+)", r":\1", sql) if self.spark else sql

    def frame(self, sql: str, params: dict[str, str]) -> pd.DataFrame:
        if not self.spark:
            return self.handle.execute(sql, params).df()
        return self._spark_frame(sql, params)[0]

    def _spark_frame(self, sql: str, params: dict[str, str]) -> tuple[pd.DataFrame, set[str]]:
        """The result as pandas, and its integer columns (which pandas makes float when they
        hold a null)."""
        result = self.handle.sql(self._text(sql), args=params)
        integers = {
            f.name
            for f in result.schema.fields
            if f.dataType.typeName() in ("byte", "short", "integer", "long")
        }
        with warnings.catch_warnings():  # without pyarrow, toPandas says so on every call
            warnings.filterwarnings("ignore", message="toPandas attempted Arrow optimization")
            return result.toPandas(), integers

    def rows(self, sql: str, params: dict[str, str]) -> list[tuple]:
        """The result as tuples of Python values, as DuckDB's fetchall gives them."""
        if not self.spark:
            return self.handle.execute(sql, params).fetchall()
        frame, integers = self._spark_frame(sql, params)
        convert = [int if name in integers else _plain for name in frame.columns]
        frame = frame.astype(object).where(frame.notna(), None)
        return [
            tuple(
                None if v is None
                else v.to_pydatetime() if isinstance(v, pd.Timestamp)
                else to(v)
                for to, v in zip(convert, row, strict=True)
            )
            for row in frame.itertuples(index=False)
        ]  # fmt: skip

    def hour_series(self, first: str, last: str) -> str:
        """Every hour from `first` to `last`, both included, as a set-returning expression."""
        if self.spark:
            return f"explode(sequence({first}, {last}, interval 1 hour))"
        return f"unnest(generate_series({first}, {last}, interval 1 hour))"

    def diff(self, unit: str, earlier: str, later: str) -> str:
        """Whole `unit`s from `earlier` to `later` (both on a `unit` boundary where it matters:
        DuckDB counts boundaries crossed, Spark whole units elapsed)."""
        if self.spark:
            return f"timestampdiff({unit.upper()}, {earlier}, {later})"
        return f"date_diff('{unit}', {earlier}, {later})"

    def ordered_concat(self, value: str, separator: str, order_by: str) -> str:
        if self.spark:
            return f"string_agg({value}, {separator}) within group (order by {order_by})"
        return f"string_agg({value}, {separator} order by {order_by})"


def _engine(con) -> _Engine:
    """The engine of `con`: a SparkSession, else a DuckDB connection."""
    is_spark = type(con).__module__.startswith("pyspark")
    return _Engine("spark" if is_spark else "duckdb", con)


def _ts(value: datetime) -> str:
    """A window bound as the SQL binds it: UTC wall time as text."""
    return f"{value.replace(tzinfo=None):%Y-%m-%d %H:%M:%S}"


def _time(value: datetime | str) -> datetime:
    """A datetime, or the ISO text run_in_spark hands over for one."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def hours_frame(con, start: datetime, end: datetime) -> pd.DataFrame:
    """One row per hour of the window: landing files, lines, loaded and rejected (load log),
    the files quarantined as unreadable (broken_files: raw.load_log.file_error) and the files
    loaded before whose hour's landing files are gone (missing_files: rows kept),
    the rejected share, the minutes from the newest event landed by the hour's end to that end
    (lag_minutes), and the loaded lines against the median of the same hour of the week over
    the previous USUAL_WEEKS weeks (loaded_vs_usual; null with fewer than two such hours).
    `con` is a DuckDB connection or a SparkSession (the raw tables of either engine)."""
    e = _engine(con)
    start_at, end_at = "cast($start as timestamp)", "cast($end as timestamp)"
    lag_minutes = e.diff(
        "minute", "date_trunc('minute', fresh.newest_at)", "hours.partition_hour + interval 1 hour"
    )
    return e.frame(
        f"""
        with hours as (
            select partition_hour
            from (select {e.hour_series(start_at, end_at)} as partition_hour) as series
            where partition_hour < {end_at}
        ),
        logged as (
            select partition_hour, count(*) as files, cast(sum(lines) as bigint) as lines,
                cast(sum(loaded) as bigint) as loaded, cast(sum(rejected) as bigint) as rejected,
                count(*) filter (where file_error is not null
                    and file_error <> 'landing_files_missing') as broken_files,
                count(*) filter (where file_error = 'landing_files_missing') as missing_files
            from raw.load_log
            where partition_hour >= {start_at} - interval {USUAL_WEEKS * 7} day
                and partition_hour < {end_at}
            group by partition_hour
        ),
        newest as (
            select partition_hour, max(occurred_at) as newest_at
            from raw.llm_calls
            where partition_hour >= {start_at} - interval {FRESHNESS_LOOKBACK_HOURS} hour
                and partition_hour < {end_at}
            group by partition_hour
        ),
        usual as (
            select hours.partition_hour, median(logged.loaded) as usual_loaded,
                count(*) as usual_points
            from hours
            inner join logged
                on logged.partition_hour < hours.partition_hour
                and logged.partition_hour >= hours.partition_hour - interval {USUAL_WEEKS * 7} day
                and {e.diff("hour", "logged.partition_hour", "hours.partition_hour")} % 168 = 0
            group by hours.partition_hour
        ),
        fresh as (
            select hours.partition_hour,
                max(least(newest.newest_at, hours.partition_hour + interval 1 hour)) as newest_at
            from hours
            inner join newest on newest.partition_hour <= hours.partition_hour
            group by hours.partition_hour
        )
        select
            hours.partition_hour,
            coalesce(logged.files, 0) as files,
            coalesce(logged.lines, 0) as lines,
            coalesce(logged.loaded, 0) as loaded,
            coalesce(logged.rejected, 0) as rejected,
            coalesce(logged.broken_files, 0) as broken_files,
            coalesce(logged.missing_files, 0) as missing_files,
            coalesce(logged.rejected / nullif(logged.lines, 0), 0.0) as rejected_share,
            {lag_minutes} as lag_minutes,
            case when usual.usual_points >= 2 and usual.usual_loaded > 0
                then coalesce(logged.loaded, 0) / usual.usual_loaded end as loaded_vs_usual
        from hours
        left join logged using (partition_hour)
        left join usual using (partition_hour)
        left join fresh using (partition_hour)
        order by partition_hour
        """,
        {"start": _ts(start), "end": _ts(end)},
    )


def priced_frame(con, start: datetime, end: datetime) -> pd.DataFrame:
    """One row per hour of the window with calls: the priced share as the hourly model mart
    counts it (priced_calls / calls) and the models it could not price."""
    e = _engine(con)
    unpriced = "case when unpriced_calls > 0 then provider || '/' || model end"
    return e.frame(
        f"""
        select hour_at, cast(sum(calls) as bigint) as calls,
            cast(sum(priced_calls) as double) / nullif(sum(calls), 0) as priced_share,
            {e.ordered_concat(unpriced, "', '", "model")} as unpriced_models
        from marts.agg_hourly_model_cost
        where hour_at >= cast($start as timestamp) and hour_at < cast($end as timestamp)
        group by hour_at having sum(calls) > 0 order by hour_at
        """,
        {"start": _ts(start), "end": _ts(end)},
    )


#: a suite's rows of one window in ops.check_results (what `record` replaces)
_WINDOW = (
    "suite = $suite and partition_hour >= cast($start as timestamp) "
    "and partition_hour < cast($end as timestamp)"
)


def _check_rows(outcome: SuiteOutcome, start: datetime, end: datetime, now: datetime) -> list:
    """ops.check_results rows of a suite's outcome: one per check and hour of the window."""
    window = [h.replace(tzinfo=None) for h in partition_hours(start, end)]
    rows = []
    for o in outcome.outcomes:
        failing = set(o.failing_hours)
        details = json.dumps({"sample": [_plain(v) for v in o.sample[:SAMPLE_SIZE]]})
        for hour in window:
            passed = o.passed or hour not in failing
            observed = o.observed_value
            if not passed and o.values_by_hour.get(hour):
                observed = ", ".join(str(v) for v in o.values_by_hour[hour][:SAMPLE_SIZE])
            rows.append({
                "asset": outcome.asset, "suite": outcome.suite, "check_name": o.check_name,
                "severity": o.severity, "partition_hour": hour, "passed": passed,
                "unexpected_count": None if passed else _plain(o.unexpected_count),
                "element_count": _plain(o.element_count), "observed_value": observed,
                "details": None if passed else details, "checked_at": now.replace(tzinfo=None),
            })  # fmt: skip
    return rows


def record(con, outcome: SuiteOutcome, start: datetime, end: datetime, now: datetime) -> None:
    """Replace the window's rows of this suite in ops.check_results (one per check and hour).

    DuckDB deletes them and inserts the new ones in one transaction. Spark has no DELETE on a
    Parquet table: the table is rewritten whole, as its rows outside the window plus the new
    ones (`insertInto(..., overwrite=True)` of the unpartitioned table). It stays small (checks
    × hours: about 60,000 rows a year for both suites), so one file rewritten per run is cheaper
    than partitioning it by suite and hour, which would add a metastore partition and a
    one-row file per suite and hour (17,000 a year) and slow every read of the dbt source.
    On Delta (Databricks) the same replacement is one `replaceWhere` or MERGE."""
    rows = _check_rows(outcome, start, end, now)
    params = {"suite": outcome.suite, "start": _ts(start), "end": _ts(end)}
    e = _engine(con)
    if e.spark:
        _record_spark(e, rows, params)
        return
    con.execute(CHECK_RESULTS_DDL)
    con.execute("begin transaction")
    con.execute(f"delete from ops.check_results where {_WINDOW}", params)
    if rows:
        con.register("check_rows", pd.DataFrame(rows))
        con.execute(
            f"insert into ops.check_results select {', '.join(CHECK_RESULTS_COLUMNS)} "
            "from check_rows"
        )
        con.unregister("check_rows")
    con.execute("commit")


def _record_spark(e: _Engine, rows: list[dict], params: dict[str, str]) -> None:
    spark = e.handle
    for statement in CHECK_RESULTS_SPARK_DDL:
        spark.sql(statement)
    columns = list(CHECK_RESULTS_COLUMNS)
    timestamps = [c for c, t in CHECK_RESULTS_COLUMNS.items() if t.startswith("timestamp")]
    schema = ", ".join(
        f"{c} {'string' if c in timestamps else t.split()[0].replace('varchar', 'string')}"
        for c, t in CHECK_RESULTS_COLUMNS.items()
    )
    new = spark.createDataFrame(
        [tuple(_ts(r[c]) if c in timestamps else r[c] for c in columns) for r in rows],
        schema=schema,
    ).selectExpr(*(f"cast({c} as timestamp) as {c}" if c in timestamps else c for c in columns))
    kept = spark.sql(e._text(f"select * from ops.check_results where not ({_WINDOW})"),
                     args=params)  # fmt: skip
    # materialized before the overwrite: the overwrite empties the files `kept` reads
    combined = kept.unionByName(new).select(*columns).localCheckpoint(eager=True)
    combined.coalesce(1).write.insertInto("ops.check_results", overwrite=True)


def _run_raw_suites(con, start: datetime, end: datetime, now: datetime) -> list[SuiteOutcome]:
    outcomes = [
        validate("raw_load_hours", "raw_llm_calls", hours_frame(con, start, end),
                 "partition_hour"),
    ]  # fmt: skip
    for outcome in outcomes:
        record(con, outcome, start, end, now)
    return outcomes


def _run_fct_suite(con, start: datetime, end: datetime, now: datetime) -> SuiteOutcome:
    outcome = validate(
        "fct_llm_calls", "marts/fct_llm_calls", priced_frame(con, start, end), "hour_at"
    )
    record(con, outcome, start, end, now)
    return outcome


def run_raw_suites(
    warehouse: Path, start: datetime, end: datetime, now: datetime
) -> list[SuiteOutcome]:
    con = open_warehouse(warehouse)
    try:
        return _run_raw_suites(con, start, end, now)
    finally:
        con.close()


def run_fct_suite(warehouse: Path, start: datetime, end: datetime, now: datetime) -> SuiteOutcome:
    con = open_warehouse(warehouse)
    try:
        return _run_fct_suite(con, start, end, now)
    finally:
        con.close()


def _recorded(con, suite: str, start: datetime, end: datetime) -> SuiteOutcome:
    rows = _engine(con).rows(
        f"""
        select asset, check_name, severity, partition_hour, passed, unexpected_count,
            element_count, observed_value, details
        from ops.check_results
        where {_WINDOW}
        order by check_name, partition_hour
        """,
        {"suite": suite, "start": _ts(start), "end": _ts(end)},
    )
    if not rows:
        raise LookupError(
            f"no outcome of suite {suite} recorded in ops.check_results for "
            f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M}: did the ops/check_results step run?"
        )
    by_check: dict[str, ExpectationOutcome] = {}
    for _asset, name, severity, hour, passed, unexpected, elements, observed, details in rows:
        o = by_check.setdefault(
            name, ExpectationOutcome(name, severity, True, None, elements, None, [])
        )
        if not passed:
            o.passed = False
            # record() stores the suite's count on each failing hour: the largest is the count
            o.unexpected_count = max(o.unexpected_count or 0, unexpected or 0)
            o.observed_value = o.observed_value or observed
            o.failing_hours.append(hour)
            if not o.sample and details:
                o.sample = json.loads(details).get("sample", [])
    return SuiteOutcome(suite, rows[0][0], list(by_check.values()))


def recorded_outcome(warehouse: Path, suite: str, start: datetime, end: datetime) -> SuiteOutcome:
    """A suite's outcome for the window as `record` stored it in ops.check_results (one
    expectation per check, failing where any hour failed): what a Dagster check shows of a suite
    that another step ran."""
    con = open_warehouse(warehouse, read_only=True)
    try:
        return _recorded(con, suite, start, end)
    finally:
        con.close()


# --- the Spark target: entry points for orchestration.lib.spark.run_in_spark -----------------
# Called as f(spark, home, **kwargs) in a process of their own; times arrive as ISO text and
# the outcomes go back as JSON (outcome_to_dict), which outcome_from_dict turns into the
# SuiteOutcome the Dagster checks take.


def outcome_to_dict(outcome: SuiteOutcome) -> dict:
    """A SuiteOutcome as plain JSON (hours as ISO text)."""
    return {
        "suite": outcome.suite,
        "asset": outcome.asset,
        "outcomes": [
            {
                "check_name": o.check_name,
                "severity": o.severity,
                "passed": o.passed,
                "unexpected_count": _plain(o.unexpected_count),
                "element_count": _plain(o.element_count),
                "observed_value": o.observed_value,
                "sample": [_plain(v) for v in o.sample],
                "failing_hours": [h.isoformat() for h in o.failing_hours],
                "values_by_hour": {
                    h.isoformat(): [_plain(v) for v in vs] for h, vs in o.values_by_hour.items()
                },
            }
            for o in outcome.outcomes
        ],
    }


def outcome_from_dict(data: dict) -> SuiteOutcome:
    """The SuiteOutcome that outcome_to_dict wrote."""
    return SuiteOutcome(
        data["suite"],
        data["asset"],
        [
            ExpectationOutcome(
                check_name=o["check_name"],
                severity=o["severity"],
                passed=o["passed"],
                unexpected_count=o["unexpected_count"],
                element_count=o["element_count"],
                observed_value=o["observed_value"],
                sample=list(o["sample"]),
                failing_hours=[datetime.fromisoformat(h) for h in o["failing_hours"]],
                values_by_hour={
                    datetime.fromisoformat(h): list(vs) for h, vs in o["values_by_hour"].items()
                },
            )
            for o in data["outcomes"]
        ],
    )


def run_raw_suites_spark(spark, home: Path, start: str, end: str, now: str) -> list[dict]:
    """run_raw_suites on the Spark target: the raw tables and ops.check_results of Spark."""
    outcomes = _run_raw_suites(spark, _time(start), _time(end), _time(now))
    return [outcome_to_dict(o) for o in outcomes]


def run_fct_suite_spark(spark, home: Path, start: str, end: str, now: str) -> dict:
    """run_fct_suite on the Spark target (marts.agg_hourly_model_cost as dbt built it there)."""
    return outcome_to_dict(_run_fct_suite(spark, _time(start), _time(end), _time(now)))


def recorded_outcome_spark(spark, home: Path, suite: str, start: str, end: str) -> dict:
    """recorded_outcome on the Spark target (creates an empty ops.check_results if missing, so
    a check that runs first finds no outcome rather than no table)."""
    for statement in CHECK_RESULTS_SPARK_DDL:
        spark.sql(statement)
    return outcome_to_dict(_recorded(spark, suite, _time(start), _time(end)))
