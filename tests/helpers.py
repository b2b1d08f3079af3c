"""Small helpers the test modules share (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from spendwatch.config import Paths, export_environment, paths


@contextlib.contextmanager
def isolated_home(path: Path) -> Iterator[Paths]:
    """A fresh SPENDWATCH_HOME at `path` (DAGSTER_HOME inside it), set in the environment for
    as long as the block lasts."""
    p = paths(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPENDWATCH_HOME", str(p.home))
        mp.setenv("DAGSTER_HOME", str(p.dagster_home))
        export_environment(p)
        yield p


def query(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    """Run one read-only query against a warehouse file and return all rows."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()
