"""Small helpers the test modules share (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

import duckdb


def query(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    """Run one read-only query against a warehouse file and return all rows."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()
