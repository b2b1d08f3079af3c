"""Fault injection for the writers and the command line (issue 13, items 5 and 9).

Item 5 — the tracker never glues an event onto a half-written line, flushes on SIGTERM and
survives a fork while its locks are held. Every case runs in real subprocesses and is judged by
the real ingest (`load_window`) or by reading the landing files back.

Item 9 — paths never pasted into SQL (a home under a folder named `o'brien`), and every CLI
error a user can cause is one line and a non-zero exit, not a traceback.

Each test's docstring says what the code before this change did.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from helpers import isolated_home, query

from orchestration.lib.ingest import load_window
from spendwatch.cli import main
from spendwatch.generator import generate
from spendwatch.landing import ALL_FILES, hour_dir

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "spendwatch.cli"]
# an hour two days back: inside what the ingest accepts, and far from the next hour boundary
HOUR = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)

# ------------------------------------------------------------------------------------------
# item 5: half lines, SIGTERM, fork
# ------------------------------------------------------------------------------------------

# A writer that records until it is killed; it prints how many events it has flushed.
KILLED_WRITER = """
import sys, time
from datetime import datetime, timedelta
from spendwatch.tracker import Tracker

home, at = sys.argv[1], datetime.fromisoformat(sys.argv[2])
t = Tracker(home=home, feature="chat", writer_id="app", flush_interval=0.01)
i = 0
while True:
    t.record(provider="openai", model="gpt-4o-mini", input_tokens=100 + i, output_tokens=10,
             event_id=f"a-{i}", occurred_at=at + timedelta(milliseconds=i))
    i += 1
    if i % 50 == 0:
        t.flush(5)
        print(i, flush=True)
    time.sleep(0.0005)
"""

# The same application restarted. A container restarts it under the same PID (PID 1, or the
# same small number every time), so its file name is the crashed one's: the PID is given.
RESTARTED_WRITER = """
import os, sys
os.getpid = lambda: int(sys.argv[3])  # the PID the crashed process had
from datetime import datetime, timedelta
from spendwatch.tracker import Tracker

home, at = sys.argv[1], datetime.fromisoformat(sys.argv[2]) + timedelta(minutes=20)
t = Tracker(home=home, feature="chat", writer_id="app", flush_interval=0.01)
for i in range(30):
    t.record(provider="openai", model="gpt-4o-mini", input_tokens=7, output_tokens=1,
             event_id=f"b-{i}", occurred_at=at + timedelta(milliseconds=i))
assert t.close(10), t.stats()
"""


def _run(code: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
        timeout=120, **kwargs,
    )  # fmt: skip


def test_a_restarted_writer_never_glues_onto_the_half_line_a_crash_left(tmp_path: Path):
    """A writer is SIGKILLed mid-stream and its file's last line is torn (what power loss
    leaves of the last write); the application restarts under the same PID, so with the same
    file name. Before: the restarted writer appended to that file, its first event was glued
    onto the half line and the merged line was rejected as invalid JSON (the event lost, no
    `truncated_line`). Now it writes a fresh file: the half line is quarantined as
    `truncated_line` and every complete event of both processes loads."""
    home = tmp_path / "home"
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(home), HOUR.isoformat()],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        flushed = 0
        while flushed < 300:
            line = writer.stdout.readline()
            assert line, "the writer stopped before it was killed"
            flushed = int(line)
    finally:
        writer.kill()  # SIGKILL: no atexit, no flush, mid-stream
        writer.wait(30)
        writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL
    crashed = hour_dir(home / "landing" / "calls", HOUR) / f"app-{writer.pid}.jsonl"
    data = crashed.read_bytes()
    if data.endswith(b"\n"):  # the kill left whole lines: tear the last one as power loss would
        last = data[:-1].rfind(b"\n") + 1
        data = data[: last + (len(data) - last) // 2]
        crashed.write_bytes(data)
    complete = data.count(b"\n")
    half = data[data.rfind(b"\n") + 1 :].decode()
    assert complete >= 250 and half

    restarted = _run(RESTARTED_WRITER, str(home), HOUR.isoformat(), str(writer.pid))
    assert restarted.returncode == 0, restarted.stderr
    assert crashed.read_bytes() == data, "the crashed file must be left as it was"
    fresh = crashed.with_name(f"app-{writer.pid}.1.jsonl")
    assert fresh.read_text().count("\n") == 30

    warehouse = home / "warehouse.duckdb"
    result = load_window(warehouse, home / "landing" / "calls", HOUR, HOUR + timedelta(hours=1))
    assert result.rejected_by_reason == {"truncated_line": 1}
    assert (result.loaded, result.rejected) == (complete + 30, 1)
    ids = {row[0] for row in query(warehouse, "select event_id from raw.llm_calls")}
    assert ids == {f"a-{i}" for i in range(complete)} | {f"b-{i}" for i in range(30)}
    rejected = query(warehouse, "select source_file, reason, raw_line from raw.llm_calls_rejected")
    assert rejected == [(str(crashed), "truncated_line", half)]


def test_a_half_line_left_by_a_failed_cut_back_is_not_glued_either(tmp_path: Path):
    """The same process: a write failed half way and could not be cut back (the file is left
    ending in a half line). Before: the next batch was appended to it and its first event lost
    with the half line. Now the next batch goes to a fresh file; nothing complete is lost."""
    code = """
