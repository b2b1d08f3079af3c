"""Resources: where the spendwatch home is, the run's Spark server, and the dbt CLI."""

from __future__ import annotations

import contextlib
import shutil
import sys
from functools import cached_property
from importlib.metadata import version
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource
from packaging.version import Version
from pydantic import PrivateAttr

from orchestration.defs.project import dbt_project
from orchestration.lib.spark import connect_server, run_in_spark
from spendwatch.config import Paths, paths, target


class SpendwatchHome(dg.ConfigurableResource):
    """The spendwatch home: warehouse file and landing folder. Empty = `$SPENDWATCH_HOME`."""

    home: str = ""

    def paths(self) -> Paths:
        return paths(self.home or None)


class SparkServer(dg.ConfigurableResource):
    """On the Spark target, one Spark Connect server for the whole run: set up before the
    run's first step, stopped after its last (orchestration/lib/spark.py). Every dbt invocation
    and Python step of the run is its client. On DuckDB, or when `$SPARK_REMOTE` already names a
    server (a cluster), it does nothing."""

    spendwatch: SpendwatchHome
    _server: contextlib.ExitStack = PrivateAttr(default_factory=contextlib.ExitStack)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if target() == "spark":
            url = self._server.enter_context(connect_server(self.spendwatch.paths().home))
            if context.log is not None and url:
                context.log.info(f"Spark for this run: {url}")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self._server.close()

    def run(self, function: str, **kwargs: Any) -> Any:
        """A Python step on Spark for this home (`run_in_spark`): a client of the run's server."""
        return run_in_spark(function, self.spendwatch.paths().home, **kwargs)


def dbt_executable() -> str:
    """The dbt installed beside this Python (the venv need not be on PATH), else dbt on PATH."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


class DbtCli(DbtCliResource):
    """dagster-dbt's dbt CLI resource without two costs spendwatch does not need, paid by every
    run (a one-hour run on DuckDB took 39 s of CPU with them, 27 s without):

    - Before every invocation dagster-dbt builds a dbt adapter in the run's own process
      (loading the profile, the project and every macro: ~3 s) for `fetch_row_counts()` and
      `fetch_column_metadata()`, which spendwatch does not call.
    - Once per run it asks `dbt --version` in a subprocess (~2.5 s) whether dbt is Fusion. The
      dbt beside this Python (`dbt_executable()`) is this environment's dbt-core, whose version
      the package metadata already says; any other executable is still asked.

    Both are dagster-dbt's private methods (dagster-dbt is pinned in constraints.txt);
    tests/test_definitions.py fails if either stops being called, so an upgrade that renames
    them shows up there instead of silently paying the cost again."""

    def _initialize_dbt_core_adapter(self, args):  # noqa: ARG002 - dagster-dbt's signature
        return None

    @cached_property
    def _cli_version(self) -> Version:
        if Path(self.dbt_executable) == Path(sys.executable).with_name("dbt"):
            return Version(version("dbt-core"))
        return super()._cli_version


def build_resources() -> dict[str, object]:
    home = SpendwatchHome()
    return {
        "spendwatch": home,
        "spark": SparkServer(spendwatch=home),
        "dbt": DbtCli(
            project_dir=dbt_project,
            profiles_dir=str(dbt_project.project_dir),
            dbt_executable=dbt_executable(),
        ),
    }
