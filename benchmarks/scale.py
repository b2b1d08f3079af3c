"""`make bench`: spendwatch at scale against the DuckDB floor and a pandas peer, in one run.

Generates N calls (default 10,000,000 over 100 days, 5 features, 5 models, the generator's
default incidents) into a fresh spendwatch home under `.bench/`, then measures — each step in a
subprocess of its own, for its wall time and its peak RSS:

- ingest: landing lines per second through the ingest (`load_window`, all of the history in one
  window) against DuckDB's `read_json` of the same files into a table with no validation;
- full build: `spendwatch materialize --start A --end B` over the whole history, as a user runs
  it (Dagster, seeds, ingest, every dbt model, checks, detectors), against the floor
  (benchmarks/floor.sql: one hand-written DuckDB script that reads the same files, prices every
  call and builds the hourly feature aggregate with a 7-day trailing mean and stddev) and
  against the same work written in pandas (benchmarks/peer_pandas.py);
- one incremental hour, what the hourly schedule does (`spendwatch materialize --start H --end
  H+1`, the hour's files just landed), on the full history and on a second home that holds only
  the last week of the same files; the ratio of the two says whether an hourly run grows with
  history;
- the size of the warehouse file and of the Dagster instance after the full build.

Times of spendwatch are the whole command, interpreter, Dagster and dbt start-up included (what
a user waits for); times of the floor, the read_json floor, the ingest and pandas are the work
inside their process, from the first read to the last write. Peak RSS is the process tree's: the
larger of the sampled sum over the step's processes (every 0.2 s, from /proc) and the largest
single process (wait4). Nothing of N is held in this process: the generator writes a week at a
time and every step streams from files.

Run: `python -m benchmarks.scale --size default|small|tiny`; the table is printed and written
into docs/benchmarks.md between the markers below (`--docs PATH` elsewhere, `--docs ''` not).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds"
FLOOR_SQL = Path(__file__).with_name("floor.sql")
DOCS = REPO / "docs" / "benchmarks.md"
BEGIN = "<!-- make bench: begin (written by benchmarks/scale.py; edit outside the markers) -->"
END = "<!-- make bench: end -->"
GIB = 1024**3


@dataclass(frozen=True)
class Size:
    name: str
    calls: int
    hours: int  # of history
    short_hours: int  # the history of the second home (the "1 week" case)
    repeats: int  # runs of the cheap steps (the floor script, read_json); the median is reported
    heavy_repeats: int  # runs of the ingest and pandas (the full build runs once: fresh home)
    incremental_hours: int  # incremental runs per home (each a new hour); the median is reported

    @property
    def calls_per_day(self) -> int:
        return round(self.calls * 24 / self.hours)

    @property
    def span(self) -> str:
        return span(self.hours)

    @property
    def short_span(self) -> str:
        return span(self.short_hours)


def span(hours: int) -> str:
    return f"{hours // 24} d" if hours % 24 == 0 else f"{hours} h"


SIZES = {
    "default": Size("default", 10_000_000, 100 * 24, 7 * 24, 3, 1, 3),
    "small": Size("small", 500_000, 14 * 24, 7 * 24, 3, 1, 3),
    # the smoke test's: every step once, as few hours as give each its row (a spendwatch run
    # costs tens of seconds of start-up and bookkeeping whatever its size)
    "tiny": Size("tiny", 20_000, 6, 2, 1, 1, 1),
}

#: the generator writes this many days per call (its arrays for a week of 100k calls a day are
#: a few hundred MB; all of N at once would not be)
CHUNK_DAYS = 7


# ---------------------------------------------------------------------------------------------
# measuring a subprocess


@dataclass
class Measured:
    seconds: float  # wall time of the whole subprocess
    peak_rss: int  # bytes
    result: dict = field(default_factory=dict)  # what a step printed (its inner timing)


def _children(pid: int) -> list[int]:
    """Every live descendant of `pid` (Linux /proc; empty elsewhere)."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def measure(argv: list[str], env: dict, log: Path, memory_cap: int | None = None) -> Measured:
    """Run `argv` to the end; its wall time, the peak RSS of its process tree, and the JSON
    object on its last stdout line if any. Fails with the log's tail when the command fails.
    `memory_cap` (bytes of address space) makes a step that needs more fail with MemoryError
    rather than wake the kernel's OOM killer on a shared machine."""
    out = log.with_suffix(".out")

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_cap, memory_cap))

    with out.open("w") as stdout, log.open("a") as stderr:
        began = time.perf_counter()
        proc = subprocess.Popen(
            argv, env=env, cwd=REPO, stdout=stdout, stderr=stderr,
            preexec_fn=cap if memory_cap else None,
        )  # fmt: skip
        peak, done = [0], threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                tree = [proc.pid, *_children(proc.pid)]
                peak[0] = max(peak[0], sum(_rss(pid) for pid in tree))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - began
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    text = out.read_text()
    with log.open("a") as f:
        f.write(text)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise StepFailed(f"{' '.join(argv[1:4])} exited with {proc.returncode}:\n{tail}")
    lines = [line for line in text.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    return Measured(seconds, max(peak[0], usage.ru_maxrss * 1024), result)


class StepFailed(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------
# the steps that run in their own process: `python -m benchmarks.scale step NAME JSON`


def _step_read_json(args: dict) -> dict:
    """The ingest's floor as benchmarks/bench_pipeline.py measures it, into a database file
    (where the ingest writes)."""
    import duckdb

    from benchmarks.bench_pipeline import _read_floor

    began = time.perf_counter()
    con = duckdb.connect(args["database"])
    _read_floor(con, Path(args["landing"]))
    rows = con.execute("select count(*) from floor").fetchone()[0]
    con.close()
    return {"seconds": time.perf_counter() - began, "rows": rows}


def _step_ingest(args: dict) -> dict:
    from orchestration.lib.ingest import load_window

    start, end = datetime.fromisoformat(args["start"]), datetime.fromisoformat(args["end"])
    began = time.perf_counter()
    loaded = load_window(Path(args["database"]), Path(args["landing"]), start, end)
    return {
        "seconds": time.perf_counter() - began,
        "lines": loaded.lines,
        "loaded": loaded.loaded,
        "rejected": loaded.rejected,
    }


def _step_floor(args: dict) -> dict:
    import duckdb

    began = time.perf_counter()
    con = duckdb.connect(args["database"])
    con.execute("set enable_progress_bar = false")
    con.execute("set TimeZone = 'UTC'")
    for name, value in (
        ("landing_glob", args["glob"]),
        ("prices_csv", str(SEEDS / "model_prices.csv")),
        ("aliases_csv", str(SEEDS / "model_aliases.csv")),
    ):
        con.execute(f"set variable {name} = ?", [value])
    con.execute(FLOOR_SQL.read_text())
    rows, calls = con.execute("select count(*), sum(calls) from floor_hourly").fetchone()
    con.close()
    return {"seconds": time.perf_counter() - began, "rows": rows, "calls": int(calls)}


def _step_pandas(args: dict) -> dict:
    from benchmarks.peer_pandas import hourly_feature_cost

    began = time.perf_counter()
    hourly = hourly_feature_cost(Path(args["landing"]), SEEDS)
    seconds = time.perf_counter() - began
    import duckdb  # keep the result for the comparison (not timed)

    con = duckdb.connect(args["database"])
    con.register("peer", hourly)
    con.execute("create or replace table pandas_hourly as select * from peer")
    con.close()
    return {"seconds": seconds, "rows": len(hourly), "calls": int(hourly["calls"].sum())}


STEPS = {
    "read_json": _step_read_json,
    "ingest": _step_ingest,
    "floor": _step_floor,
    "pandas": _step_pandas,
}


# ---------------------------------------------------------------------------------------------
# the run


@dataclass
class Plan:
    size: Size
    start: datetime  # first hour of the history
    end: datetime  # end of the history (exclusive) = the first incremental hour
    short_start: datetime  # first hour of the second home's history

    @property
    def incremental(self) -> list[datetime]:
        return [self.end + timedelta(hours=i) for i in range(self.size.incremental_hours)]


def plan(size: Size, now: datetime | None = None) -> Plan:
    """History [start, end) and the incremental hours after it, all complete hours in the
    past: the last incremental hour ends at the current hour."""
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    end = now - timedelta(hours=size.incremental_hours)
    start = end - timedelta(hours=size.hours)
    return Plan(size, start, end, end - timedelta(hours=size.short_hours))


def _hour_dirs(landing: Path) -> dict[datetime, Path]:
    found = {}
    for folder in landing.glob("date=*/hour=*"):
        day, hour = folder.parent.name.removeprefix("date="), folder.name.removeprefix("hour=")
        found[datetime.fromisoformat(f"{day}T{hour}:00+00:00")] = folder
    return found


def _link_hours(hours: dict[datetime, Path], landing: Path) -> None:
    """Hard-link hour folders' files into another landing folder (no copy, same bytes)."""
    for folder in hours.values():
        target = landing / folder.parent.name / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for file in folder.iterdir():
            try:
                os.link(file, target / file.name)
            except OSError:  # another file system
                shutil.copy2(file, target / file.name)


def generate_landing(p: Plan, generated: Path, console) -> int:
    """Write the history and the incremental hours, a week at a time, with the generator's
    default incidents over the whole span. Returns the number of calls written."""
    from spendwatch.generator import default_incidents, generate

    # whole days from the first hour, past the incremental hours (the rest is dropped)
    total_days = -(-(p.size.hours + p.size.incremental_hours) // 24)
    # placed as if the window ended with the last incremental hour: its two fresh incidents
    # (a model fallback) fall in the incremental hours, the others in the history's last days
    last = p.incremental[-1] + timedelta(hours=1)
    incidents = default_incidents(last - timedelta(days=total_days), total_days)
    calls, day = 0, 0
    while day < total_days:
        days = min(CHUNK_DAYS, total_days - day)
        result = generate(
            generated, p.start + timedelta(days=day), days, p.size.calls_per_day,
            seed=1000 + day, incidents=incidents,
        )  # fmt: skip
        calls += result.calls
        day += days
        console.print(f"  generated {day}/{total_days} days ({calls:,} calls)")
    return calls


def spendwatch_env(home: Path) -> dict:
    """The environment the Makefile gives spendwatch, for the home `home`."""
    return {
        **os.environ,
        "SPENDWATCH_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "DBT_PROFILES_DIR": str(REPO),
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%MZ")


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


@dataclass
class Results:
    size: Size
    plan: Plan
    calls: int = 0
    generate_seconds: float = 0.0
    steps: dict[str, list[Measured]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    warehouse_bytes: int = 0
    dagster_bytes: int = 0
    agreement: dict = field(default_factory=dict)
    work: Path | None = None

    @property
    def warehouse(self) -> Path:
        return self.work / "home-full" / "warehouse.duckdb"

    @property
    def compare_db(self) -> Path:
        """The floor's (floor_hourly) and pandas' (pandas_hourly) results."""
        return self.work / "compare.duckdb"

    def add(self, name: str, m: Measured) -> None:
        self.steps.setdefault(name, []).append(m)

    def median(self, name: str, key: str | None = None) -> float:
        runs = self.steps.get(name, [])
        return statistics.median(m.result[key] if key else m.seconds for m in runs)

    def rss(self, name: str) -> int:
        return max((m.peak_rss for m in self.steps.get(name, [])), default=0)


def run(size: Size, work_root: Path | None = None, keep: bool = False, console=None) -> Results:
    """Every measurement of the table at `size`, in a fresh folder under `work_root` (default
    `<repo>/.bench`), removed at the end unless `keep`."""
    from rich.console import Console

    console = console or Console()
    work_root = work_root or REPO / ".bench"
    work_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{size.name}-", dir=work_root))
    p = plan(size)
    res = Results(size, p, work=work)
    try:
        _run(res, work, console)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return res


def _step(name: str, args: dict, log: Path, memory_cap: int | None = None) -> Measured:
    argv = [sys.executable, "-m", "benchmarks.scale", "step", name, json.dumps(args)]
    return measure(argv, {**os.environ, "PYTHONPATH": str(REPO)}, log, memory_cap)


def pandas_memory_cap() -> int:
    """What the pandas peer may map: 90 % of the machine's RAM, at most 24 GiB (the issue's
    budget for it); past that it fails with MemoryError and the table says so."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return min(int(ram * 0.9), 24 * GIB)


def _run(res: Results, work: Path, console) -> None:
    size, p = res.size, res.plan
    logs = work / "logs"
    logs.mkdir()
    console.print(
        f"[bold]make bench[/] size {size.name}: {size.calls:,} calls over {size.span} "
        f"({_iso(p.start)} to {_iso(p.end)}), work folder {work}"
    )
    generated = work / "generated"
    began = time.perf_counter()
    generate_landing(p, generated, console)
    res.generate_seconds = time.perf_counter() - began

    # The history goes to the full home's landing; the incremental hours wait in `arriving/`
    # until their runs (as files land in production); the rest of the last day is dropped.
    full, short = work / "home-full", work / "home-short"
    landing, arriving = full / "landing" / "calls", work / "arriving"
    for hour, folder in sorted(_hour_dirs(generated).items()):
        if hour < p.end:
            target = landing / folder.parent.name / folder.name
        elif hour in p.incremental:
            target = arriving / folder.parent.name / folder.name
        else:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        folder.rename(target)
    shutil.rmtree(generated)
    glob = str(landing / "*" / "*" / "*.jsonl")

    console.print("ingest and its read_json floor ...")
    for i in range(max(size.repeats, size.heavy_repeats)):
        db = work / f"read_json-{i}.duckdb"
        res.add(
            "read_json",
            _step(
                "read_json", {"database": str(db), "landing": str(landing)}, logs / "read_json.log"
            ),
        )
        db.unlink()
        if i >= size.heavy_repeats:
            continue
        db = work / f"ingest-{i}.duckdb"
        args = {
            "database": str(db),
            "landing": str(landing),
            "start": p.start.isoformat(),
            "end": p.end.isoformat(),
        }
        m = _step("ingest", args, logs / "ingest.log")
        res.add("ingest", m)
        db.unlink()
        seconds = (res.steps["read_json"][-1].result["seconds"], m.result["seconds"])
        console.print(f"  read_json: {_s(seconds[0])}, ingest: {_s(seconds[1])}")
    res.calls = res.steps["ingest"][0].result["lines"]

    console.print("the floor script ...")
    compare_db = res.compare_db
    for _ in range(size.repeats):
        m = _step("floor", {"database": str(compare_db), "glob": glob}, logs / "floor.log")
        res.add("floor", m)
        console.print(f"  floor: {_s(m.result['seconds'])}, {_gib(m.peak_rss)}")

    console.print("the pandas peer ...")
    for _ in range(size.heavy_repeats):
        try:
            args = {"database": str(compare_db), "landing": str(landing)}
            m = _step("pandas", args, logs / "pandas.log", pandas_memory_cap())
            res.add("pandas", m)
            console.print(f"  pandas: {_s(m.result['seconds'])}, {_gib(m.peak_rss)}")
        except StepFailed as exc:
            last = str(exc).strip().splitlines()[-1]
            cap = pandas_memory_cap() / GIB
            res.failures["pandas"] = (
                f"out of memory within {cap:.0f} GiB" if "MemoryError" in last else last[:120]
            )
            break

    def materialize(name: str, home: Path, start: datetime, end: datetime) -> None:
        spendwatch = str(Path(sys.executable).with_name("spendwatch"))
        argv = [spendwatch, "materialize", "--start", _iso(start), "--end", _iso(end)]
        m = measure(argv, spendwatch_env(home), logs / f"{name}.log")
        res.add(name, m)
        console.print(f"  {name} {_iso(start)}..{_iso(end)}: {_s(m.seconds)}, {_gib(m.peak_rss)}")

    console.print("full build (spendwatch materialize over the whole history) ...")
    materialize("build_full", full, p.start, p.end)
    res.warehouse_bytes = (full / "warehouse.duckdb").stat().st_size
    res.dagster_bytes = _du(full / "dagster")

    console.print(f"second home with the last {size.short_span} of the history, built ...")
    last_week = {h: f for h, f in _hour_dirs(landing).items() if h >= p.short_start}
    _link_hours(last_week, short / "landing" / "calls")
    materialize("build_short", short, p.short_start, p.end)

    console.print("incremental hours ...")
    for home in (full, short):
        _link_hours(_hour_dirs(arriving), home / "landing" / "calls")
    for hour in p.incremental:  # alternate the homes: both see the same machine load
        materialize("incremental_short", short, hour, hour + timedelta(hours=1))
        materialize("incremental_full", full, hour, hour + timedelta(hours=1))

    res.agreement = agreement(res.warehouse, res.compare_db, p.start, p.end)
    console.print(
        f"floor vs warehouse: {res.agreement['rows']:,} hour × feature × environment rows, "
        f"{res.agreement['mismatched_warehouse']} differ; pandas vs floor: "
        f"{res.agreement['mismatched_pandas']} differ"
    )


def agreement(warehouse: Path, compare_db: Path, start: datetime, end: datetime) -> dict:
    """Rows where the floor's hourly aggregate and the warehouse's marts.agg_hourly_feature_cost
    disagree on calls or on cost (by a micro-dollar or more), and where pandas disagrees with
    the floor (calls, cost, trailing mean and stddev), over the hours [start, end) with calls."""
    import duckdb

    con = duckdb.connect(str(compare_db), read_only=True)
    try:
        con.execute("attach ? as warehouse (read_only)", [str(warehouse)])
        lo, hi = start.replace(tzinfo=None), end.replace(tzinfo=None)
        rows, warehouse_rows, mismatched = con.execute(
            """
            with mart as (
                select hour_at, feature, environment, calls, cast(cost_usd as double) as cost_usd
                from warehouse.marts.agg_hourly_feature_cost
                where calls > 0 and hour_at >= $lo and hour_at < $hi
            ),
            floor as (select * from floor_hourly where hour_at >= $lo and hour_at < $hi)
            select
                count(floor.calls),
                count(mart.calls),
                count(*) filter (
                    where floor.calls is distinct from mart.calls
                    or not abs(floor.cost_usd - mart.cost_usd) < 1e-6
                )
            from floor
            full outer join mart using (hour_at, feature, environment)
            """,
            {"lo": lo, "hi": hi},
        ).fetchone()
        features, models = con.execute(
            "select count(distinct feature), count(distinct canonical_model) "
            "from warehouse.marts.fct_llm_calls"
        ).fetchone()
        pandas_mismatched = None
        if con.execute(
            "select count(*) from information_schema.tables where table_name = 'pandas_hourly'"
        ).fetchone()[0]:
            pandas_mismatched = con.execute(
                """
                select count(*) filter (
                    where floor.calls is distinct from peer.calls
                    or not abs(floor.cost_usd - peer.cost_usd) < 1e-6
                    or not coalesce(abs(floor.cost_usd_baseline - peer.cost_usd_baseline)
                                    < 1e-6, floor.cost_usd_baseline is null
                                    and peer.cost_usd_baseline is null)
                    or not coalesce(abs(floor.cost_usd_stddev - peer.cost_usd_stddev)
                                    < 1e-6, floor.cost_usd_stddev is null
                                    and peer.cost_usd_stddev is null)
                    or not coalesce(abs(floor.calls_stddev - peer.calls_stddev)
                                    < 1e-6 * greatest(1, floor.calls_stddev),
                                    floor.calls_stddev is null and peer.calls_stddev is null)
                )
                from floor_hourly as floor
                full outer join pandas_hourly as peer using (hour_at, feature, environment)
                """
            ).fetchone()[0]
    finally:
        con.close()
    return {
        "rows": rows,
        "warehouse_rows": warehouse_rows,
        "mismatched_warehouse": mismatched,
        "mismatched_pandas": pandas_mismatched,
        "features": features,
        "models": models,
    }


# ---------------------------------------------------------------------------------------------
# the table


@dataclass
class Row:
    measure: str
    value: str
    rss: str = ""
    target: str = ""
    met: bool | None = None  # None: no target

    @property
    def verdict(self) -> str:
        return "" if self.met is None else ("met" if self.met else "MISSED")


def _s(seconds: float) -> str:
    return f"{seconds:,.1f} s" if seconds >= 10 else f"{seconds:,.2f} s"


def _gib(n: int) -> str:
    return f"{n / GIB:,.2f} GiB" if n >= GIB / 4 else f"{n / 1024**2:,.0f} MiB"


def _x(ratio: float) -> str:
    """A ratio with two significant digits at least, never in exponent notation."""
    if ratio >= 10:
        return f"{ratio:,.0f}×"
    if ratio >= 1:
        return f"{ratio:.2f}×"
    digits = 1
    while ratio < 10 ** (-digits) and digits < 8:
        digits += 1
    return f"{ratio:.{digits + 1}f}×"


def _runs(res: Results, name: str) -> str:
    n = len(res.steps.get(name, []))
    return f" (median of {n})" if n > 1 else ""


def rows(res: Results) -> list[Row]:
    """The table: figures, ratios, targets of issue 14 and whether each is met."""
    size, a, out = res.size, res.agreement, []

    def step(measure: str, name: str, value: str) -> None:
        out.append(Row(f"{measure}{_runs(res, name)}", value, _gib(res.rss(name))))

    def ratio(measure: str, value: float, target: str) -> None:
        bound = float(target[2:].rstrip("×"))  # "≥ 5×", "≤ 1.3×"
        out.append(
            Row(
                measure,
                _x(value),
                "",
                target,
                value >= bound if target[0] == "≥" else value <= bound,
            )
        )

    out.append(
        Row(
            f"generate {res.calls:,} calls ({a['features']} features, {a['models']} models) "
            "and the incremental hours' files",
            _s(res.generate_seconds),
        )
    )
    ingest_rate = res.calls / res.median("ingest", "seconds")
    floor_rate = res.calls / res.median("read_json", "seconds")
    step(f"ingest, {res.calls:,} lines in one window", "ingest", f"{ingest_rate:,.0f} lines/s")
    step("floor: DuckDB read_json into a table", "read_json", f"{floor_rate:,.0f} lines/s")
    ratio("ingest / read_json rate", ingest_rate / floor_rate, "≥ 0.5×")

    ours, floor = res.median("build_full"), res.median("floor", "seconds")
    step(f"full build: spendwatch materialize, {size.span}", "build_full", _s(ours))
    step("floor: one DuckDB script", "floor", _s(floor))
    if "pandas" in res.steps:
        peer = res.median("pandas", "seconds")
        step("peer: pandas by hand", "pandas", _s(peer))
    else:
        out.append(Row("peer: pandas by hand", f"failed: {res.failures.get('pandas', '?')}"))
    ratio("full build / floor", ours / floor, "≤ 3×")
    if "pandas" in res.steps:
        ratio("pandas / full build", peer / ours, "≥ 5×")

    second = _s(res.median("build_short"))
    step(f"build of the second home ({size.short_span})", "build_short", second)
    short, full = res.median("incremental_short"), res.median("incremental_full")
    step(f"incremental hour, {size.short_span} of history", "incremental_short", _s(short))
    step(f"incremental hour, {size.span} of history", "incremental_full", _s(full))
    out[-1].target, out[-1].met = "< 30 s", full < 30
    ratio(f"incremental {size.span} / {size.short_span}", full / short, "≤ 1.3×")

    ours_rss = max(res.rss(name) for name in SPENDWATCH_STEPS)
    target = "≤ 2 GiB" + ("" if size.name == "default" else " (at 10M)")
    met = ours_rss <= 2 * GIB
    out.append(Row("peak RSS of spendwatch's steps", _gib(ours_rss), "", target, met))
    out.append(Row("warehouse file after the full build", _gib(res.warehouse_bytes)))
    out.append(Row("Dagster instance folder after the full build", _gib(res.dagster_bytes)))
    agreeing = f"{a['rows'] - a['mismatched_warehouse']:,} of {a['rows']:,}"
    out.append(Row("floor = warehouse (calls, cost to 1 µ$), hour × feature × env rows", agreeing))
    return out


#: the steps that are spendwatch (the RSS target is theirs)
SPENDWATCH_STEPS = ("ingest", "build_full", "build_short", "incremental_short", "incremental_full")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    versions = ", ".join(
        f"{name} {version(dist)}"
        for name, dist in (("DuckDB", "duckdb"), ("dbt-core", "dbt-core"),
                           ("dbt-duckdb", "dbt-duckdb"), ("Dagster", "dagster"),
                           ("pandas", "pandas"))
    )  # fmt: skip
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return (
        f"{os.cpu_count()} cores ({cpu}), {ram / GIB:.0f} GiB RAM, load average {load} at the "
        f"end; Python {platform.python_version()}, {versions}; {platform.system()} "
        f"{platform.release()}; commit {commit or '?'}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def markdown(res: Results) -> str:
    size = res.size
    lines = [
        BEGIN,
        f"### `make bench SIZE={size.name}`: {res.calls:,} calls over {size.span}",
        "",
        f"Machine: {machine()}.",
        "",
        "| measure | value | peak RSS | target (issue 14) | |",
        "|---|---|---|---|---|",
    ]
    for r in rows(res):
        lines.append(f"| {r.measure} | {r.value} | {r.rss} | {r.target} | {r.verdict} |")
    lines += ["", END]
    return "\n".join(lines)


def print_table(res: Results, console) -> None:
    from rich.table import Table

    table = Table(title=f"make bench SIZE={res.size.name}: {res.calls:,} calls, {res.size.span}")
    for column in ("measure", "value", "peak RSS", "target", ""):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for r in rows(res):
        style = {True: "green", False: "red", None: ""}[r.met]
        table.add_row(
            r.measure, r.value, r.rss, r.target, f"[{style}]{r.verdict}[/]" if style else ""
        )
    console.print(table)
    console.print(f"Machine: {machine()}")


def write_docs(res: Results, docs: Path) -> None:
    """Replace the marked section of `docs` with this run's table (append it if absent)."""
    text = docs.read_text() if docs.exists() else "# Benchmarks\n"
    section = markdown(res)
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    docs.write_text(text)


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--size", choices=SIZES, default="default")
    parser.add_argument(
        "--docs", default=str(DOCS), help="page to write the table into ('' for none)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder under .bench/")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 140)
    res = run(SIZES[args.size], keep=args.keep, console=console)
    print_table(res, console)
    if args.docs:
        write_docs(res, Path(args.docs))
        console.print(f"written to {args.docs}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "step":
        print(json.dumps(STEPS[sys.argv[2]](json.loads(sys.argv[3]))), flush=True)
        sys.exit(0)
    sys.exit(main())
