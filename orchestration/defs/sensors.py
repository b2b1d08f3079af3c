"""Late data: landing files that appeared, changed or vanished in hours already loaded.

The load log (`raw.load_log`) holds each loaded file's size, modification time and checksum.
The sensor compares the landing folders of the last `LOOKBACK_DAYS` with it, for the hours the
ingest asset has materialized, and asks for a run of `hourly_pipeline` for each hour that
differs: that run re-loads the hour and rebuilds every mart and detector downstream of it. The
run key is the hour plus a digest of its files, so the same late file never triggers twice and
a file that changes again triggers again.
"""

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb

from orchestration.defs.assets.dbt import INGEST_ASSET
from orchestration.defs.jobs import hourly_pipeline
from orchestration.defs.project import HOURLY
from orchestration.defs.resources import SpendwatchHome
from orchestration.lib.ingest import landing_files

LOOKBACK_DAYS = 7


def _checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def changed_hours(
    warehouse: Path, landing: Path, hours: set[datetime], now: datetime
) -> dict[datetime, str]:
    """Loaded hours whose landing files differ from the load log → a digest of their files."""
    if not hours or not warehouse.exists():
        return {}
    start = max(min(hours), now - timedelta(days=LOOKBACK_DAYS))
    end = now + timedelta(hours=1)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        logged = {
            row[0]: row[1:]
            for row in con.execute(
                "select source_file, size_bytes, modified_at, checksum, partition_hour "
                "from raw.load_log where partition_hour >= ?",
                [start.replace(tzinfo=None)],
            ).fetchall()
        }
    finally:
        con.close()
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
    p = spendwatch.paths()
    now = datetime.now(UTC)
    loaded = {
        HOURLY.time_window_for_partition_key(key).start
        for key in context.instance.get_materialized_partitions(INGEST_ASSET)
    }
    recent = {h for h in loaded if h >= now - timedelta(days=LOOKBACK_DAYS)}
    try:
        changed = changed_hours(p.warehouse, p.landing, recent, now)
    except duckdb.IOException as exc:  # a run holds the warehouse: look again next tick
        return dg.SkipReason(f"warehouse busy ({exc.__class__.__name__}); will look again")
    if not changed:
        return dg.SkipReason(f"{len(recent)} loaded hours checked; no late or changed files")
    return [
        dg.RunRequest(
            run_key=f"late:{HOURLY.get_partition_key_for_timestamp(hour.timestamp())}:{digest}",
            partition_key=HOURLY.get_partition_key_for_timestamp(hour.timestamp()),
            tags={"spendwatch/reason": "late_landing_files"},
        )
        for hour, digest in sorted(changed.items())
    ]
