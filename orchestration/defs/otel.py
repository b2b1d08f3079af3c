"""The OpenTelemetry Collector's file exports, imported as they grow: the `otel_exports` sensor.

Each tick reads what the export files under `Paths.otel_exports` (`$SPENDWATCH_OTEL_EXPORTS`,
default `$SPENDWATCH_HOME/landing/otel/`) gained since the cursor (`spendwatch.otel.watch`: byte
offsets per file, known by content so rotation and gzip keep them), writes those spans' call
events as landing files and saves the cursor. It touches only files, never the warehouse, so it
runs while a pipeline run writes (DuckDB's one writer is the run).

For the hours that got events it asks for `hourly_pipeline` runs, but only for hours the hourly
schedule has already run (the hour ended more than `SCHEDULE_LAG` ago): spans of the current or
just-ended hour land before the schedule's run of it, which loads them. An hour with a queued run
(not started: it reads the landing files when it starts) gets none either; the late-data sensor
leaves such hours alone for the same reason, so the two never ask twice for one hour. The run key
is the hour and a digest of the landing files written, so a tick repeated never runs twice.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from orchestration.defs.jobs import hourly_pipeline, pending_run, pipeline_request
from orchestration.defs.project import HOUR
from orchestration.defs.resources import SpendwatchHome
from spendwatch.otel.watch import watch_exports

#: The hourly schedule runs the hour that ended five minutes past the next one (jobs.py).
SCHEDULE_LAG = timedelta(minutes=5)


@dg.sensor(
    job=hourly_pipeline,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Imports the spans the OpenTelemetry Collector's file exporter wrote since the "
    "last tick (growing, rotated and compressed files) and re-runs the hours they fell in.",
)
def otel_exports(context: dg.SensorEvaluationContext, spendwatch: SpendwatchHome):
    p = spendwatch.paths()
    folder = p.otel_exports
    if not folder.is_dir():
        return dg.SkipReason(f"no OpenTelemetry export folder {folder} (see docs/instrument.md)")
    cursor = json.loads(context.cursor) if context.cursor else None
    result = watch_exports(folder, p.landing, cursor)
    for error in result.errors:
        context.log.warning(error)
    new_cursor = json.dumps(result.cursor, sort_keys=True)
    waiting = f"; waiting for the rest of {', '.join(result.waiting)}" if result.waiting else ""
    if not result.records:
        return dg.SensorResult(skip_reason=f"nothing new in {folder}{waiting}", cursor=new_cursor)
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(result.skipped.items()))
    context.log.info(
        f"{result.records} new export records in {result.files} file(s): {result.spans} spans, "
        f"{result.imported} call events landed in {len(result.hours)} hour(s)"
        + (f"; skipped {reasons}" if reasons else "")
        + waiting
    )
    settled = datetime.now(UTC) - SCHEDULE_LAG
    requests, queued = [], []
    for hour in sorted(result.hours):
        if hour + HOUR > settled:
            continue  # the schedule's run of this hour is still to come and will load it
        if pending_run(context.instance, hour, hour + HOUR):
            queued.append(f"{hour:%Y-%m-%d %H:00}")  # it reads the new files when it starts
            continue
        written = sorted(w for w in result.written if f"hour={hour:%H}" in w and
                         f"date={hour:%Y-%m-%d}" in w)  # fmt: skip
        digest = hashlib.sha256("\n".join(written).encode()).hexdigest()[:16]
        requests.append(
            pipeline_request(
                context.instance,
                spendwatch,
                hour,
                hour + HOUR,
                run_key=f"otel:{hour:%Y-%m-%d-%H:%M}:{digest}",
                tags={"spendwatch/reason": "otel_exports"},
            )  # fmt: skip
        )
    if not requests:
        return dg.SensorResult(
            skip_reason=f"{result.imported} call events landed in hours whose run is still to "
            "come (the hourly schedule's" + (f", or the queued run of {', '.join(queued)}" if
                                              queued else "") + ")",
            cursor=new_cursor,
        )  # fmt: skip
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)
