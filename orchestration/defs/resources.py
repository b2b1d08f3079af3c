"""Resources: where the spendwatch home is, the run's Spark server, and the dbt CLI."""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource
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


def build_resources() -> dict[str, object]:
    home = SpendwatchHome()
    return {
        "spendwatch": home,
        "spark": SparkServer(spendwatch=home),
        "dbt": DbtCliResource(
            project_dir=dbt_project,
            profiles_dir=str(dbt_project.project_dir),
            dbt_executable=dbt_executable(),
        ),
    }
