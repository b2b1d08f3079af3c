"""The ops tables written by the Python side (the data-quality checks)."""

CHECK_RESULTS_DDL = """
create schema if not exists ops;
create table if not exists ops.check_results (
    asset varchar not null,
    suite varchar not null,
    check_name varchar not null,
    severity varchar not null,
    partition_hour timestamp not null,
    passed boolean not null,
    unexpected_count bigint,
    element_count bigint,
    observed_value varchar,
    details varchar,
    checked_at timestamp not null
);
"""
