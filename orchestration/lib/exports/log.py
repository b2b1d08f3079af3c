"""The export log `ops.metric_exports`: one row per (hour, destination), the primary key.

Written once per export run, after the sending, in one short transaction (no connection is open
while points travel); read by the next run (which hours are due) and `spendwatch export
--status`. Columns are declared once here, like `ops.alert_deliveries` in
orchestration/lib/alerting/deliveries.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from spendwatch.warehouse import has_table

#: sent: every point accepted; partial: some batches of the hour refused; failed: none accepted
STATUSES = ("sent", "partial", "failed")

METRIC_EXPORTS_COLUMNS = {
    "hour_at": "timestamp not null",
    "destination": "varchar not null",
    "status": "varchar not null",
    "points": "integer not null",
    "points_sent": "integer not null",
    "fingerprint": "varchar not null",
    "attempts": "integer not null",
    "target": "varchar not null",
    "error": "varchar",
    "first_attempt_at": "timestamp not null",
    "last_attempt_at": "timestamp not null",
    "sent_at": "timestamp",
    "export_run_id": "varchar",
}

_COLUMNS = ",\n    ".join(f"{name} {t}" for name, t in METRIC_EXPORTS_COLUMNS.items())

DDL = f"""
create schema if not exists ops;
create table if not exists ops.metric_exports (
    {_COLUMNS},
    primary key (hour_at, destination)
);
"""


@dataclass(frozen=True)
class Outcome:
    """What one export run did with one hour."""

    hour_at: datetime
    destination: str
    points: int
    points_sent: int
    fingerprint: str
    target: str
    error: str | None  # redacted
    attempted_at: datetime
    run_id: str

    @property
    def status(self) -> str:
        if self.points_sent >= self.points:
            return "sent"
        return "partial" if self.points_sent else "failed"


UPSERT = """
insert into ops.metric_exports (hour_at, destination, status, points, points_sent, fingerprint,
    attempts, target, error, first_attempt_at, last_attempt_at, sent_at, export_run_id)
values (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)
on conflict (hour_at, destination) do update set
    status = excluded.status,
    points = excluded.points,
    points_sent = excluded.points_sent,
    fingerprint = excluded.fingerprint,
    attempts = ops.metric_exports.attempts + 1,
    target = excluded.target,
    error = excluded.error,
    last_attempt_at = excluded.last_attempt_at,
    sent_at = coalesce(excluded.sent_at, ops.metric_exports.sent_at),
    export_run_id = excluded.export_run_id
"""


def record(con: duckdb.DuckDBPyConnection, outcomes: list[Outcome]) -> int:
    """Write the outcomes of one run in one transaction: a new hour gets its row, an hour sent
    before gets its latest state (attempts counted, the last success kept)."""
    if not outcomes:
        return 0
    con.execute("begin transaction")
    try:
        con.execute(DDL)
        con.executemany(
            UPSERT,
            [
                [o.hour_at, o.destination, o.status, o.points, o.points_sent, o.fingerprint,
                 o.target, o.error, o.attempted_at, o.attempted_at,
                 o.attempted_at if o.status == "sent" else None, o.run_id]
                for o in outcomes
            ],
        )  # fmt: skip
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return len(outcomes)


@dataclass(frozen=True)
class StatusRow:
    destination: str
    hours: int
    sent: int
    partial: int
    failed: int
    first_hour: datetime | None
    last_hour: datetime | None
    last_sent_hour: datetime | None
    last_attempt_at: datetime | None
    points_sent: int
    target: str | None


def status(
    con: duckdb.DuckDBPyConnection, failures: int = 10
) -> tuple[list[StatusRow], list[tuple]]:
    """Per destination, what the log holds; and the latest hours not (completely) sent with
    their errors, newest first."""
    if not has_table(con, "ops", "metric_exports"):
        return [], []
    rows = con.execute(
        """
        select destination, count(*),
            count(*) filter (where status = 'sent'),
            count(*) filter (where status = 'partial'),
            count(*) filter (where status = 'failed'),
            min(hour_at), max(hour_at), max(hour_at) filter (where status = 'sent'),
            max(last_attempt_at), cast(sum(points_sent) as bigint),
            arg_max(target, last_attempt_at)
        from ops.metric_exports
        group by destination
        order by destination
        """
    ).fetchall()
    open_rows = con.execute(
        """
        select hour_at, destination, status, points_sent, points, attempts, last_attempt_at, error
        from ops.metric_exports
        where status <> 'sent'
        order by hour_at desc, destination
        limit ?
        """,
        [failures],
    ).fetchall()
    return [StatusRow(*r) for r in rows], open_rows
