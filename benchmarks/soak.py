"""`make soak`: everything that shares one warehouse, at once, for a few minutes; then prove that
no line was lost or loaded twice.

Workers, each its own process, as on a real machine:
- schedule: `spendwatch materialize` of one hour after another (what the :05 schedule does);
- sensor:   the real late-data sensor evaluated against the instance, its run requests
            materialized (reloads of hours whose files changed, lost hours);
- cli:      a hand-run `spendwatch materialize` of six hours at once, again and again;
- readers:  two analysts' notebooks opening the warehouse read-only and querying it;
- files:    this process, changing the landing folder meanwhile: appending lines to files
            already loaded, adding plain and gzipped files, broken lines, truncated gzip files,
            and pruning whole hour folders that are loaded as they are and older than the
            sensor's look-back (the documented retention policy).

At the end one catch-up run loads every hour (what the schedule and the sensor converge to),
then the soak checks, from a ledger of every line it ever wrote:
- every valid event is in raw.llm_calls exactly once (in a truncated gzip: at most once);
- no event_id is there twice;
- every broken line is in raw.llm_calls_rejected with a reason;
- lines read = rows loaded + rows rejected for every file of the load log;
- pruned hours kept their rows.
It exits non-zero when any of that fails. Usage: `python -m benchmarks.soak [--minutes 4]`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from spendwatch.landing import hour_dir, landing_file

HOURS = 12
CALLS_PER_FILE = 40


def event(event_id: str, hour: datetime, i: int) -> str:
    return json.dumps({
        "event_id": event_id, "occurred_at": f"{hour:%Y-%m-%dT%H}:{i % 60:02d}:{i % 59:02d}Z",
        "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 200 + i,
        "output_tokens": 20, "feature": random.choice(["smart-reply", "summarization"]),
    })  # fmt: skip


class Files:
    """The landing folder's one writer in the soak, keeping a ledger of every line."""

    def __init__(self, landing: Path, hours: list[datetime]) -> None:
        self.landing, self.hours = landing, hours
        self.valid: dict[str, Path] = {}  # event_id -> file
        self.broken: list[Path] = []  # one entry per broken line written
        self.truncated: set[Path] = set()
        self.pruned: set[datetime] = set()
        self.serial = 0
        self.actions: Counter = Counter()

    def _lines(self, hour: datetime, path: Path, n: int) -> list[str]:
        lines = []
        for i in range(n):
            self.serial += 1
            event_id = f"soak-{self.serial}"
            self.valid[event_id] = path
            lines.append(event(event_id, hour, i))
        return lines

    def new_file(self, hour: datetime, gz: bool = False) -> None:
        name = f"w{self.serial}{'.gz' if gz else ''}"
        path = landing_file(self.landing, hour, name.removesuffix(".gz"))
        if gz:
            path = path.with_name(path.name + ".gz")
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(line + "\n" for line in self._lines(hour, path, CALLS_PER_FILE))
        if gz:
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)
        self.actions["new gzip file" if gz else "new file"] += 1

    def append(self, hour: datetime) -> None:
        files = sorted(p for p in hour_dir(self.landing, hour).glob("*.jsonl"))
        if not files:
            return self.new_file(hour)
        path = random.choice(files)
        with path.open("a") as f:
            f.write("".join(line + "\n" for line in self._lines(hour, path, 5)))
        self.actions["append to a file"] += 1

    def broken_line(self, hour: datetime) -> None:
        path = landing_file(self.landing, hour, f"broken{self.serial}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.serial += 1
        path.write_text('{"event_id": "half a line\n')
        self.broken.append(path)
        self.actions["broken line"] += 1

    def truncated_gzip(self, hour: datetime) -> None:
        path = landing_file(self.landing, hour, f"cut{self.serial}")
        path = path.with_name(path.name + ".gz")
        path.parent.mkdir(parents=True, exist_ok=True)
        data = gzip.compress("".join(f"{line}\n" for line in self._lines(hour, path, 60)).encode())
        path.write_bytes(data[: len(data) // 2])
        self.truncated.add(path)
        self.actions["truncated gzip"] += 1

    def prune(self, loaded: dict[datetime, dict[str, int]]) -> None:
        """Retention, as documented: delete a whole hour folder, only once every file in it is
        loaded as it is now (the load log has it at its present size)."""

        def loaded_as_is(hour: datetime) -> bool:
            files = [p for p in hour_dir(self.landing, hour).iterdir() if p.is_file()]
            return bool(files) and all(loaded.get(hour, {}).get(str(p)) == p.stat().st_size
                                       for p in files)  # fmt: skip

        candidates = [h for h in self.hours[: HOURS // 2]  # the old half only
                      if h not in self.pruned and loaded_as_is(h)]  # fmt: skip
        if candidates:
            hour = candidates[0]
            shutil.rmtree(hour_dir(self.landing, hour), ignore_errors=True)
            self.pruned.add(hour)
            self.actions["prune a loaded hour"] += 1

    def step(self, loaded_hours: dict[datetime, dict[str, int]]) -> None:
        live = [h for h in self.hours if h not in self.pruned]
        hour = random.choice(live)
        action = random.choices(
            [self.append, self.new_file, lambda h: self.new_file(h, gz=True), self.broken_line,
             self.truncated_gzip, lambda h: self.prune(loaded_hours)],
            weights=[5, 2, 2, 1, 1, 1],
        )[0]  # fmt: skip
        action(hour)


def spendwatch(home: Path, *args: str, log) -> subprocess.Popen:
    env = {**os.environ, "SPENDWATCH_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "spendwatch.cli", *args], env=env,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip


WORKER = r"""
import sys, time, random, subprocess, os
from datetime import datetime, timedelta, UTC
kind, home, hours, until = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
hours = [datetime.fromisoformat(h) for h in hours.split(",")]
ranges = [hours[: len(hours) // 2], hours[len(hours) // 2 :]]
env = {**os.environ, "SPENDWATCH_HOME": home}
def materialize(a, b):
    p = subprocess.run([sys.executable, "-m", "spendwatch.cli", "materialize", "--start",
                        a.isoformat(), "--end", b.isoformat()], env=env, capture_output=True,
                       text=True)
    print(f"{kind} materialize {a:%H}-{b:%H} -> {p.returncode} "
          f"{(p.stdout + p.stderr).strip().splitlines()[-1:] }", flush=True)
i = 0
while time.time() < until:
    if kind == "schedule":
        h = hours[i % len(hours)]
        materialize(h, h + timedelta(hours=1))
    elif kind == "cli":
        block = ranges[i % 2]
        materialize(block[0], block[-1] + timedelta(hours=1))
    elif kind == "sensor":
        import dagster as dg
        from orchestration.defs.resources import SpendwatchHome
        from orchestration.defs.sensors import late_landing_files
        from orchestration.defs.project import PARTITIONS, run_window
        ctx = dg.build_sensor_context(instance=dg.DagsterInstance.get(),
                                      resources={"spendwatch": SpendwatchHome()})
        result = late_landing_files(ctx)
        if isinstance(result, list):
            for r in result[:3]:
                days = PARTITIONS.time_window_for_partition_key(r.partition_key)
                materialize(*run_window(r.tags, days))
        else:
            print("sensor:", result.skip_message[:100], flush=True)
            time.sleep(5)
    elif kind == "reader":
        from pathlib import Path
        from spendwatch.warehouse import open_warehouse, WarehouseMissing
        try:
            con = open_warehouse(Path(home) / "warehouse.duckdb", read_only=True, wait_seconds=60)
        except WarehouseMissing:
            time.sleep(1); continue
        try:
            con.execute("select count(*) from raw.llm_calls").fetchone()
            time.sleep(random.uniform(0.2, 1.5))  # an analyst looks at the result
        except Exception as exc:  # before the first load there is nothing to query yet
            print("reader:", str(exc).splitlines()[0][:100], flush=True)
        finally:
            con.close()
        time.sleep(random.uniform(0.5, 3))
    i += 1
"""


def loaded_hours(warehouse: Path) -> dict[datetime, dict[str, int]]:
    """hour -> {file: size loaded}, from the load log (empty while the warehouse is busy)."""
    from spendwatch.warehouse import WarehouseBusy, WarehouseMissing, open_warehouse

    try:
        con = open_warehouse(warehouse, read_only=True, wait_seconds=5)
    except (WarehouseBusy, WarehouseMissing):
        return {}
    try:
        sql = "select partition_hour, source_file, size_bytes from raw.load_log"
        rows = con.execute(sql).fetchall()
    except Exception:
        return {}
    finally:
        con.close()
    loaded: dict[datetime, dict[str, int]] = {}
    for hour, path, size in rows:
        loaded.setdefault(hour.replace(tzinfo=UTC), {})[path] = size
    return loaded


def verify(warehouse: Path, files: Files) -> list[str]:
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    problems = []
    try:
        counts = dict(con.execute(
            "select event_id, count(*) from raw.llm_calls group by 1").fetchall())  # fmt: skip
        twice = [e for e, n in counts.items() if n > 1]
        if twice:
            problems.append(f"{len(twice)} event ids loaded more than once, e.g. {twice[:3]}")
        missing = [e for e, path in files.valid.items()
                   if path not in files.truncated and counts.get(e, 0) != 1]  # fmt: skip
        if missing:
            problems.append(f"{len(missing)} valid events not loaded exactly once, e.g. "
                            f"{missing[:3]} in {files.valid[missing[0]]}")  # fmt: skip
        rejected = Counter(r[0] for r in con.execute(
            "select source_file from raw.llm_calls_rejected").fetchall())  # fmt: skip
        for path in files.broken:
            if rejected[str(path)] < 1 and hour_of(path) not in files.pruned:
                problems.append(f"the broken line of {path} is not quarantined")
        unbalanced = con.execute(
            "select source_file, lines, loaded, rejected from raw.load_log "
            "where lines <> loaded + rejected").fetchall()  # fmt: skip
        if unbalanced:
            problems.append(f"{len(unbalanced)} files where lines <> loaded + rejected: "
                            f"{unbalanced[:3]}")  # fmt: skip
        facts = con.execute(
            "select count(*), count(distinct event_id) from raw.llm_calls").fetchone()  # fmt: skip
        in_cut = sum(1 for p in files.valid.values() if p in files.truncated)
        print(f"raw.llm_calls: {facts[0]:,} rows, {facts[1]:,} distinct events; ledger: "
              f"{len(files.valid):,} valid lines written ({in_cut:,} "
              f"of them in {len(files.truncated)} truncated gzip files), "
              f"{len(files.broken)} broken lines, {len(files.pruned)} hours pruned")  # fmt: skip
    finally:
        con.close()
    return problems


def hour_of(path: Path) -> datetime:
    date, hour = path.parent.parent.name.split("=")[1], path.parent.name.split("=")[1]
    return datetime.fromisoformat(f"{date}T{hour}:00:00+00:00")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the soak's home afterwards")
    args = parser.parse_args()
    random.seed(args.seed)
    home = Path(tempfile.mkdtemp(prefix="spendwatch-soak-"))
    # half the hours are older than the sensor's look-back (where the retention policy lets
    # whole hours be pruned), half are recent (where the sensor reloads changed files)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(days=9)
    recent = now - timedelta(hours=HOURS // 2 + 3)
    hours = [start + timedelta(hours=i) for i in range(HOURS // 2)]
    hours += [recent + timedelta(hours=i) for i in range(HOURS // 2)]
    files = Files(home / "landing" / "calls", hours)
    for hour in hours:
        files.new_file(hour)
    until = time.time() + args.minutes * 60
    logs = home / "soak-logs"
    logs.mkdir()
    workers = []
    from orchestration.runner import open_instance
    from spendwatch.config import export_environment, paths

    export_environment(paths(home))  # the instance's config and DAGSTER_HOME, as the CLI does
    open_instance(paths(home))
    for kind in ("schedule", "sensor", "cli", "reader", "reader"):
        log = (logs / f"{kind}-{len(workers)}.log").open("w")
        env = {**os.environ, "SPENDWATCH_HOME": str(home)}
        workers.append((kind, log, subprocess.Popen(
            [sys.executable, "-c", WORKER, kind, str(home),
             ",".join(h.isoformat() for h in hours), str(until)],
            env=env, stdout=log, stderr=subprocess.STDOUT)))  # fmt: skip
    print(f"soak: {args.minutes:g} minutes, {HOURS} hours, home {home}")
    while time.time() < until:
        files.step(loaded_hours(home / "warehouse.duckdb"))
        time.sleep(random.uniform(1, 3))
    for _, _, proc in workers:
        proc.wait()
    print("workers done; catch-up run over every hour ...")
    code = 0
    with (logs / "catch-up.log").open("w") as log:
        for block in (hours[: HOURS // 2], hours[HOURS // 2 :]):
            code = code or spendwatch(home, "materialize", "--start", block[0].isoformat(),
                                      "--end", (block[-1] + timedelta(hours=1)).isoformat(),
                                      log=log).wait()  # fmt: skip
    runs = Counter()
    refusals = []
    for path in sorted(logs.glob("*.log")):
        for line in path.read_text().splitlines():
            if " materialize " in line:
                runs[line.split(" -> ")[1].split()[0]] += 1
                if " -> 0 " not in line:
                    refusals.append(line)
    print(f"file actions: {dict(files.actions)}")
    print(f"materialize runs by exit code: {dict(runs)}; catch-up exit {code}")
    for line in refusals[:5]:
        print("  not 0:", line)
    problems = verify(home / "warehouse.duckdb", files) if code == 0 else ["catch-up run failed"]
    for problem in problems:
        print("PROBLEM:", problem)
    print("soak: OK" if not problems else "soak: FAILED", f"(logs in {logs})")
    if not args.keep and not problems:
        shutil.rmtree(home, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
