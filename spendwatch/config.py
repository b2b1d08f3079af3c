"""Where spendwatch keeps its files, and the settings read from the environment.

Everything has a working default; environment variables override (DESIGN.md, Configuration).
Secrets are read here and nowhere else, and are never logged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = ".spendwatch"


def home() -> Path:
    """`$SPENDWATCH_HOME` as an absolute path (default `./.spendwatch`)."""
    return Path(os.environ.get("SPENDWATCH_HOME") or DEFAULT_HOME).expanduser().resolve()


@dataclass(frozen=True)
class Paths:
    """The files and folders under one spendwatch home."""

    home: Path

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def landing(self) -> Path:
        return self.home / "landing" / "calls"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def report(self) -> Path:
        """The dashboard `spendwatch report` and the `spend_report` asset write."""
        return self.home / "report.html"

    def partition_dir(self, hour_start) -> Path:
        """Landing folder of one UTC hour: `date=YYYY-MM-DD/hour=HH`."""
        return self.landing / f"date={hour_start:%Y-%m-%d}" / f"hour={hour_start:%H}"


def paths(home_dir: str | os.PathLike | None = None) -> Paths:
    return Paths(Path(home_dir).expanduser().resolve() if home_dir else home())


def export_environment(p: Paths) -> None:
    """Make the home explicit for child processes (dbt, the Dagster webserver).

    dbt's profile reads `SPENDWATCH_HOME`; Dagster reads `DAGSTER_HOME`. Both are set to absolute
    paths so every process agrees on one warehouse file whatever its working directory.
    """
    p.home.mkdir(parents=True, exist_ok=True)
    p.dagster_home.mkdir(parents=True, exist_ok=True)
    config = p.dagster_home / "dagster.yaml"  # defaults: all state in this folder
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    os.environ["SPENDWATCH_HOME"] = str(p.home)
    os.environ["DAGSTER_HOME"] = str(p.dagster_home)
