"""The ops tables written by the Python side (the data-quality checks), for both engines.

The columns are listed once; DuckDB and Spark get the same table (Spark spells varchar
`string` and keeps it as an unpartitioned Parquet table: see orchestration/lib/quality.py,
`record`, for why it is not partitioned).
"""

CHECK_RESULTS_COLUMNS = {
    "asset": "varchar not null",
    "suite": "varchar not null",
    "check_name": "varchar not null",
    "severity": "varchar not null",
    "partition_hour": "timestamp not null",
    "passed": "boolean not null",
    "unexpected_count": "bigint",
    "element_count": "bigint",
    "observed_value": "varchar",
    "details": "varchar",
    "checked_at": "timestamp not null",
}

_COLUMNS = ",\n    ".join(f"{name} {t}" for name, t in CHECK_RESULTS_COLUMNS.items())

CHECK_RESULTS_DDL = f"""
create schema if not exists ops;
create table if not exists ops.check_results (
    {_COLUMNS}
);
"""

#: the same table on Spark, one statement each (spark.sql runs one at a time)
CHECK_RESULTS_SPARK_DDL = [
    "create schema if not exists ops",
    f"""create table if not exists ops.check_results (
    {_COLUMNS.replace("varchar", "string")}
) using parquet""",
]
