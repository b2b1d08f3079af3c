"""Spark for the Spark target's Python steps (the raw load, the data-quality suites).

The session is configured exactly as dbt's `spark` target: its settings are read from the
`server_side_parameters` of profiles.yml (rendered with the same `env_var`), so the Python
steps and dbt see one catalog and one warehouse folder under `$SPENDWATCH_HOME/spark`.

The catalog is an embedded Derby metastore, which one JVM opens at a time. dbt-spark's session
method starts its own JVM in each dbt process; so every Python step runs in a process of its own
(`run_in_spark`), which exits — and frees the metastore — before the next dbt invocation starts.
A Spark cluster (Thrift server, Databricks) has a shared metastore and no such limit.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import yaml

from spendwatch.config import REPO_DIR

PROFILES = REPO_DIR / "profiles.yml"


def spark_settings(home: Path) -> dict[str, str]:
    """The Spark settings of profiles.yml's `spark` output for the spendwatch home `home`."""
    text = PROFILES.read_text()
    env = {**os.environ, "SPENDWATCH_HOME": str(home)}

    def env_var(name: str, default: str | None = None) -> str:
        if name in env:
            return env[name]
        if default is None:
            raise KeyError(f"profiles.yml needs the environment variable {name}")
        return default

    rendered = jinja2.Environment().from_string(text).render(env_var=env_var)
    output = yaml.safe_load(rendered)["spendwatch"]["outputs"]["spark"]
    return {k: str(v) for k, v in (output.get("server_side_parameters") or {}).items()}


def spark_session(home: Path):
    """A SparkSession on the spendwatch home's catalog (Hive support, as dbt-spark's session)."""
    from pyspark.sql import SparkSession

    (home / "spark").mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.enableHiveSupport()
    for key, value in spark_settings(home).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def run_in_spark(function: str, home: Path, **kwargs: Any) -> Any:
    """Call `function` ("package.module:name", called as name(spark, home, **kwargs) and
    returning something JSON can write) in a Python process of its own with a Spark session on
    `home`, and return its result. The process exits afterwards, releasing the metastore.
    What the function has to say comes back in its result (Spark's own chatter is dropped); a
    failure raises with the child's last lines of output."""
    command = [sys.executable, "-m", "orchestration.lib.spark", function, str(home)]
    proc = subprocess.run(
        command,
        input=json.dumps(kwargs, default=str),
        capture_output=True,
        text=True,
        cwd=REPO_DIR,
        env={**os.environ, "SPENDWATCH_HOME": str(home)},
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-25:])
        raise RuntimeError(f"the Spark step {function} failed (exit {proc.returncode}):\n{tail}")
    result_line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "null"
    return json.loads(result_line)


def _main(argv: list[str]) -> int:
    function, home = argv[0], Path(argv[1])
    module_name, name = function.split(":")
    kwargs = json.loads(sys.stdin.read() or "{}")
    spark = spark_session(home)
    try:
        result = getattr(importlib.import_module(module_name), name)(spark, home, **kwargs)
    finally:
        spark.stop()
    sys.stdout.write("\n" + json.dumps(result, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
