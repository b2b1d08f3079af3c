"""Shared fixtures: an isolated spendwatch home per test, and the dbt manifest prepared once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import isolated_home

from spendwatch.config import Paths

REPO = Path(__file__).resolve().parents[1]

# fixtures of the alerting tests (a real SMTP server on localhost)
pytest_plugins = ["alert_support"]


@pytest.fixture(scope="session", autouse=True)
def _quiet_tools() -> None:
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


@pytest.fixture(scope="session")
def dbt_manifest() -> Path:
    from orchestration.runner import prepare_manifest

    prepare_manifest()
    return REPO / "target" / "manifest.json"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Paths]:
    """A fresh SPENDWATCH_HOME (and DAGSTER_HOME inside it) for one test."""
    with isolated_home(tmp_path / "home") as p:
        yield p