import sys
from datetime import datetime, timedelta
from spendwatch.tracker import Tracker
import spendwatch.tracker.writer as w

home, at = sys.argv[1], datetime.fromisoformat(sys.argv[2])
t = Tracker(home=home, feature="chat", writer_id="same", flush_interval=0.01)
def rec(prefix, n):
    for i in range(n):
        t.record(provider="openai", model="m", input_tokens=1, output_tokens=1,
                 event_id=f"{prefix}-{i}", occurred_at=at + timedelta(seconds=i))
    assert t.flush(10)
rec("one", 5)
real = w._write_all
def torn(fd, data):  # half the batch reaches the disk, then the process cannot cut it back
    real(fd, data[: len(data) // 2])
    raise OSError(5, "Input/output error")
w._write_all = torn
w.os.ftruncate = lambda fd, size: (_ for _ in ()).throw(OSError(5, "Input/output error"))
rec("two", 5)
w._write_all = real
rec("three", 5)
assert t.close(10)
print(t.stats()["written"], t.stats()["dropped"])
"""
    home = tmp_path / "home"
    run = _run(code, str(home), HOUR.isoformat())
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["10", "5"]
    result = load_window(
        home / "warehouse.duckdb", home / "landing" / "calls", HOUR, HOUR + timedelta(hours=1)
    )
    assert result.rejected_by_reason == {"truncated_line": 1}
    ids = {row[0] for row in query(home / "warehouse.duckdb", "select event_id from raw.llm_calls")}
    # the lines of the failed batch that reached the disk whole load too (the tracker had
    # counted the batch as dropped); none is glued to another
    torn = {i for i in ids if i.startswith("two-")}
    assert ids - torn == {f"one-{i}" for i in range(5)} | {f"three-{i}" for i in range(5)}
    assert torn < {f"two-{i}" for i in range(5)} and len(ids) == result.loaded


# An application with 200 events queued (the writer would only write them in an hour).
QUEUED = """
import faulthandler, signal, sys, time
from datetime import datetime, timedelta
faulthandler.register(signal.SIGUSR1)  # the test asks for the threads' stacks if it hangs
{before}
from spendwatch.tracker import Tracker
t = Tracker(home=sys.argv[1], feature="term", writer_id="term", flush_interval=3600)
at = datetime.fromisoformat(sys.argv[2])
for i in range(200):
    t.record(provider="openai", model="m", input_tokens=1, output_tokens=1,
             event_id=f"t-{{i}}", occurred_at=at + timedelta(seconds=i))
print(t.stats()["pending"], t.stats()["written"], flush=True)
{after}
"""


def _terminate(home: Path, before: str = "", after: str = "time.sleep(60)") -> tuple:
    proc = subprocess.Popen(
        [sys.executable, "-c", QUEUED.format(before=before, after=after), str(home),
         HOUR.isoformat()],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout.readline().split() == ["200", "0"]  # queued, nothing on disk yet
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # say where it hangs, for whoever reads the failure
        proc.send_signal(signal.SIGUSR1)
        time.sleep(1)
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running 30 s after SIGTERM; its threads:\n{err}") from None
    return proc.returncode, out, err


def _landed(home: Path) -> list[str]:
    return [
        json.loads(line)["event_id"]
        for path in sorted((home / "landing" / "calls").glob(ALL_FILES))
        for line in path.read_text().splitlines()
    ]


def test_sigterm_writes_the_queued_events_and_still_terminates(tmp_path: Path):
    """SIGTERM with the default disposition. Before: the process died at once and its 200
    queued events were lost (atexit does not run on a signal). Now they are written first, and
    the process still ends by SIGTERM (its exit status says so)."""
    code, _, err = _terminate(tmp_path / "home")
    assert code == -signal.SIGTERM, err
    assert sorted(_landed(tmp_path / "home")) == sorted(f"t-{i}" for i in range(200))


def test_sigterm_chains_to_the_applications_own_handler(tmp_path: Path):
    """The application installed its own SIGTERM handler before the tracker (one that leaves
    with os._exit, as servers' fast-shutdown handlers do). Before: the handler ran and the
    queued events were lost. Now the tracker flushes, then calls the application's handler,
    which still decides how the process ends."""
    before = (
        "import os\n"
        "def handler(signum, frame):\n"
        "    print('app handler', signum, flush=True)\n"
        "    os._exit(7)\n"
        "signal.signal(signal.SIGTERM, handler)"
    )
    code, out, err = _terminate(tmp_path / "home", before=before)
    assert code == 7, err
    assert f"app handler {int(signal.SIGTERM)}" in out
    assert len(_landed(tmp_path / "home")) == 200


def test_an_application_that_keeps_running_after_sigterm_keeps_recording(tmp_path: Path):
    """A graceful shutdown: the application's handler only sets a flag, finishes its work
    (recording one more call) and exits normally. The tracker must flush without closing, so
    the call recorded after the signal is written too (201 events, exit status 0)."""
    before = "stop = []\nsignal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))"
    after = (
        "while not stop:\n"
        "    time.sleep(0.01)\n"
        "t.record(provider='openai', model='m', input_tokens=1, output_tokens=1,\n"
        "         event_id='after', occurred_at=at)"
    )
    code, _, err = _terminate(tmp_path / "home", before=before, after=after)
    assert code == 0, err
    assert sorted(_landed(tmp_path / "home")) == sorted([*(f"t-{i}" for i in range(200)), "after"])


FORK = """
import os, sys, threading, time
from datetime import datetime, timedelta
home, at = sys.argv[1], datetime.fromisoformat(sys.argv[2])
os.environ["SPENDWATCH_HOME"] = home
from spendwatch.tracker import Tracker, default_tracker
import spendwatch.tracker.wrappers as wrappers
import spendwatch.tracker.writer as writer

def rec(tracker, event_id):
    tracker.record(provider="openai", model="m", input_tokens=1, output_tokens=1,
                   event_id=event_id, occurred_at=at)

t = Tracker(home=home, feature="fork", writer_id="fork", flush_interval=3600)
for i in range(50):
    rec(t, f"parent-{i}")  # still queued in the parent when it forks
held, release = threading.Event(), threading.Event()
def inside_the_tracker():  # another thread is inside the tracker at the moment of the fork
    with wrappers._default_lock, t._lock, writer._FILE_LOCK:
        held.set()
        release.wait()
threading.Thread(target=inside_the_tracker, daemon=True).start()
held.wait()
pid = os.fork()
if pid == 0:
    try:
        for i in range(20):
            rec(t, f"child-{i}")
        rec(default_tracker(), "child-default")
        os._exit(0 if t.flush(10) and default_tracker().flush(10) else 3)
    except BaseException:
        os._exit(4)
release.set()
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    status = "hung"
assert t.close(10)
print(pid, os.getpid(), status)
"""


def test_fork_while_another_thread_holds_the_trackers_locks(tmp_path: Path):
    """A process forks while another thread is inside the tracker (holding the default
    tracker's lock, a tracker's counter lock and the file lock). Before: the child's first
    call through `default_tracker()` (what `track_openai()` uses) waited forever on the lock
    copied in its held state. Now every lock is new in the child: it records and flushes, its
    events land in its own file, and the parent's queued events are written once, by the
    parent."""
    home = tmp_path / "home"
    run = _run(FORK, str(home), HOUR.isoformat())
    assert run.returncode == 0, run.stderr
    child, parent, status = run.stdout.split()
    assert status == "0", f"the child ended with {status} (hung = deadlocked on a lock)"
    folder = hour_dir(home / "landing" / "calls", HOUR)
    by_file = {
        path.name: sorted(json.loads(line)["event_id"] for line in path.read_text().splitlines())
        for path in folder.glob("*.jsonl")
    }
    assert by_file.pop(f"fork-{parent}.jsonl") == sorted(f"parent-{i}" for i in range(50))
    assert by_file.pop(f"fork-{child}.jsonl") == sorted(f"child-{i}" for i in range(20))
    assert list(by_file.values()) == [["child-default"]]
    assert next(iter(by_file)).endswith(f"-{child}.jsonl")


# ------------------------------------------------------------------------------------------
# item 9: paths and messages
# ------------------------------------------------------------------------------------------


def test_generate_ingest_and_benchmark_under_a_folder_named_o_brien(tmp_path: Path, capsys):
    """A home under `o'brien/`. Before: `spendwatch generate` (and so `spendwatch demo`)
    failed with a DuckDB parser error ("unterminated string literal"), as did the benchmark:
    they pasted the path into the SQL text. Now paths are parameters. (The end-to-end
    materialization under `o'brien/` is tests/test_pipeline.py's fixture.)"""
    from benchmarks.bench_pipeline import run as bench_run

    obrien = tmp_path / "o'brien"
    with isolated_home(obrien / "home") as p:
        code = main([
            "generate", "--start", HOUR.isoformat(), "--days", "1", "--calls-per-day", "400",
            "--seed", "3", "--incidents", "none",
        ])  # fmt: skip
        assert code == 0, capsys.readouterr()
        written = sum(1 for _ in p.landing.glob(ALL_FILES))
        assert written >= 20
        result = load_window(p.warehouse, p.landing, HOUR, HOUR + timedelta(days=1))
        assert result.files == written and result.rejected == 0 and result.loaded > 300
    floor_and_ingest = bench_run(700, tmp_dir=str(obrien))
    assert [r["name"] for r in floor_and_ingest] == ["generate", "ingest"]
    assert all(r["value"] > 0 for r in floor_and_ingest)


def _unwritable(tmp_path: Path) -> Path:
    """A home nobody may create: a read-only folder, or (as root, whom chmod does not stop)
    a place in /sys, where even root cannot make folders."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder / "home"
    target = Path("/sys/spendwatch-test-home")
    try:
        target.mkdir()
    except PermissionError:
        return target
    except OSError:
        pass
    else:
        target.rmdir()
    pytest.skip("no unwritable place found for this user")


def _cli(*args: str, home: Path, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPENDWATCH_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           **env_vars}  # fmt: skip
    return subprocess.run(
        [*CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def _one_line_error(run: subprocess.CompletedProcess) -> str:
    output = (run.stdout + run.stderr).strip()
    assert "Traceback" not in output, output
    assert run.returncode != 0, output
    lines = output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


GENERATE = ("generate", "--start", HOUR.isoformat(), "--days", "1", "--calls-per-day", "100")


def test_unwritable_home_is_one_line(tmp_path: Path):
    """Before: a PermissionError traceback. Now: one line naming the path and the fix."""
    home = _unwritable(tmp_path)
    for args in (GENERATE, ("demo", "--days", "1")):
        run = _cli(*args, home=home)
        line = _one_line_error(run)
        assert run.returncode == 2
        assert "permission denied" in line and "SPENDWATCH_HOME" in line


def test_home_under_a_file_is_one_line(tmp_path: Path):
    """Before: a NotADirectoryError traceback. Now: one line saying a file is in the way."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    run = _cli(*GENERATE, home=blocker / "home")
    line = _one_line_error(run)
    assert run.returncode == 2
    assert "a file is in the way" in line and str(blocker) in line


def test_materialize_without_landing_files_says_so(tmp_path: Path):
    """Before: the run succeeded and exited 0 having loaded nothing (and replaced the range's
    hours with nothing). Now it refuses before starting a run, names the range and the folder,
    and exits 1."""
    home = tmp_path / "home"
    run = _cli("materialize", "--start", "2026-01-05T00:00Z", "--end", "2026-01-05T06:00Z",
               home=home)  # fmt: skip
    line = _one_line_error(run)
    assert run.returncode == 1
    assert "no landing files from 2026-01-05 00:00 to 2026-01-05 06:00 UTC" in line
    assert str(home / "landing" / "calls") in line
    assert not (home / "warehouse.duckdb").exists()


HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("create table if not exists notebook as select 1 as x")
print("locked", flush=True)
time.sleep(120)
"""


def test_a_warehouse_held_by_another_process_is_named_in_one_line(tmp_path: Path):
    """An analyst's notebook holds the warehouse. Before: the Dagster run started, its ingest
    failed on "Could not set lock" and the CLI printed only "run ... FAILED" and a log path.
    Now it says it waits for the holder (named by PID), and when the holder keeps the file
    past SPENDWATCH_WAREHOUSE_WAIT_SECONDS it refuses before the run in one line, exit 3."""
    home = tmp_path / "home"
    generate(home / "landing" / "calls", HOUR, 1, 100, seed=2, incidents=[])
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(home / "warehouse.duckdb")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        end = HOUR + timedelta(hours=3)
        run = _cli("materialize", "--start", HOUR.isoformat(), "--end", end.isoformat(),
                   home=home, SPENDWATCH_WAREHOUSE_WAIT_SECONDS="2")  # fmt: skip
        waiting, error = (run.stdout + run.stderr).strip().splitlines()
        assert "Traceback" not in run.stdout + run.stderr and run.returncode == 3
        assert (
            waiting.startswith("the warehouse is in use by ") and f"(PID {holder.pid})" in waiting
        )
        assert error.startswith("error: the warehouse ") and f"(PID {holder.pid})" in error
        assert "for more than 2 s" in error and str(home / "warehouse.duckdb") in error
    finally:
        holder.kill()
        holder.wait(30)
        holder.stdout.close()


def test_lock_conflicts_raised_anywhere_in_a_command_are_one_line():
    """The same message when the lock error comes from inside a command (a report's or a
    summary's DuckDB connection, a run that met the lock after the pre-check), not only from
    the pre-check; an error the user cannot fix keeps its traceback (no message for it)."""
    from spendwatch.cli import LOCKED, lock_conflict, user_error

    message = (
        'IO Error: Could not set lock on file "/data/o\'brien/warehouse.duckdb": Conflicting '
        "lock is held in /usr/bin/python3.12 (PID 4242). See also https://duckdb.org/docs"
    )
    expected = (
        "the warehouse /data/o'brien/warehouse.duckdb is in use by /usr/bin/python3.12 "
        "(PID 4242): wait until it finishes (a materialization, `make ui`, a "
        "notebook or a report holding it open) or stop it, then run the command again"
    )
    assert user_error(duckdb.IOException(message)) == (expected, LOCKED)
    # dbt (through dagster-dbt) meeting the lock in the seeds run quotes DuckDB's message
    wrapped = RuntimeError(f"The dbt CLI process failed\nErrors parsed from dbt logs:\n{message}")
    assert user_error(wrapped) == (expected, LOCKED)
    # a failed run's first error, as orchestration.runner words it
    assert lock_conflict(f"raw_llm_calls: _duckdb.IOException: {message}") == expected
    assert user_error(duckdb.IOException("IO Error: disk I/O error")) is None
    assert user_error(KeyError("a bug")) is None
