"""The delivery log `ops.alert_deliveries` and the warehouse connection alerting uses.

One row per (incident_key, alert_kind, channel). A row is *claimed* (status `sending`, with the
claimer's token and a lease) in a short transaction before anything is sent, and its outcome is
recorded in another short transaction afterwards; no connection is open while messages travel.
DuckDB admits one writing process, and within a process concurrent transactions that touch the
same rows conflict, so two alert runs started together can never both claim a row: the loser
of a conflict retries and finds the row taken. A claimer that dies mid-send leaves a `sending`
row whose lease expires; the next run claims it again (at-least-once to the channel, exactly
one sender per row at a time).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from spendwatch import warehouse

log = logging.getLogger("spendwatch.alerts")
T = TypeVar("T")

KIND_RANK = {"trigger": 1, "escalate": 2, "resolve": 3, "digest": 1}
#: statuses after which a row is never sent again
FINAL = ("sent", "failed", "suppressed_stale", "suppressed_muted", "suppressed_repeat", "grouped")
OPEN = ("pending", "sending")

DDL = """
create schema if not exists ops;
create table if not exists ops.alert_deliveries (
    incident_key varchar not null,
    alert_kind varchar not null,
    channel varchar not null,
    channel_type varchar not null,
    status varchar not null,
    severity varchar not null,
    detector varchar,
    metric varchar,
    feature varchar,
    environment varchar,
    model varchar,
    team_id varchar,
    incident_started_at timestamp,
    last_hour_at timestamp,
    digest_key varchar,
    attempts integer not null default 0,
    last_error varchar,
    note varchar,
    payload varchar not null,
    created_at timestamp not null,
    first_attempt_at timestamp,
    last_attempt_at timestamp,
    next_attempt_at timestamp,
    sent_at timestamp,
    claimed_by varchar,
    claimed_until timestamp,
    alert_run_id varchar,
    primary key (incident_key, alert_kind, channel)
);
create table if not exists ops.alert_mutes (
    mute_id varchar primary key,
    feature varchar,
    detector varchar,
    environment varchar,
    until_at timestamp not null,
    reason varchar,
    created_at timestamp not null,
    created_by varchar
);
"""

COLUMNS = (
    "incident_key", "alert_kind", "channel", "channel_type", "status", "severity", "detector",
    "metric", "feature", "environment", "model", "team_id", "incident_started_at",
    "last_hour_at", "digest_key", "attempts", "last_error", "note", "payload", "created_at",
    "first_attempt_at", "last_attempt_at", "next_attempt_at", "sent_at", "claimed_by",
    "claimed_until", "alert_run_id",
)  # fmt: skip


def naive(at: datetime) -> datetime:
    """UTC without tzinfo, as the warehouse stores timestamps."""
    return at if at.tzinfo is None else at.astimezone(UTC).replace(tzinfo=None)


def open_warehouse(
    path: Path,
    wait_seconds: float,
    read_only: bool = False,
    logger: Any = log,
) -> duckdb.DuckDBPyConnection:
    """The warehouse for the alerts: it must exist; while a run holds it, wait up to
    `wait_seconds` and say so once (spendwatch.warehouse.open_warehouse)."""
    return warehouse.open_warehouse(
        path,
        read_only=read_only,
        wait_seconds=wait_seconds,
        must_exist=True,
        on_wait=lambda who: logger.info(
            f"warehouse {path.name} is locked by {who} (a pipeline run writing?): "
            f"waiting up to {wait_seconds:.0f} s"
        ),
        consequence="nothing was sent — the next sensor tick (or `spendwatch alerts send`) "
        "will try again. Raise SPENDWATCH_WAREHOUSE_WAIT_SECONDS if runs take longer.",
    )


def transaction(
    con: duckdb.DuckDBPyConnection, work: Callable[[duckdb.DuckDBPyConnection], T], tries: int = 25
) -> T:
    """Run `work` in one transaction; on a write conflict with a concurrent transaction (another
    alert run in this process), roll back and run it again on the newer state."""
    for attempt in range(tries):
        con.execute("begin transaction")
        try:
            result = work(con)
            con.execute("commit")
            return result
        except (duckdb.TransactionException, duckdb.ConstraintException):
            with contextlib.suppress(duckdb.Error):  # a failed commit has ended it already
                con.execute("rollback")
            if attempt == tries - 1:
                raise
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("rollback")
            raise
    raise AssertionError("unreachable")


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


@dataclass
class Delivery:
    """One row of ops.alert_deliveries."""

    incident_key: str
    alert_kind: str
    channel: str
    channel_type: str
    status: str
    severity: str
    detector: str | None = None
    metric: str | None = None
    feature: str | None = None
    environment: str | None = None
    model: str | None = None
    team_id: str | None = None
    incident_started_at: datetime | None = None
    last_hour_at: datetime | None = None
    digest_key: str | None = None
    attempts: int = 0
    last_error: str | None = None
    note: str | None = None
    payload: str = "{}"
    created_at: datetime | None = None
    first_attempt_at: datetime | None = None
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    claimed_by: str | None = None
    claimed_until: datetime | None = None
    alert_run_id: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.incident_key, self.alert_kind, self.channel)

    @property
    def facts(self) -> dict[str, Any]:
        return json.loads(self.payload)

    @property
    def series(self) -> tuple:
        return (self.detector, self.metric, self.feature, self.environment, self.model,
                self.team_id)  # fmt: skip


def read_deliveries(con: duckdb.DuckDBPyConnection, where: str = "", params=None) -> list[Delivery]:
    if not warehouse.has_table(con, "ops", "alert_deliveries"):
        return []
    cursor = con.execute(
        f"select {', '.join(COLUMNS)} from ops.alert_deliveries {where} "
        "order by created_at, incident_key, alert_kind, channel",
        params or [],
    )
    return [Delivery(*row) for row in cursor.fetchall()]


def insert(con: duckdb.DuckDBPyConnection, rows: Iterable[Delivery]) -> int:
    values = [[getattr(r, c) for c in COLUMNS] for r in rows]
    if values:
        con.executemany(
            f"insert into ops.alert_deliveries ({', '.join(COLUMNS)}) "
            f"values ({', '.join('?' for _ in COLUMNS)})",
            values,
        )
    return len(values)


def claimable(rows: list[Delivery], now: datetime, ignore_backoff: bool) -> list[Delivery]:
    """Rows that may be sent now, in the order they must go: due (or any pending row when
    `ignore_backoff`), or `sending` with an expired lease; and never a resolve or an escalation
    before the earlier alert of the same incident on the same channel has been dealt with."""
    due = [
        r for r in rows
        if (r.status == "pending" and (ignore_backoff or r.next_attempt_at is None
                                       or r.next_attempt_at <= now))
        or (r.status == "sending" and r.claimed_until is not None and r.claimed_until < now)
    ]  # fmt: skip
    chosen = {r.key for r in due}
    blocked = {
        (r.incident_key, r.channel, KIND_RANK[r.alert_kind])
        for r in rows
        if r.status in OPEN and r.key not in chosen
    }
    ready = []
    for r in due:
        earlier_open = any(
            (r.incident_key, r.channel, rank) in blocked
            for rank in range(1, KIND_RANK[r.alert_kind])
        )
        if not earlier_open:
            ready.append(r)
    return sorted(ready, key=lambda r: (r.created_at or now, KIND_RANK[r.alert_kind]))


def claim(
    con: duckdb.DuckDBPyConnection,
    rows: list[Delivery],
    token: str,
    now: datetime,
    lease: timedelta,
) -> list[Delivery]:
    """Mark `rows` as being sent by `token` until now + lease (inside the caller's
    transaction); returns the rows this claimer now owns."""
    if not rows:
        return []
    keys = ["|".join(r.key) for r in rows]
    claimed = con.execute(
        """
        update ops.alert_deliveries
        set status = 'sending', claimed_by = ?, claimed_until = ?
        where list_contains(?, incident_key || '|' || alert_kind || '|' || channel)
          and (status = 'pending' or (status = 'sending' and claimed_until < ?))
        returning incident_key, alert_kind, channel
        """,
        [token, now + lease, keys, now],
    ).fetchall()
    owned = {tuple(k) for k in claimed}
    return [r for r in rows if r.key in owned]


@dataclass
class Result:
    """What happened to one claimed row."""

    delivery: Delivery
    outcome: str  # sent | retry | failed | released
    error: str | None = None
    next_attempt_at: datetime | None = None
    attempted_at: datetime | None = None


def record(con: duckdb.DuckDBPyConnection, results: list[Result], token: str) -> int:
    """Write the outcomes of one claimer's sends (inside the caller's transaction). A row whose
    lease was lost to another claimer is left alone."""
    written = 0
    for res in results:
        d = res.delivery
        where = "where incident_key = ? and alert_kind = ? and channel = ? and claimed_by = ?"
        key = [*d.key, token]
        if res.outcome == "released":  # not attempted: back in the queue as it was
            sql = (
                "update ops.alert_deliveries set status = 'pending', claimed_by = null, "
                f"claimed_until = null, next_attempt_at = ? {where} returning 1"
            )
            params = [res.next_attempt_at, *key]
        else:
            status = {"sent": "sent", "retry": "pending", "failed": "failed"}[res.outcome]
            sql = f"""
                update ops.alert_deliveries set
                    status = ?, attempts = attempts + 1, last_error = coalesce(?, last_error),
                    first_attempt_at = coalesce(first_attempt_at, ?), last_attempt_at = ?,
                    next_attempt_at = ?, sent_at = ?, claimed_by = null, claimed_until = null
                {where} returning 1
            """
            sent_at = res.attempted_at if res.outcome == "sent" else None
            params = [status, res.error, res.attempted_at, res.attempted_at,
                      res.next_attempt_at, sent_at, *key]  # fmt: skip
        if con.execute(sql, params).fetchall():
            written += 1
            if d.alert_kind == "digest" and res.outcome in ("sent", "failed"):
                con.execute(
                    "update ops.alert_deliveries set sent_at = ?, last_error = ? "
                    "where digest_key = ? and channel = ? and status = 'grouped'",
                    [res.attempted_at if res.outcome == "sent" else None, res.error,
                     d.incident_key, d.channel],
                )  # fmt: skip
        else:
            log.warning(f"{d.channel}: lost the claim on {d.alert_kind} {d.incident_key}")
    return written


# --- mutes set from the command line ---------------------------------------------------------


@dataclass(frozen=True)
class MuteRow:
    mute_id: str
    feature: str | None
    detector: str | None
    environment: str | None
    until_at: datetime
    reason: str | None
    created_at: datetime
    created_by: str | None


def read_mutes(con: duckdb.DuckDBPyConnection, now: datetime | None = None) -> list[MuteRow]:
    if not warehouse.has_table(con, "ops", "alert_mutes"):
        return []
    where, params = ("where until_at > ?", [now]) if now else ("", [])
    rows = con.execute(
        "select mute_id, feature, detector, environment, until_at, reason, created_at, "
        f"created_by from ops.alert_mutes {where} order by until_at",
        params,
    ).fetchall()
    return [MuteRow(*r) for r in rows]
