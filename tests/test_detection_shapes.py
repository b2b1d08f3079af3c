"""How the detectors treat the shapes real traffic has and smooth synthetic traffic lacks: an
organic level shift gives one incident and the baseline follows it within a day; one-hour
bursts stay quiet; a sustained rise warns on its second hour; a past incident does not blunt the
next one. Five weeks of the generator's default (real-shaped) traffic, with these shapes added to
its expected volume."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from helpers import query as warehouse_query

from orchestration.defs.resources import dbt_executable
from orchestration.lib.ingest import load_window
from spendwatch.generator import (
    ENVIRONMENTS,
    FEATURES,
    Incident,
    TrafficModel,
    expected_volume,
    generate,
)

REPO = Path(__file__).resolve().parents[1]
START = datetime(2026, 9, 7, tzinfo=UTC)  # a Monday
DAYS = 35
SHIFT_AT = START + timedelta(days=29, hours=3)  # a Tuesday, 03:00: traffic doubles and stays
BURSTS = [START + timedelta(days=d, hours=h) for d, h in ((24, 11), (26, 15), (30, 10))]
RISE_AT = START + timedelta(days=32, hours=10)  # a Friday: 2.2× for three hours
FEATURE = {f.name: i for i, f in enumerate(FEATURES)}


def _hour(at: datetime) -> int:
    return int((at - START) / timedelta(hours=1))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, dbt_manifest: Path) -> Path:
    home = tmp_path_factory.mktemp("shapes")
    landing = home / "landing" / "calls"
    rng = np.random.default_rng(7)
    lam = expected_volume(START, DAYS * 24, 10_000, TrafficModel(), rng)
    lam[_hour(SHIFT_AT) :, FEATURE["smart-reply"], 0] *= 2.0
    for at in BURSTS:
        lam[_hour(at), FEATURE["chat-assistant"], 0] *= 2.0
    rise = Incident("volume_spike", "rag-search", "production", f"{RISE_AT:%Y-%m-%dT%H:00:00Z}",
                    3, "volume_spike", "warning", {"multiplier": 2.2})  # fmt: skip
    # prompt growth twice in summarization, a week apart: the first must not blunt the second
    bloats = [
        Incident(
            "prompt_bloat",
            "summarization",
            "production",
            f"{at:%Y-%m-%dT%H:00:00Z}",
            3,
            "cost_per_call",
            "critical",
            {"input_multiplier": 4.0},
        )  # fmt: skip
        for at in (START + timedelta(days=25, hours=14), START + timedelta(days=32, hours=14))
    ]
    generate(landing, START, DAYS, seed=7, incidents=[rise, *bloats], volume=lam,
             environments=list(ENVIRONMENTS))  # fmt: skip
    end = START + timedelta(days=DAYS)
    load_window(home / "warehouse.duckdb", landing, START, end, now=end)
    env = {**os.environ, "SPENDWATCH_HOME": str(home), "DBT_PROFILES_DIR": str(REPO)}
    proc = subprocess.run(
        [dbt_executable(), "build", "--exclude", "resource_type:unit_test", "--target-path",
         str(home / "target"), "--log-path", str(home / "logs")],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:]
    (home / "shapes.json").write_text(json.dumps({"shift": str(SHIFT_AT)}))
    return home


def query(home: Path, sql: str, params: list | None = None) -> list[tuple]:
    return warehouse_query(home / "warehouse.duckdb", sql, params)


def naive(at: datetime) -> datetime:
    return at.replace(tzinfo=None)


def test_a_level_shift_is_one_incident_and_the_baseline_follows_it(home: Path) -> None:
    after = naive(SHIFT_AT)
    incidents = query(home, """
        select incident_key, min(hour_at), max(hour_at)
        from marts.anomalies
        where detector = 'volume_spike' and feature = 'smart-reply'
          and environment = 'production' and hour_at >= ? and hour_at < ? + interval 3 day
        group by 1""", [after, after])  # fmt: skip
    assert len(incidents) <= 1, incidents
    # it ends once the level has moved: well within a day, however long the new level stays
    assert all(last - first <= timedelta(hours=14) for _, first, last in incidents), incidents
    # half the 24-hour level window after the shift, the baseline expects the new level
    ratios = [r[0] for r in query(home, """
        select calls / calls_baseline from marts.agg_hourly_feature_cost
        where feature = 'smart-reply' and environment = 'production'
          and hour_at >= ? + interval 14 hour and hour_at < ? + interval 3 day""",
        [after, after])]  # fmt: skip
    assert 0.8 < float(np.median(ratios)) < 1.25, np.median(ratios)


def test_one_hour_bursts_stay_quiet(home: Path) -> None:
    for at in BURSTS:
        found = query(home, """
            select detector, severity from marts.anomalies
            where feature = 'chat-assistant' and environment = 'production'
              and hour_at between ? - interval 1 hour and ? + interval 2 hour""",
            [naive(at), naive(at)])  # fmt: skip
        ratio = query(home, """
            select calls / calls_baseline from marts.agg_hourly_feature_cost
            where feature = 'chat-assistant' and environment = 'production' and hour_at = ?""",
            [naive(at)])[0][0]  # fmt: skip
        assert ratio > 1.4, (at, ratio)  # a burst a one-hour rule would have flagged
        assert found == [], (at, found)


def test_a_sustained_rise_warns_on_its_second_hour(home: Path) -> None:
    rows = query(home, """
        select hour_at, severity from marts.anomalies
        where detector = 'volume_spike' and feature = 'rag-search' and environment = 'production'
          and hour_at >= ? and hour_at < ? + interval 3 hour order by 1""",
        [naive(RISE_AT), naive(RISE_AT)])  # fmt: skip
    assert rows and rows[0][0] == naive(RISE_AT) + timedelta(hours=1), rows
    assert {r[1] for r in rows} == {"warning"}


def test_a_past_incident_does_not_blunt_the_next(home: Path) -> None:
    for day in (25, 32):
        at = naive(START + timedelta(days=day, hours=14))
        rows = query(home, """
            select severity from marts.anomalies
            where detector = 'cost_per_call' and feature = 'summarization'
              and environment = 'production' and hour_at = ?""", [at])  # fmt: skip
        assert rows == [("critical",)], (at, rows)
