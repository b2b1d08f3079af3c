"""Resources: where the spendwatch home is, and the dbt CLI."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from orchestration.defs.project import dbt_project
from spendwatch.config import Paths, paths


class SpendwatchHome(dg.ConfigurableResource):
    """The spendwatch home: warehouse file and landing folder. Empty = `$SPENDWATCH_HOME`."""

    home: str = ""

    def paths(self) -> Paths:
        return paths(self.home or None)


def dbt_executable() -> str:
    """The dbt installed beside this Python (the venv need not be on PATH), else dbt on PATH."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


def build_resources() -> dict[str, object]:
    return {
        "spendwatch": SpendwatchHome(),
        "dbt": DbtCliResource(
            project_dir=dbt_project,
            profiles_dir=str(dbt_project.project_dir),
            dbt_executable=dbt_executable(),
        ),
    }
