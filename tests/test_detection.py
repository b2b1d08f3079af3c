"""Detection end to end on the demo's 28 days of real-shaped traffic: every injected incident is
found by the right detector within its first hour with the right severity; the same traffic
without incidents stays quiet (no critical, at most one warning incident per feature-week) and
far quieter than the naive rule. Real traces: tests/test_detection_eval.py."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import query as warehouse_query

from orchestration.defs.resources import dbt_executable
from orchestration.lib.ingest import load_window
from spendwatch.generator import default_incidents, generate

REPO = Path(__file__).resolve().parents[1]
DAYS = 28
CALLS_PER_DAY = 20_000  # the demo's volume
END = datetime(2026, 11, 26, 21, tzinfo=UTC)  # a Thursday evening, as a demo run might end
START = END - timedelta(days=DAYS)


def build(home: Path, incidents: bool, seed: int = 42) -> Path:
    """Generate, ingest and `dbt build` a warehouse in `home` (full build, no window)."""
    landing = home / "landing" / "calls"
    chosen = default_incidents(START, DAYS) if incidents else []
    generate(landing, START, DAYS, CALLS_PER_DAY, seed, chosen)
    load_window(home / "warehouse.duckdb", landing, START, END, now=END)
    dbt(home, "build", "--exclude", "resource_type:unit_test")
    return home


def dbt(home: Path, *args: str) -> None:
    env = {**os.environ, "SPENDWATCH_HOME": str(home), "DBT_PROFILES_DIR": str(REPO)}
    proc = subprocess.run(
        [dbt_executable(), *args, "--target-path", str(home / "target"), "--log-path",
         str(home / "logs")],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:]


def query(home: Path, sql: str) -> list[tuple]:
    return warehouse_query(home / "warehouse.duckdb", sql)


@pytest.fixture(scope="module")
def with_incidents(tmp_path_factory, dbt_manifest) -> Path:
    return build(tmp_path_factory.mktemp("incidents"), incidents=True)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, dbt_manifest) -> Path:
    return build(tmp_path_factory.mktemp("clean"), incidents=False)


def test_every_incident_is_found_in_its_first_hour(with_incidents: Path) -> None:
    truth = json.loads((with_incidents / "landing" / "calls" / "incidents.json").read_text())
    assert len(truth) == 8  # six kinds in the last days, two fallbacks in the last two hours
    for incident in truth:
        start = datetime.fromisoformat(incident["start"].replace("Z", "+00:00")).replace(
            tzinfo=None
        )
        end = start + timedelta(hours=incident["hours"])
        rows = query(with_incidents, f"""
            select hour_at, severity from marts.anomalies
            where detector = '{incident['detector']}' and feature = '{incident['feature']}'
              and environment = '{incident['environment']}'
              and hour_at >= '{start}' and hour_at < '{end}'
            order by hour_at""")  # fmt: skip
        hours = [r[0] for r in rows]
        assert hours and hours[0] == start, f"{incident['type']}: first found at {hours[:1]}"
        severities = {r[1] for r in rows}
        assert incident["severity"] in severities, (incident["type"], severities)
        if incident["type"] != "silence":  # a gap is a warning until it has lasted 3 hours
            assert rows[0][1] == incident["severity"], incident["type"]


def test_incident_hours_share_one_incident_key(with_incidents: Path) -> None:
    rows = query(with_incidents, """
        select incident_key, count(*), count(distinct anomaly_id), min(hour_at),
               min(incident_started_at)
        from marts.anomalies where detector = 'volume_spike' and feature = 'smart-reply'
          and environment = 'production' and metric = 'calls'
        group by 1""")  # fmt: skip
    spike = [r for r in rows if r[1] == 3]
    assert len(spike) == 1 and spike[0][2] == 3 and spike[0][3] == spike[0][4]


def test_messages_are_readable(with_incidents: Path) -> None:
    (message,) = query(
        with_incidents,
        """
        select message from marts.anomalies where detector = 'volume_spike'
          and feature = 'smart-reply' and metric = 'calls' order by hour_at limit 1""",
    )[0]
    assert message.startswith("smart-reply/production: ")
    assert " calls in 14:00 UTC, " in message and "× the usual " in message
    # the finding's sentence, then the hour's cost drivers ("$0.51 of +$0.58: volume 3.1×; ...")
    finding, drivers = message.split(" — ")
    assert finding.endswith(" 14:00") and "for a " in finding
    assert drivers.startswith("$") and " of +$" in drivers and ": volume " in drivers
    runbooks = {r[0] for r in query(with_incidents, "select distinct runbook from marts.anomalies")}
    for runbook in runbooks:
        assert (REPO / runbook).is_file(), runbook


def weekly_alerts(home: Path) -> tuple[Counter, int]:
    rows = query(home, """
        select feature, date_trunc('week', hour_at) as week, severity, count(distinct incident_key)
        from marts.anomalies group by all""")  # fmt: skip
    warnings = Counter({(r[0], r[1]): r[3] for r in rows if r[2] == "warning"})
    critical = sum(r[3] for r in rows if r[2] == "critical")
    return warnings, critical


def test_clean_traffic_raises_at_most_one_warning_per_feature_week(clean: Path) -> None:
    warnings, critical = weekly_alerts(clean)
    assert critical == 0, query(
        clean, "select message from marts.anomalies where severity = 'critical'"
    )
    noisy = {key: n for key, n in warnings.items() if n > 1}
    assert not noisy, query(clean, "select detector, message from marts.anomalies")


def test_naive_two_sigma_rule_on_the_same_clean_traffic(clean: Path) -> None:
    """The common rule (cost above the last 7 days' mean + 2σ, no seasonality) for comparison;
    docs/detection.md reports these counts."""
    naive = query(clean, """
        with scored as (
            select hour_at, feature, environment, cost_usd,
                avg(cost_usd) over w as mean_usd, stddev_samp(cost_usd) over w as sd_usd,
                count(*) over w as points
            from marts.agg_hourly_feature_cost
            window w as (partition by feature, environment order by hour_at
                         rows between 168 preceding and 1 preceding)
        )
        select count(*) from scored
        where points >= 168 and cost_usd > mean_usd + 2 * sd_usd""")[0][0]  # fmt: skip
    ours = query(clean, "select count(*) from marts.anomalies")[0][0]
    print(f"\nclean 28 days: naive 2-sigma rule {naive} alert-hours, spendwatch {ours} anomalies")
    assert naive > 10 * max(ours, 1)


#: the driver that explains each injected incident's extra cost (docs/detection.md, "Why the
#: bill moved"); a silence costs nothing and has none
INCIDENT_DRIVER = {
    "volume_spike": "volume",
    "prompt_bloat": "input_tokens_per_call",
    "model_fallback": "model_mix",
    "cache_drop": "cache",
    "retry_storm": "retries",
}


#: how the message names each driver
DRIVER_WORDS = {
    "volume": "volume", "input_tokens_per_call": "input tokens per call",
    "model_mix": "model mix", "cache": "cache reads", "retries": "retries",
}  # fmt: skip


def test_every_cost_incident_is_explained_by_its_driver(with_incidents: Path) -> None:
    """The finding of each injected incident carries, in its first hour, the cost drivers of
    that hour: the driver the incident changed added money, is one of the two that added the
    most (the hour's other traffic moves too: a cheap feature's cache drop can add less than its
    requests above their baseline), and the message names it; a silence has no cost and no
    drivers. Every hour's drivers add up to its cost change."""
    truth = json.loads((with_incidents / "landing" / "calls" / "incidents.json").read_text())
    for incident in truth:
        start = datetime.fromisoformat(incident["start"].replace("Z", "+00:00"))
        rows = query(with_incidents, f"""
            select top_driver, top_driver_usd, drivers, message from marts.anomalies
            where detector = '{incident['detector']}' and feature = '{incident['feature']}'
              and environment = '{incident['environment']}'
              and hour_at = '{start.replace(tzinfo=None)}'""")  # fmt: skip
        assert len(rows) == 1, incident
        top, usd, drivers, message = rows[0]
        expected = INCIDENT_DRIVER.get(incident["type"])
        if expected is None:
            assert top is None and drivers is None and " — $" not in message
            continue
        listed = json.loads(drivers)
        assert top == listed[0]["driver"] and usd == pytest.approx(listed[0]["usd"], abs=0.005)
        added = sorted(listed, key=lambda d: -d["usd"])[:2]
        assert expected in [d["driver"] for d in added if d["usd"] > 0], (incident["type"], listed)
        assert f": {DRIVER_WORDS[expected]}" in message, message
    (gap,) = query(
        with_incidents,
        """
        select max(abs(volume_usd + model_mix_usd + input_tokens_per_call_usd
            + output_tokens_per_call_usd + cache_usd + retries_usd + price_usd
            - cost_change_usd)) from marts.agg_hourly_feature_cost_drivers""",
    )
    assert gap[0] < 1e-6
