"""The Dagster side of alerting: the `alerts` job and the two sensors that start it.

- `alerts_on_anomalies` is an asset sensor on `marts/anomalies`: every ≤ 30 s it looks for a
  materialization newer than its cursor and asks for one `alerts` run per pipeline run that
  produced one (run key `anomalies:<run id>`), else returns a SkipReason. The pipeline run may
  still be writing when the sensor fires; the alert run waits for the warehouse lock
  (`SPENDWATCH_WAREHOUSE_WAIT_SECONDS`) rather than failing.
- `alert_backlog` covers what no materialization announces: alerts waiting for their retry
  time after a channel failed, claims left behind by a run that died, and incidents an earlier
  alert run could not plan (the warehouse stayed busy). It reads the warehouse read-only, only
  when no pipeline or alert run is in flight, and asks for a run when something is due.

The job's one op runs `run_alerts`, the same code path as `spendwatch alerts send` (which,
by hand, also retries alerts whose backoff has not expired).
"""

from datetime import UTC, datetime

import dagster as dg

from orchestration.defs.assets.dbt import spendwatch_dbt_tables
from orchestration.defs.project import WRITES_WAREHOUSE
from orchestration.defs.resources import SpendwatchHome
from orchestration.lib.alerting.dispatch import pending_work, run_alerts
from orchestration.lib.alerting.routing import RoutingError
from spendwatch.config import alert_settings, target
from spendwatch.warehouse import WarehouseBusy, WarehouseMissing

#: The union of the detectors, as the dbt translator names it (`marts/anomalies`).
ANOMALIES_ASSET = next(k for k in spendwatch_dbt_tables.keys if k.path[-1] == "anomalies")
SOURCE_RUN_TAG = "spendwatch/anomalies_run_id"
SENSOR_INTERVAL_SECONDS = 30
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


#: Alert delivery keeps its state (ops.alert_deliveries) in the DuckDB warehouse and reads
#: marts.anomalies there; on the spark target it does not run yet (docs/architecture.md).
SPARK_SKIP = "alerts are delivered from the DuckDB warehouse; not on the spark target yet"


@dg.op(out=dg.Out(dg.Nothing), description="Deliver every due alert; record each delivery.")
def deliver_alerts(context: dg.OpExecutionContext, spendwatch: SpendwatchHome) -> None:
    try:
        report = run_alerts(
            spendwatch.paths().warehouse,
            alert_settings(),
            run_id=context.run_id,
            source_run_id=context.run.tags.get(SOURCE_RUN_TAG),
            logger=context.log,
        )
    except (RoutingError, WarehouseBusy, WarehouseMissing, FileNotFoundError) as exc:
        raise dg.Failure(description=str(exc)) from None
    for channel, n in report.unconfigured_counts.items():
        context.log.info(f"{channel}: {n} alert(s) routed here were skipped (not configured)")
    context.add_output_metadata(report.metadata())


@dg.job(
    name="alerts",
    description="Turn new incidents of marts.anomalies into Slack, PagerDuty and email alerts "
    "(ops.alert_deliveries records every delivery).",
    tags={"spendwatch/kind": "alerts", **WRITES_WAREHOUSE},
)
def alerts_job() -> None:
    deliver_alerts()


@dg.asset_sensor(
    asset_key=ANOMALIES_ASSET,
    job=alerts_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="New rows in marts/anomalies → an alerts run (one per pipeline run).",
)
def alerts_on_anomalies(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    if target() == "spark":
        return dg.SkipReason(SPARK_SKIP)
    source = asset_event.run_id or f"event-{asset_event.timestamp:.0f}"
    return dg.RunRequest(
        run_key=f"anomalies:{source}",
        tags={SOURCE_RUN_TAG: asset_event.run_id} if asset_event.run_id else {},
    )


@dg.sensor(
    job=alerts_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts due for a retry (or never planned) → an alerts run.",
)
def alert_backlog(context: dg.SensorEvaluationContext, spendwatch: SpendwatchHome):
    if target() == "spark":
        return dg.SkipReason(SPARK_SKIP)
    busy = context.instance.get_runs(dg.RunsFilter(statuses=IN_FLIGHT), limit=5)
    writers = sorted({r.job_name for r in busy})
    if writers:
        return dg.SkipReason(f"{', '.join(writers)} in flight; looking again next tick")
    now = datetime.now(UTC)
    try:
        work = pending_work(spendwatch.paths().warehouse, alert_settings(), now)
    except (WarehouseBusy, WarehouseMissing) as exc:
        return dg.SkipReason(f"warehouse not readable now: {exc}")
    except RoutingError as exc:
        return dg.SkipReason(f"routing file invalid, nothing can be routed: {exc}")
    if not work:
        return dg.SkipReason("no alert due (nothing new, no retry waiting)")
    tags = {"spendwatch/reason": f"backlog: {work}"}
    latest = context.instance.get_latest_materialization_event(ANOMALIES_ASSET)
    if latest is not None and latest.run_id:  # new alerts link the run that found them
        tags[SOURCE_RUN_TAG] = latest.run_id
    return dg.RunRequest(
        run_key=None,  # the same backlog may need a second run if the first one fails
        tags=tags,
    )
