"""One export run, the code path of the Dagster asset `ops/metric_exports` and of `spendwatch
export datadog|cloudwatch`:

1. open the warehouse read-only, run the one query of `figures.py` (the points of the hours due,
   or of an explicit range), close it;
2. send the points with no connection open (`sinks.py`), batched within the API's limits;
3. open the warehouse and record one row per hour in `ops.metric_exports` in one short
   transaction: sent, partial or failed, points and points accepted, the error with every
   secret redacted.

Idempotent: a re-export sends the same points for the same hours (the query is deterministic,
the timestamps are the hours' starts). A failed or partial hour stays due, so the next run
(the next hourly run, or the command) sends it again; so does an hour whose figures changed.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestration.lib.exports import log as export_log
from orchestration.lib.exports.figures import LOOKBACK, Hour, read_points
from orchestration.lib.exports.sinks import Sink, make_sink
from spendwatch import warehouse
from spendwatch.config import ExportSettings

log = logging.getLogger("spendwatch.exports")


class Redactor:
    """Replaces every configured secret in a text (errors are recorded and logged only through
    it)."""

    def __init__(self, secrets: list[str]):
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return None
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text


def naive(at: datetime) -> datetime:
    return at if at.tzinfo is None else at.astimezone(UTC).replace(tzinfo=None)


def floor_hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


@dataclass
class ExportReport:
    destination: str
    target: str
    start: datetime
    end: datetime
    only_due: bool
    outcomes: list[export_log.Outcome] = field(default_factory=list)
    batches: int = 0
    batches_failed: int = 0

    @property
    def points(self) -> int:
        return sum(o.points for o in self.outcomes)

    @property
    def points_sent(self) -> int:
        return sum(o.points_sent for o in self.outcomes)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def ok(self) -> bool:
        return all(o.status == "sent" for o in self.outcomes)

    def errors(self) -> list[str]:
        return list(dict.fromkeys(o.error for o in self.outcomes if o.error))

    def summary(self) -> str:
        scope = "hours due" if self.only_due else "hours"
        if not self.outcomes:
            return (
                f"{self.destination}: nothing to export ({scope} from {self.start:%Y-%m-%d %H:00} "
                f"to {self.end:%Y-%m-%d %H:00} UTC: none with figures"
                + (" that are not already sent" if self.only_due else "")
                + ")"
            )
        text = (
            f"{self.destination}: {len(self.outcomes)} {scope} "
            f"({self.outcomes[0].hour_at:%Y-%m-%d %H:00} → "
            f"{self.outcomes[-1].hour_at:%Y-%m-%d %H:00} UTC), {self.points_sent:,} of "
            f"{self.points:,} points accepted in {self.batches - self.batches_failed} of "
            f"{self.batches} batches to {self.target}: {self.count('sent')} sent, "
            f"{self.count('partial')} partial, {self.count('failed')} failed"
        )
        errors = self.errors()
        if errors:
            text += f"; first error: {errors[0]}"
        return text

    def metadata(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "hours": len(self.outcomes),
            "points": self.points,
            "points_sent": self.points_sent,
            "batches": self.batches,
            "batches_failed": self.batches_failed,
            "sent": self.count("sent"),
            "partial": self.count("partial"),
            "failed": self.count("failed"),
            "first_error": (self.errors() or [""])[0],
        }


def export_metrics(
    warehouse_path: Path,
    destination: str,
    settings: ExportSettings,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
    run_id: str | None = None,
    sink: Sink | None = None,
    logger: Any = log,
) -> ExportReport:
    """Export [start, end) (every hour in it, again), or without `start` every complete hour of
    the last 7 days not yet sent (or changed since). Times are UTC."""
    now = now or datetime.now(UTC)
    current = floor_hour(naive(now))
    only_due = start is None
    lo = current - LOOKBACK if start is None else floor_hour(naive(start))
    hi = current if end is None else floor_hour(naive(end))
    if not only_due:
        hi = min(hi, current)  # an hour still running is never exported
    if hi <= lo:
        raise ValueError(
            f"--start {lo:%Y-%m-%d %H:00} is not before the end "
            f"{hi:%Y-%m-%d %H:00} UTC (the end is exclusive and at most the current hour)"
        )
    sink = sink or make_sink(destination, settings)
    redact = Redactor(settings.secrets())
    report = ExportReport(destination, sink.target, lo, hi, only_due)
    wait = settings.warehouse_wait_seconds

    def opened(read_only: bool):
        return warehouse.open_warehouse(
            warehouse_path,
            read_only=read_only,
            wait_seconds=wait,
            must_exist=True,
            on_wait=lambda who: logger.info(
                f"warehouse {warehouse_path.name} is locked by {who}: waiting up to {wait:.0f} s"
            ),
            consequence="nothing was exported; the next run (or `spendwatch export`) will try "
            "again. Raise SPENDWATCH_WAREHOUSE_WAIT_SECONDS if runs take longer.",
        )

    con = opened(read_only=True)
    try:
        points, hours = read_points(con, destination, lo, hi, only_due)
    finally:
        con.close()
    if not points:
        logger.info(report.summary())
        return report

    results = sink.send(points)
    report.batches = len(results)
    report.batches_failed = sum(1 for r in results if not r.accepted)
    accepted: Counter[datetime] = Counter()
    errors: dict[datetime, str] = defaultdict(str)
    for result in results:
        for p in result.points:
            if result.accepted:
                accepted[p.hour_at] += 1
            elif not errors[p.hour_at]:
                errors[p.hour_at] = redact(result.error) or ""
    attempted_at = naive(datetime.now(UTC))
    run_id = run_id or f"cli-{uuid.uuid4()}"
    report.outcomes = [_outcome(h, destination, sink.target, accepted, errors, attempted_at, run_id)
                       for h in hours]  # fmt: skip

    con = opened(read_only=False)
    try:
        export_log.record(con, report.outcomes)
    finally:
        con.close()
    (logger.info if report.ok else logger.warning)(report.summary())
    return report


def _outcome(
    hour: Hour,
    destination: str,
    target: str,
    accepted: Counter[datetime],
    errors: dict[datetime, str],
    attempted_at: datetime,
    run_id: str,
) -> export_log.Outcome:
    return export_log.Outcome(
        hour_at=hour.hour_at,
        destination=destination,
        points=hour.points,
        points_sent=accepted[hour.hour_at],
        fingerprint=hour.fingerprint,
        target=target,
        error=errors.get(hour.hour_at) or None,
        attempted_at=attempted_at,
        run_id=run_id,
    )
