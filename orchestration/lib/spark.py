"""Spark for the Spark target: the Spark Connect server of a run, and the Python steps' sessions.

The spark target talks Spark Connect. Its settings live once, in the `server_side_parameters` of
profiles.yml's `spark` output (rendered here with the same `env_var`), so dbt and the Python steps
(the raw load with its suites, the marts suite, the reconciliation check) see one catalog and one
warehouse folder under `$SPENDWATCH_HOME/spark`. `spark.remote` names the server:
`$SPARK_REMOTE` when it is set (a cluster's Connect endpoint, or the run's own server),
otherwise `local[2]`, a Spark started inside the process that asks for it.

A run on the Spark target starts ONE local Connect server for its whole length
(`connect_server`, held by the Dagster resource `SparkServer`): every dbt invocation and every
Python step of the run is then a client of that one JVM instead of starting its own, which took
15-18 s each, ten times a run. The server is also the only process that opens the embedded
Derby metastore, which admits one JVM at a time. Without a server (dbt by hand, the tests'
direct calls) each process starts its own local Spark, and `run_in_spark` runs a step in a
process of its own so that it exits, and frees the metastore, before the next one starts.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import yaml

from spendwatch.config import REPO_DIR, temporary_environ

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
    failure raises with the child's last lines of output.

    With a Connect server up (`$SPARK_REMOTE` is `sc://…`: the run's own, or a cluster's) the
    step is only a client and runs in this process; its result goes through JSON all the same."""
    if os.environ.get("SPARK_REMOTE", "").startswith("sc://"):
        return json.loads(json.dumps(_call(function, home, kwargs), default=str))
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


def _call(function: str, home: Path, kwargs: dict[str, Any]) -> Any:
    module_name, name = function.split(":")
    spark = spark_session(home)
    try:
        return getattr(importlib.import_module(module_name), name)(spark, home, **kwargs)
    finally:
        spark.stop()


def _main(argv: list[str]) -> int:
    function, home = argv[0], Path(argv[1])
    result = _call(function, home, json.loads(sys.stdin.read() or "{}"))
    sys.stdout.write("\n" + json.dumps(result, default=str) + "\n")
    return 0


# --- the run's Connect server ---------------------------------------------------------------

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
#: how long a server may take to listen (a JVM start is 8 s idle, several times that on two
#: busy cores)
SERVER_START_SECONDS = 180.0


@contextlib.contextmanager
def connect_server(home: Path) -> Iterator[str | None]:
    """A local Spark Connect server for the spendwatch home `home` while the block runs, with
    `$SPARK_REMOTE` (and its token) pointing at it for this process and the processes it starts;
    yields its URL. Nothing is started when a server is already named (`$SPARK_REMOTE` is
    `sc://…`) or when the profile's `spark.remote` is not local (a cluster): then it yields that
    URL, or None. The server is stopped when the block ends, however it ends; one left behind
    by a run whose process was killed is stopped first (its pid is kept beside the metastore)."""
    current = os.environ.get("SPARK_REMOTE", "")
    if current.startswith("sc://"):
        yield current
        return
    settings = spark_settings(home)
    master = settings.pop("spark.remote", "")
    if not master.startswith("local"):
        yield master or None
        return
    folder = home / "spark"
    folder.mkdir(parents=True, exist_ok=True)
    pid_file = folder / "connect-server.pid"
    _stop_left_behind(pid_file)
    token = str(uuid.uuid4())
    server, port = _start_server(settings, master, token, folder / "connect-server.log")
    pid_file.write_text(str(server.pid))
    url = f"sc://localhost:{port}"  # localhost: the token travels without TLS on loopback only
    try:
        with temporary_environ({"SPARK_REMOTE": url, "SPARK_CONNECT_AUTHENTICATE_TOKEN": token}):
            yield url
    finally:
        _stop(server)
        pid_file.unlink(missing_ok=True)


def _start_server(
    settings: dict[str, str], master: str, token: str, log_path: Path
) -> tuple[subprocess.Popen, int]:
    from pyspark.find_spark_home import _find_spark_home

    with socket.socket() as probe:  # a free port; the server binds it a moment later
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = {
        **settings,
        "spark.sql.catalogImplementation": "hive",  # what enableHiveSupport() sets in-process
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
    }
    command = [str(Path(_find_spark_home()) / "bin" / "spark-submit"), "--master", master,
               "--name", "spendwatch Connect server", "--class", SERVER_CLASS]  # fmt: skip
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    command.append("spark-internal")
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "MASTER")}
    env["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = token  # from the environment: not in `ps`
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(
                f"the Spark Connect server exited during start-up (exit {server.returncode}); "
                f"{log_path}:\n{tail}"
            )
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return server, port
        time.sleep(0.25)
    _stop(server)
    raise RuntimeError(
        f"the Spark Connect server did not listen within {SERVER_START_SECONDS:.0f} s; "
        f"see {log_path}"
    )


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def is_server_of(pid: int, folder: Path) -> bool:
    """Whether process `pid` is a Spark Connect server on the metastore under `folder` (a home's
    `spark` folder)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return SERVER_CLASS in command and str(folder / "metastore_db") in command


def _stop_left_behind(pid_file: Path) -> None:
    """Stop the server a killed run left behind on this home (it holds the metastore): only
    when the recorded pid is still a Connect server of this home's metastore."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return
    if is_server_of(pid, pid_file.parent):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            for _ in range(120):
                time.sleep(0.25)
                os.kill(pid, 0)  # raises once it is gone
            os.kill(pid, signal.SIGKILL)  # 30 s after SIGTERM it still holds the metastore
    pid_file.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
