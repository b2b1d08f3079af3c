"""Run the pipeline over an hour range as ONE Dagster run, with a progress display.

The run is recorded in the persistent Dagster instance under `$SPENDWATCH_HOME/dagster`, so it
shows in `make ui`. One run covers the whole range: the day partitions it touches (Dagster's
partition-range tags, `BackfillPolicy.single_run()`) narrowed to its hours by the window tags,
with the seeds and views added when their code changed since they were last built.

A range run records one "planned" event per asset rather than one per partition
(`DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS`, set for the run). Dagster's caveat: the
partitions of such a run are then not marked failed when it fails, so this module marks them
itself (`_report_unmaterialized`): the UI shows the same failed partitions either way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from orchestration.defs.project import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    WRITES_WAREHOUSE,
    partition_keys,
    window_tags,
)
from spendwatch.config import Paths, export_environment, temporary_environ
from spendwatch.warehouse import WarehouseBusy, default_wait_seconds

#: Tags naming the process that runs a CLI run in-process, so a later CLI can tell a run whose
#: process died (it stays STARTED in the instance) from one still writing.
PID_TAG, HOST_TAG = "spendwatch/pid", "spendwatch/host"

# The run's events are in the instance (and `make ui`); the terminal gets the progress bar.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@contextlib.contextmanager
def _redirected(log):
    """dbt's output (dagster-dbt echoes it) and library warnings go to the run's log file; the
    terminal keeps the progress bar and the summary. Nothing is lost: the run's events are in
    the Dagster instance and the log file is named in the summary."""
    with (
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("default")
        logging.captureWarnings(True)
        try:
            yield
        finally:
            logging.captureWarnings(False)


#: one planned event per asset for a range run instead of one per asset and partition
PLANNED_EVENTS_ENV = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


@dataclass
class RunSummary:
    run_id: str
    success: bool
    seconds: float
    hours: int
    materializations: int
    log_path: Path | None = None
    #: the first failed step and the first line of its error, when the run failed
    error: str | None = None


def materialize_range(
    p: Paths,
    start: datetime,
    end: datetime,
    console: Console | None = None,
    assets: Collection[str] | None = None,
) -> RunSummary:
    """Ingest + dbt for every hour in [start, end) as one run (with the seeds and views whose
    code changed). `assets` (asset keys as strings, `marts/anomalies`) narrows the run to
    those assets (plus the stale seeds and views), e.g. `spendwatch reconcile import`'s
    rebuild of the reconciliation and the anomalies."""
    if end <= start:
        raise ValueError(f"empty range: end {end:%Y-%m-%d %H:%M} is not after start")
    export_environment(p)
    # The manifest comes from `make manifest` (or `dagster dev`, through the DbtProject's
    # prepare_if_dev); without one, stop here with what to do, before Dagster loads.
    from orchestration.defs.project import manifest_path

    manifest_path()

    with warnings.catch_warnings():  # Dagster flags backfill_policy as beta at definition time
        warnings.filterwarnings("ignore", message=".*is currently in beta.*")
        from orchestration.definitions import defs
        from orchestration.defs.jobs import pipeline_selection

        job = defs.resolve_job_def("hourly_pipeline")

    # bound to the real stdout now: while the run executes, stdout goes to the run's log file
    is_terminal = (console or Console()).is_terminal
    console = Console(file=sys.stdout, force_terminal=is_terminal)
    log_dir = p.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    instance = open_instance(p)
    hours = int((end - start) / timedelta(hours=1))
    began = time.monotonic()
    wait_for_writers(instance, console)

    selection = pipeline_selection(instance, p.built)
    if assets is not None:
        import dagster as dg

        from orchestration.defs.assets.dbt import stale_reference_keys

        wanted = {dg.AssetKey.from_user_string(key) for key in assets}
        selection = sorted(wanted | stale_reference_keys(instance, p.built))
    days = partition_keys(start, end)
    run_id = str(uuid.uuid4())
    tags = {
        RANGE_START_TAG: days[0],
        RANGE_END_TAG: days[-1],
        **window_tags(start, end),
        "spendwatch/source": "cli",
        **WRITES_WAREHOUSE,
        PID_TAG: str(os.getpid()),
        HOST_TAG: socket.gethostname(),
    }
    seen: set[str] = set()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} assets"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
        console=console,
        transient=False,
        disable=not console.is_terminal and os.environ.get("SPENDWATCH_PROGRESS") != "1",
    ) as progress:
        task = progress.add_task(
            f"{hours} hours {start:%Y-%m-%d %H:00} → {end:%Y-%m-%d %H:00}",
            total=len(selection) or None,
            last="",
        )
        # Dagster calls the instance's listeners for every event of the run as it is stored,
        # on the thread that executes the run: the bar moves without polling the instance.
        # (`add_event_listener` is the hook Dagster's own external steps use; it has no public
        # counterpart for execute_in_process.)
        instance.add_event_listener(run_id, lambda entry: _update(entry, progress, task, seen))
        log_path = log_dir / f"run-{run_id}.log"
        # dbt's own output (dagster-dbt echoes it to stdout) goes to the run's log file
        with (
            log_path.open("w") as log,
            _redirected(log),
            temporary_environ({PLANNED_EVENTS_ENV: "1"}),
        ):
            result = job.execute_in_process(
                instance=instance,
                tags=tags,
                run_id=run_id,
                asset_selection=selection,
                raise_on_error=False,
                run_config=QUIET,
            )
        if not result.success:
            _report_unmaterialized(instance, run_id, job.name, selection, days)
    return RunSummary(
        run_id, result.success, time.monotonic() - began, hours, len(seen), log_path,
        None if result.success else _first_error(result),
    )  # fmt: skip


def _report_unmaterialized(instance, run_id: str, job_name: str, selection, days) -> None:
    """After a failed range run: record a planned event for every day partition of a partitioned
    asset that the run did not materialize — what Dagster writes itself when it plans per
    partition, and from which its status cache derives failed partitions (a planned partition
    without a materialization in a failed run). Never raises: the run's own failure is what the
    user must see."""
    import dagster as dg
    from dagster._core.events import AssetMaterializationPlannedData, DagsterEvent

    with contextlib.suppress(Exception):
        from orchestration.definitions import defs

        done: set[tuple[dg.AssetKey, str | None]] = set()
        records = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100_000
        ).records
        for record in records:
            m = record.event_log_entry.asset_materialization
            done.add((m.asset_key, m.partition))
        graph = defs.resolve_asset_graph()
        for key in selection:
            if graph.get(key).partitions_def is None:
                continue
            for day in days:
                if (key, day) not in done:
                    event = DagsterEvent.build_asset_materialization_planned_event(
                        job_name, None, AssetMaterializationPlannedData(key, partition=day)
                    )
                    instance.report_dagster_event(event, run_id, logging.DEBUG)


def _first_error(result) -> str | None:
    """`<step>: <first line of its error>` of the run's first failed step (None if none)."""
    with contextlib.suppress(Exception):
        for event in result.get_step_failure_events():
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:  # the exception raised
                error = error.cause
            message = (error.message if error else "").strip().splitlines()
            return f"{event.step_key}: {message[0] if message else 'failed'}"
    return None


