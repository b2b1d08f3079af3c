"""Opening the warehouse file when other processes may hold it.

DuckDB admits one writing process, and a read-only connection also blocks a writer. Every
spendwatch process that opens the warehouse — the ingest, the data-quality checks, the alerts,
the dashboard, the sensors, the CLI — goes through `open_warehouse`: while another process holds
the lock it waits (saying once who holds it, as DuckDB names the holder's program and PID) and
retries, up to `wait_seconds`, then raises `WarehouseBusy` with one clear line. Whole runs are
serialized before they get here (docs/architecture.md, "One writer at a time"); this is the
last line of defence for what the run queue cannot see (a notebook, a report, a sensor's peek).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

#: How long a process waits for the warehouse lock before giving up (seconds).
WAIT_ENV = "SPENDWATCH_WAREHOUSE_WAIT_SECONDS"
DEFAULT_WAIT_SECONDS = 600.0

_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.*?)(?:\. See also|$)")


class WarehouseMissing(FileNotFoundError):
    """There is no warehouse file yet."""


class WarehouseBusy(RuntimeError):
    """Another process kept the warehouse locked for longer than we would wait."""


def _log_waiting(holder: str) -> None:
    logging.getLogger("spendwatch.warehouse").warning(
        f"the warehouse is locked by {holder}: waiting for it"
    )


def default_wait_seconds() -> float:
    value = os.environ.get(WAIT_ENV, "").strip() or str(DEFAULT_WAIT_SECONDS)
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{WAIT_ENV}={value!r} is not a number") from None


def lock_holder(exc: BaseException) -> str | None:
    """'<program> (PID n)' from DuckDB's lock error, or None when it is not a lock error."""
    text = str(exc)
    if "lock" not in text.lower():
        return None
    found = _LOCK_HOLDER.search(text)
    return found.group(1) if found else "another process"


def open_warehouse(
    path: Path,
    *,
    read_only: bool = False,
    wait_seconds: float | None = None,
    on_wait: Callable[[str], None] | None = None,
    consequence: str = "",
    must_exist: bool | None = None,
) -> duckdb.DuckDBPyConnection:
    """Connect to the warehouse; while another process holds its lock, wait and retry for up to
    `wait_seconds` (default: $SPENDWATCH_WAREHOUSE_WAIT_SECONDS, 600), calling `on_wait(holder)`
    once (by default it logs a warning naming the holder). `consequence` ends the WarehouseBusy
    message (what did not happen, what to do). `must_exist` (default: when read-only) raises
    WarehouseMissing instead of creating it."""
    if (read_only if must_exist is None else must_exist) and not path.exists():
        raise WarehouseMissing(
            f"no warehouse at {path}: materialize first (`spendwatch demo` or "
            "`spendwatch materialize --start ...`)"
        )
    wait = default_wait_seconds() if wait_seconds is None else wait_seconds
    deadline = time.monotonic() + wait
    pause, told = 0.1, False
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            who = lock_holder(exc)
            if who is None:
                raise
            if time.monotonic() >= deadline:
                raise WarehouseBusy(
                    f"the warehouse {path} is still locked by {who} after {wait:g} s"
                    + (f"; {consequence}" if consequence else "")
                ) from None
            if not told:
                (on_wait or _log_waiting)(who)
            told = True
            time.sleep(min(pause, max(deadline - time.monotonic(), 0)))
            pause = min(pause * 1.6, 2.0)


def has_table(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """Whether the warehouse has `schema.table` (a table the pipeline creates on first use)."""
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? "
            "and table_name = ?",
            [schema, table],
        ).fetchone()[0]
    )
