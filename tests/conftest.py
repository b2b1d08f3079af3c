"""Shared fixtures: an isolated spendwatch home per test, and the dbt manifest."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import isolated_home

from spendwatch.config import Paths

# fixtures of the alerting tests (a real SMTP server on localhost)
pytest_plugins = ["alert_support"]


@pytest.fixture(scope="session", autouse=True)
def _quiet_tools() -> None:
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.pop("SPENDWATCH_TARGET", None)  # each test says which engine it builds on


#: the module that takes longest: two warehouses built from the same files, one on Spark
LONGEST = "test_spark_target.py"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`make test` hands whole files to its two workers in collection order (xdist's loadfile
    with --no-loadscope-reorder; without it xdist starts the files with the most tests first, and
    the one-test engine comparison ran alone at the end). The longest module goes first, so it
    runs beside all the others."""
    items.sort(key=lambda item: item.path.name != LONGEST)


@pytest.fixture(scope="session")
def dbt_manifest() -> Path:
    """The manifest `make manifest` wrote (`make test` runs it first, and re-parses when the dbt
    sources changed); a clear error with what to run when it is missing."""
    from orchestration.defs.project import manifest_path

    return manifest_path()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Paths]:
    """A fresh SPENDWATCH_HOME (and DAGSTER_HOME inside it) for one test."""
    with isolated_home(tmp_path / "home") as p:
        yield p
