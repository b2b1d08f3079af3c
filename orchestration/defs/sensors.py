"""Late data and lost hours: landing files that appeared, changed or vanished in hours already
loaded, and hours whose files landed but whose run failed.

The load log (`raw.load_log`) holds each loaded file's size, modification time and checksum.
The sensor compares the landing folders of the last `LOOKBACK_DAYS` with it, for the hours it
has files of, and asks for a run of `hourly_pipeline` for each hour that differs: that run (its
day's partition, narrowed to the hour by its window tags) re-loads the hour and rebuilds every
table and detector downstream of it. The run key is the hour plus a digest of its files, so the
same late file never triggers twice and a file that changes again triggers again.

An hour that has landing files but nothing loaded (its scheduled run failed: the warehouse was
locked past the wait, the process died; or its files came after a run found none) is asked for
again, once per failed run of it (the run key counts them), up to `MAX_ATTEMPTS`; then the
sensor says it gave up and on which run. The sensor does not look while a run writes the
warehouse (it would only block it): it reads the load log through a read-only connection that
does not wait.
"""

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from orchestration.defs.jobs import hourly_pipeline, pending_run, pipeline_request
from orchestration.defs.project import HOUR, WRITES_WAREHOUSE, window_tags
from orchestration.defs.resources import SpendwatchHome
from orchestration.lib.ingest import landing_files
from spendwatch.config import target
from spendwatch.warehouse import WarehouseBusy, open_warehouse

IN_FLIGHT = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
             dg.DagsterRunStatus.CANCELING]  # fmt: skip

LOOKBACK_DAYS = 7
MAX_ATTEMPTS = 5  # runs of one hour the sensor asks for before it gives up and says so
SETTLE = timedelta(hours=1)  # an hour is "lost" only an hour after it ended (the schedule's turn)


def _checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_log(warehouse: Path, start: datetime) -> dict[str, tuple]:
    """The load log's files of the hours from `start`: path → (size, modified, checksum, hour)."""
    if not warehouse.exists():
        return {}
    con = open_warehouse(warehouse, read_only=True, wait_seconds=0)
    try:
        return {
            row[0]: row[1:]
            for row in con.execute(
                "select source_file, size_bytes, modified_at, checksum, partition_hour "
                "from raw.load_log where partition_hour >= ?",
                [start.replace(tzinfo=None)],
            ).fetchall()
        }
    finally:
        con.close()


def loaded_hours(logged: dict[str, tuple]) -> set[datetime]:
    return {row[3].replace(tzinfo=UTC) for row in logged.values()}


def changed_hours(
    warehouse: Path, landing: Path, hours: set[datetime], now: datetime,
    logged: dict[str, tuple] | None = None,
) -> dict[datetime, str]:  # fmt: skip
    """Loaded hours whose landing files differ from the load log → a digest of their files."""
    if not hours or not warehouse.exists():
        return {}
    start = max(min(hours), now - timedelta(days=LOOKBACK_DAYS))
    end = now + timedelta(hours=1)
    if logged is None:
        logged = load_log(warehouse, start)
    on_disk: dict[datetime, list[Path]] = {}
    for hour, path in landing_files(landing, start, end):
        on_disk.setdefault(hour, []).append(path)
    changed: dict[datetime, str] = {}
    for hour in sorted(h for h in hours if h >= start):
        files = on_disk.get(hour, [])
        logged_here = {f for f, row in logged.items() if row[3] == hour.replace(tzinfo=None)}
        differs = {str(f) for f in files} != logged_here
        digest = hashlib.sha256()
        for path in files:
            stat = path.stat()
            size, modified = stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC)
            entry = logged.get(str(path))
            same_stat = entry and entry[0] == size and entry[1] == modified.replace(tzinfo=None)
            checksum = entry[2] if same_stat else _checksum(path)
            differs = differs or not entry or checksum != entry[2]
            digest.update(f"{path.name}:{checksum}".encode())
        if differs:
            changed[hour] = digest.hexdigest()[:16]
    return changed


@dg.sensor(
    job=hourly_pipeline,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-materializes loaded hours whose landing files appeared, changed or vanished.",
)
def late_landing_files(context: dg.SensorEvaluationContext, spendwatch: SpendwatchHome):
    if target() == "spark":  # it reads raw.load_log through DuckDB
        return dg.SkipReason("late and lost hours are found in the DuckDB load log; not on spark")
    p = spendwatch.paths()
    now = datetime.now(UTC)
    writing = context.instance.get_runs(
        dg.RunsFilter(statuses=IN_FLIGHT, tags=WRITES_WAREHOUSE), limit=1
    )
    if writing:
        return dg.SkipReason(f"run {writing[0].run_id[:8]} is writing the warehouse; next tick")
    try:  # a notebook or a report holds it: look again next tick
        logged = load_log(p.warehouse, now - timedelta(days=LOOKBACK_DAYS))
    except WarehouseBusy as exc:
        return dg.SkipReason(f"warehouse busy ({exc}); will look again")
    loaded = loaded_hours(logged)
    changed = changed_hours(p.warehouse, p.landing, loaded, now, logged)
    requests = [
        pipeline_request(
            context.instance,
            spendwatch,
            hour,
            hour + HOUR,
            run_key=f"late:{hour:%Y-%m-%d-%H:%M}:{digest}",
            tags={"spendwatch/reason": "late_landing_files"},
        )  # fmt: skip
        for hour, digest in sorted(changed.items())
        if not pending_run(context.instance, hour, hour + HOUR)  # a queued run will read them
    ]
    retries, gave_up = lost_hour_requests(context.instance, spendwatch, loaded, now)
    for line in gave_up:
        context.log.warning(line)
    requests += retries
    if not requests:
        return dg.SkipReason(
            f"{len(loaded)} loaded hours checked; no late or changed files, no lost hours"
            + (f"; {len(gave_up)} hour(s) given up on (see the log)" if gave_up else "")
        )
    return requests


def lost_hour_requests(
    instance: dg.DagsterInstance, spendwatch: SpendwatchHome, loaded: set[datetime],
    now: datetime,
) -> tuple[list[dg.RunRequest], list[str]]:  # fmt: skip
    """Hours of the last LOOKBACK_DAYS with landing files and nothing loaded (and no run of them
    running or queued), once per failed run of the hour, up to MAX_ATTEMPTS."""
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    start, settled = this_hour - timedelta(days=LOOKBACK_DAYS), this_hour - SETTLE
    landed = {hour for hour, _ in landing_files(spendwatch.paths().landing, start, settled)}
    requests, gave_up = [], []
    for hour in sorted(landed - loaded):
        name = f"{hour:%Y-%m-%d-%H:%M}"
        runs = instance.get_runs(
            dg.RunsFilter(job_name="hourly_pipeline", tags=window_tags(hour, hour + HOUR))
        )
        if any(run.status in (*IN_FLIGHT, dg.DagsterRunStatus.QUEUED) for run in runs):
            continue
        failed = [run for run in runs if run.status == dg.DagsterRunStatus.FAILURE]
        if len(failed) >= MAX_ATTEMPTS:
            gave_up.append(
                f"hour {name}: {len(failed)} runs failed (last {failed[0].run_id[:8]}); not asking "
                "again — fix the cause and run `spendwatch materialize` for it"
            )
            continue
        requests.append(
            pipeline_request(
                instance,
                spendwatch,
                hour,
                hour + HOUR,
                run_key=f"lost:{name}:{len(failed)}",
                tags={"spendwatch/reason": f"lost hour, attempt {len(failed) + 1}"},
            )  # fmt: skip
        )
    return requests, gave_up
