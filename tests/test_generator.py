"""The traffic generator: deterministic, valid, seasonal, with incidents where it says."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spendwatch.cli import main
from spendwatch.generator import default_incidents, generate, load_incidents
from spendwatch.landing import landing_file
from spendwatch.schema import CallEvent

START = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.jsonl")):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _events(folder: Path) -> list[tuple[Path, dict]]:
    return [
        (path, json.loads(line))
        for path in sorted(folder.rglob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


@pytest.fixture(scope="module")
def three_weeks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("landing")
    result = generate(out, START, 21, 3000, seed=7, incidents=default_incidents(START, 21))
    return out, result.incidents


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", START, 1, 2000, seed=1)
    b = generate(tmp_path / "b", START, 1, 2000, seed=1)
    generate(tmp_path / "c", START, 1, 2000, seed=2)
    assert a.calls == b.calls and a.files == 24
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_every_line_is_a_valid_event_in_its_hour_folder(tmp_path: Path) -> None:
    generate(tmp_path, START, 2, 3000, seed=3)
    events = _events(tmp_path)
    assert 6500 < len(events) < 8500  # a Monday and a Tuesday: above the weekly average
    for path, data in events:
        event = CallEvent.model_validate(data)
        hour = event.occurred_at.astimezone(UTC)
        # DuckDB's partition_by names the folders the way spendwatch.landing does
        assert path == landing_file(tmp_path, hour, "generator-0")
    assert len({d["event_id"] for _, d in events}) == len(events)


def test_traffic_covers_the_dimensions_downstream_needs(three_weeks) -> None:
    out, _ = three_weeks
    events = [d for _, d in _events(out)]
    assert len({d["feature"] for d in events}) >= 5
    assert len({d["provider"] for d in events}) >= 2
    canonical = {d["model"].split("-20")[0] for d in events}
    assert len(canonical) >= 4
    assert {d["environment"] for d in events} == {"production", "staging", "dev"}
    assert len({d["team_id"] for d in events}) >= 5 and len({d["user_id"] for d in events}) > 100
    cached = Counter(d["feature"] for d in events if d["cache_read_tokens"] > 0)
    assert cached["rag-search"] > 0 and cached["smart-reply"] == 0
    assert any(d["cache_write_tokens"] > 0 for d in events if d["provider"] == "anthropic")
    retries = sum(d["attempt"] > 1 for d in events) / len(events)
    errors = sum(d["status"] == "error" for d in events) / len(events)
    assert 0.01 < retries < 0.1 and 0.005 < errors < 0.1
    assert any(d["model"] != d["model"].split("-20")[0] for d in events)  # dated snapshots


def test_tuesday_afternoon_far_above_sunday_night(three_weeks) -> None:
    out, _ = three_weeks
    per_hour = Counter()
    for _, d in _events(out):
        if d["environment"] == "production":
            at = datetime.fromisoformat(d["occurred_at"].replace("Z", "+00:00"))
            per_hour[(at.weekday(), at.hour)] += 1
    tuesday_afternoon = sum(per_hour[(1, h)] for h in (14, 15, 16))
    sunday_night = sum(per_hour[(6, h)] for h in (2, 3, 4))
    assert tuesday_afternoon > 5 * sunday_night


def test_default_incidents_are_in_the_data(three_weeks) -> None:
    out, incidents = three_weeks
    truth = json.loads((out / "incidents.json").read_text())
    assert {i["type"] for i in truth} == {
        "volume_spike", "prompt_bloat", "model_fallback", "cache_drop", "retry_storm", "silence",
    }  # fmt: skip
    assert {i["detector"] for i in truth} >= {"volume_spike", "model_drift", "telemetry_gap"}
    events = [d for _, d in _events(out) if d["environment"] == "production"]

    def calls(feature: str, at: datetime, hours: int) -> list[dict]:
        lo, hi = at, at + timedelta(hours=hours)
        return [
            d for d in events
            if d["feature"] == feature
            and lo <= datetime.fromisoformat(d["occurred_at"].replace("Z", "+00:00")) < hi
        ]  # fmt: skip

    by_type = {i.type: i for i in incidents if i.feature != "chat-assistant"}
    spike = by_type["volume_spike"]
    during = len(calls(spike.feature, spike.start_at, spike.hours))
    week_before = len(calls(spike.feature, spike.start_at - timedelta(days=7), spike.hours))
    assert during > 2.5 * week_before
    silence = by_type["silence"]
    assert calls(silence.feature, silence.start_at, silence.hours) == []
    fallback = by_type["model_fallback"]
    models = Counter(d["model"] for d in calls(fallback.feature, fallback.start_at, fallback.hours))
    assert sum(n for m, n in models.items() if m.startswith("claude-3-opus")) > 0.4 * sum(
        models.values()
    )


def test_incident_file_is_validated(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps([{"type": "meteor", "feature": "smart-reply", "start": "2026-10-06"}])
    )
    with pytest.raises(ValueError, match="meteor"):
        load_incidents(str(bad), START, 7)
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps([{"type": "silence", "feature": "rag-search", "start": "2026-10-06T10:00Z"}])
    )
    (incident,) = load_incidents(str(good), START, 7)
    assert (incident.detector, incident.hours, incident.start) == (
        "telemetry_gap", 1, "2026-10-06T10:00:00Z",
    )  # fmt: skip


def test_cli_generate_writes_the_landing_layout(tmp_path: Path) -> None:
    out = tmp_path / "landing"
    code = main([
        "generate", "--start", "2026-10-05T00:00Z", "--days", "1", "--calls-per-day", "500",
        "--seed", "5", "--incidents", "none", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jsonl"))
    assert len(files) == 24
    assert files[0] == "date=2026-10-05/hour=00/generator-0.jsonl"
    assert json.loads((out / "incidents.json").read_text()) == []