def open_instance(p: Paths):
    """The persistent Dagster instance of this home. Its SQLite storages create their tables on
    first use, and two processes doing that at once (a CLI run and `make ui` on a fresh home)
    leave a broken schema ("more than one head"): the first use is serialized by a file lock."""
    import fcntl

    import dagster as dg

    with (p.dagster_home / ".init.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        instance = dg.DagsterInstance.get()
        instance.get_runs(limit=1)  # creates the run and event storages if they are new
        fcntl.flock(lock, fcntl.LOCK_UN)
    return instance


def wait_for_writers(instance, console: Console, wait_seconds: float | None = None) -> None:
    """Wait while another run writes the warehouse (a scheduled or sensor run, another CLI),
    saying which, for up to $SPENDWATCH_WAREHOUSE_WAIT_SECONDS; then refuse with one line.
    A CLI run whose process is gone (killed: it stays STARTED in the instance) is marked
    failed instead of waited for. This run is tagged like the others, so the instance's run
    queue holds scheduled runs back while it writes."""
    import dagster as dg

    wait = default_wait_seconds() if wait_seconds is None else wait_seconds
    deadline, told = time.monotonic() + wait, set()
    active = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
              dg.DagsterRunStatus.CANCELING]  # fmt: skip
    while True:
        runs = [
            run
            for run in instance.get_runs(dg.RunsFilter(statuses=active, tags=WRITES_WAREHOUSE))
            if not _abandoned(instance, run)
        ]
        if not runs:
            return
        run = runs[0]
        if time.monotonic() >= deadline:
            raise WarehouseBusy(
                f"run {run.run_id[:8]} ({run.job_name}) is still writing the warehouse after "
                f"{wait:g} s; try again when it has finished (`make ui` shows it), or raise "
                "SPENDWATCH_WAREHOUSE_WAIT_SECONDS"
            )
        if run.run_id not in told:
            console.print(
                f"waiting for run {run.run_id[:8]} ({run.job_name}, {run.status.value.lower()}) "
                "to finish writing the warehouse ..."
            )
            told.add(run.run_id)
        time.sleep(1.0)


def _abandoned(instance, run) -> bool:
    """A CLI run on this host whose process no longer exists: mark it failed, it writes nothing."""
    pid, host = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
    if not pid or host != socket.gethostname() or _alive(int(pid)):
        return False
    instance.report_run_failed(run, f"its process {pid} is gone (killed?); marked failed")
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _update(entry, progress: Progress, task, seen: set[str]) -> None:
    """One event of the run: a materialization advances the bar by its asset. Never raises:
    it runs inside Dagster's event handling, and a progress bar must not fail a run."""
    with contextlib.suppress(Exception):
        _advance(entry, progress, task, seen)


def _advance(entry, progress: Progress, task, seen: set[str]) -> None:
    event = entry.dagster_event
    if event is None or not event.is_step_materialization:
        return
    key = event.asset_key.to_user_string()
    if key not in seen:
        seen.add(key)
        progress.update(task, completed=len(seen), last=key)
