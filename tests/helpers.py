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


def dbt_build(home: Path, *args: str) -> None:
    """`dbt build` (or other dbt arguments) against the warehouse of spendwatch home `home`,
    with its own target and log folders; fails the test with dbt's output on error."""
    import os
    import subprocess

    from orchestration.defs.resources import dbt_executable

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "SPENDWATCH_HOME": str(home), "DBT_PROFILES_DIR": str(repo)}
    proc = subprocess.run(
        [dbt_executable(), *(args or ("build", "--exclude", "resource_type:unit_test")),
         "--target-path", str(home / "target"), "--log-path", str(home / "logs")],
        cwd=repo, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:]
