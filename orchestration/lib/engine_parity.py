"""Do DuckDB and Spark build the same warehouse? The same summary queries run on both engines'
tables, and `compare` lists every difference: what `make test-spark` checks.

A summary holds, per engine:
- `counts`: the rows of every raw, ops and marts table;
- `rejected`: every rejected line as (file under the landing folder, line number, reason);
- `cost`: per hour × feature × model of marts.fct_llm_calls, the calls, the token sums and the
  cost (exact decimal text), and the same figures from marts.agg_hourly_feature_model_cost;
- `anomalies`: every row of marts.anomalies as (anomaly_id, incident_key, detector, severity,
  hour, feature, model, environment, top_driver);
- `drivers`: every row of marts.agg_hourly_feature_cost_drivers, its top driver and its change
  and effects to the cent.
The queries are written once, in SQL both engines accept.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

#: The tables compared by row count: every table the pipeline writes on both engines
#: (cost_reconciliation is empty without an imported provider report, which only the DuckDB
#: warehouse takes; ops.alert_deliveries and ops.metric_exports are DuckDB's alone).
TABLES = (
    "raw.llm_calls",
    "raw.llm_calls_rejected",
    "raw.load_log",
    "ops.check_results",
    "marts.fct_llm_calls",
    "marts.fct_check_results",
    "marts.agg_hourly_feature_cost",
    "marts.agg_hourly_model_cost",
    "marts.agg_hourly_feature_model_cost",
    "marts.agg_hourly_feature_endpoint_cost",
    "marts.agg_hourly_team_cost",
    "marts.agg_daily_team_cost",
    "marts.agg_daily_user_cost",
    "marts.agg_hourly_feature_cost_drivers",
    "marts.agg_hourly_usage_detail",
    "marts.cost_reconciliation",
    "marts.anomalies",
)
#: a cost may differ by at most this much (USD) per hour × feature × model
MICRO_DOLLAR = Decimal("0.000001")

QUERIES = {
    "rejected": """
        select source_file, line_number, reason from raw.llm_calls_rejected
    """,
    "cost": """
        select cast(hour_at as string), feature, coalesce(model, ''), environment,
            count(*), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),
            sum(cache_write_tokens), cast(sum(cost_usd) as string)
        from marts.fct_llm_calls
        group by 1, 2, 3, 4
    """,
    "mart_cost": """
        select cast(hour_at as string), feature, coalesce(model, ''), environment,
            calls, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
            cast(cost_usd as string)
        from marts.agg_hourly_feature_model_cost
    """,
    "anomalies": """
        select anomaly_id, incident_key, detector, severity, cast(hour_at as string),
            coalesce(feature, ''), coalesce(model, ''), coalesce(environment, ''),
            coalesce(top_driver, '')
        from marts.anomalies
    """,
    # the cost drivers, to the cent (the logs of two engines may differ in the last bit)
    "drivers": """
        select cast(hour_at as string), feature, environment, coalesce(top_driver, ''),
            cast(cast(round(cost_change_usd, 2) as decimal(18, 2)) as string),
            cast(cast(round(volume_usd + model_mix_usd, 2) as decimal(18, 2)) as string),
            cast(cast(round(input_tokens_per_call_usd + output_tokens_per_call_usd, 2)
                as decimal(18, 2)) as string),
            cast(cast(round(cache_usd + retries_usd + price_usd, 2) as decimal(18, 2)) as string)
        from marts.agg_hourly_feature_cost_drivers
    """,
}


def _relative(path: str) -> str:
    """A landing file as the part of its path under the landing folder (`date=.../hour=.../x`):
    DuckDB records a path, Spark a file: URI."""
    marker = "date="
    return path[path.index(marker) :] if marker in path else path


def _summary(rows_of) -> dict:
    summary: dict = {"counts": {t: rows_of(f"select count(*) from {t}")[0][0] for t in TABLES}}
    for name, sql in QUERIES.items():
        rows = [tuple(row) for row in rows_of(sql)]
        if name == "rejected":
            rows = [(_relative(f), int(n), reason) for f, n, reason in rows]
        summary[name] = sorted(rows, key=lambda r: tuple("" if v is None else str(v) for v in r))
    return summary


def duckdb_summary(warehouse: Path) -> dict:
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return _summary(lambda sql: con.execute(sql).fetchall())
    finally:
        con.close()


def spark_summary(spark, home: Path) -> dict:
    """The summary of the Spark warehouse (`run_in_spark` entry point)."""
    summary = _summary(lambda sql: [tuple(r) for r in spark.sql(sql).collect()])
    # JSON carries it back: numbers as numbers, decimals as their text already
    return summary


def _keyed(rows: list, key_len: int) -> dict:
    return {tuple(map(str, r[:key_len])): list(r[key_len:]) for r in rows}


def compare(duck: dict, spark: dict) -> tuple[list[str], list[str]]:
    """(differences, what was compared): an empty first list means the engines agree."""
    differences: list[str] = []
    compared: list[str] = []
    for table in TABLES:
        a, b = duck["counts"][table], spark["counts"][table]
        compared.append(f"{table}: {a} rows on DuckDB, {b} on Spark")
        if a != b:
            differences.append(f"{table}: {a} rows on DuckDB, {b} on Spark")

    rej_a = {tuple(map(str, r)) for r in duck["rejected"]}
    rej_b = {tuple(map(str, r)) for r in spark["rejected"]}
    compared.append(f"rejected lines (file, line, reason): {len(rej_a)} and {len(rej_b)}")
    for row in sorted(rej_a ^ rej_b)[:20]:
        differences.append(f"rejected {row} only on {'DuckDB' if row in rej_a else 'Spark'}")

    for name in ("cost", "mart_cost"):
        a, b = _keyed(duck[name], 4), _keyed(spark[name], 4)
        worst = Decimal(0)
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                differences.append(f"{name} {key} only on {'DuckDB' if key in a else 'Spark'}")
                continue
            counts_a, counts_b = [int(v) for v in a[key][:-1]], [int(v) for v in b[key][:-1]]
            if counts_a != counts_b:
                differences.append(f"{name} {key}: calls/tokens {counts_a} vs {counts_b}")
            gap = abs(Decimal(a[key][-1]) - Decimal(b[key][-1]))
            worst = max(worst, gap)
            if gap > MICRO_DOLLAR:
                differences.append(f"{name} {key}: cost {a[key][-1]} vs {b[key][-1]}")
        compared.append(
            f"{name}: {len(a)} hour × feature × model × environment rows; calls and tokens "
            f"equal, largest cost gap ${worst}"
        )

    an_a = {tuple(map(str, r)) for r in duck["anomalies"]}
    an_b = {tuple(map(str, r)) for r in spark["anomalies"]}
    ids = {r[0] for r in an_a}
    compared.append(
        f"anomalies (id, incident key, detector, severity, hour, dimensions): {len(an_a)} and "
        f"{len(an_b)}, {len(ids)} ids, "
        f"{len({r[1] for r in an_a})} incidents, "
        f"detectors {sorted({r[2] for r in an_a})}"
    )
    for row in sorted(an_a ^ an_b)[:20]:
        differences.append(f"anomaly {row} only on {'DuckDB' if row in an_a else 'Spark'}")

    dr_a = {tuple(map(str, r)) for r in duck["drivers"]}
    dr_b = {tuple(map(str, r)) for r in spark["drivers"]}
    compared.append(
        f"cost drivers (hour, feature, environment, top driver, change and effects to the cent): "
        f"{len(dr_a)} and {len(dr_b)} rows"
    )
    for row in sorted(dr_a ^ dr_b)[:20]:
        differences.append(f"drivers {row} only on {'DuckDB' if row in dr_a else 'Spark'}")
    return differences, compared
