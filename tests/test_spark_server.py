"""The run's Spark Connect server outlives a run only until the next one: a run whose process
is killed (SIGKILL: no teardown) leaves its server holding the home's metastore, and the next
run on that home stops it before starting its own (`make test-spark`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestration.lib.spark import connect_server, is_server_of

pytestmark = [pytest.mark.spark, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]

#: a "run" that holds a server and waits to be killed
HOLDS_A_SERVER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from orchestration.lib.spark import connect_server
    with connect_server(Path(sys.argv[1])) as url:
        print(url, flush=True)
        time.sleep(600)
""")


def _server_pid(folder: Path) -> int:
    return int((folder / "connect-server.pid").read_text())


def test_the_next_run_stops_the_server_a_killed_run_left_behind(tmp_path, monkeypatch) -> None:
    from pyspark.sql import SparkSession

    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    home = tmp_path / "home"
    folder = home / "spark"
    run = subprocess.Popen([sys.executable, "-c", HOLDS_A_SERVER, str(home)], cwd=REPO,
                           stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert run.stdout.readline().startswith("sc://localhost:")
        left = _server_pid(folder)
        assert is_server_of(left, folder)
    finally:
        run.kill()  # SIGKILL: the run's teardown never happens
        run.wait()
    assert is_server_of(left, folder), "the server should outlive its killed run"

    with connect_server(home) as url:
        assert not is_server_of(left, folder), "the next run stops the server left behind"
        own = _server_pid(folder)
        assert own != left and is_server_of(own, folder)
        spark = SparkSession.builder.remote(url).getOrCreate()
        try:  # the new server has the metastore: it can create and read a table
            spark.sql("create table left_behind_probe as select 1 as one")
            assert spark.sql("select one from left_behind_probe").collect()[0][0] == 1
        finally:
            spark.stop()
    assert not (folder / "connect-server.pid").exists()
    assert not is_server_of(own, folder)
