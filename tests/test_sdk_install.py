"""`pip install spendwatch` (no extras) is the light SDK: a fresh virtual environment gets the
tracker, the schema and the OTel import, records a call, and holds none of the warehouse stack.

The package is built from this checkout (a normal, non-editable install); its dependencies come
from the package index at the versions of constraints.txt (pip's shared cache keeps it quick).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WAREHOUSE_STACK = {"dbt-core", "dagster", "great-expectations", "pandas", "duckdb", "numpy"}

RECORD = """
import json, sys
from spendwatch import Tracker
import spendwatch.otel

with Tracker(home=sys.argv[1], feature="sdk-install", writer_id="fresh-venv") as tracker:
    event_id = tracker.record(
        provider="openai", model="gpt-4o-mini", input_tokens=1200, output_tokens=80,
        cache_read_tokens=1000, occurred_at="2026-03-02T10:15:00Z", tags={"from": "venv"},
    )
heavy = sorted(
    m for m in sys.modules
    if m.split(".")[0] in {"dagster", "dbt", "pandas", "numpy", "duckdb", "great_expectations"}
)
print(json.dumps({"event_id": event_id, "stats": tracker.stats(), "heavy": heavy}))
"""


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=300, cwd=cwd
    )
    assert done.returncode == 0, f"{args[:4]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("sdk")
    # the package's own files, copied so that the build leaves nothing in the checkout
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("spendwatch", "orchestration"):
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    venv = base / "venv"
    # no pip inside the new environment: this interpreter's pip installs into it (--python)
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
         "-c", ROOT / "constraints.txt", source)  # fmt: skip
    return python


def test_the_bare_package_records_a_call_without_the_warehouse_stack(
    fresh_venv: Path, tmp_path: Path
) -> None:
    listed = json.loads(
        _run(sys.executable, "-m", "pip", "--python", fresh_venv, "list", "--format", "json")
    )
    installed = {p["name"].lower().replace("_", "-") for p in listed}
    assert "spendwatch" in installed and "pydantic" in installed
    assert installed & WAREHOUSE_STACK == set(), "the SDK pulled in the warehouse stack"

    home = tmp_path / "home"
    out = json.loads(
        _run(fresh_venv, "-c", RECORD, home, cwd=tmp_path)  # not the checkout: the installed copy
    )
    assert out["heavy"] == []
    assert (out["stats"]["written"], out["stats"]["dropped"]) == (1, 0)
    (landed,) = (home / "landing" / "calls").rglob("*.jsonl")
    assert landed.relative_to(home / "landing" / "calls").as_posix() == (
        f"date=2026-03-02/hour=10/fresh-venv-{landed.stem.rsplit('-', 1)[1]}.jsonl"
    )
    (line,) = landed.read_text().splitlines()
    event = json.loads(line)
    assert event["event_id"] == out["event_id"]
    assert (event["provider"], event["model"], event["feature"]) == (
        "openai", "gpt-4o-mini", "sdk-install"
    )  # fmt: skip
    assert (event["input_tokens"], event["output_tokens"], event["cache_read_tokens"]) == (
        1200, 80, 1000
    )  # fmt: skip
    assert event["occurred_at"].startswith("2026-03-02T10:15:00")
    assert event["tags"] == {"from": "venv"}


def test_the_bare_package_runs_the_otel_import_and_says_what_warehouse_commands_need(
    fresh_venv: Path, tmp_path: Path
) -> None:
    spendwatch = fresh_venv.parent / "spendwatch"
    span = {
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": "b7ad6b7169203331",
        "startTimeUnixNano": "1772446500000000000",  # 2026-03-02 10:15 UTC
        "endTimeUnixNano": "1772446501000000000",
        "attributes": [
            {"key": k, "value": v}
            for k, v in (
                ("gen_ai.provider.name", {"stringValue": "openai"}),
                ("gen_ai.operation.name", {"stringValue": "chat"}),
                ("gen_ai.response.model", {"stringValue": "gpt-4o"}),
                ("gen_ai.usage.input_tokens", {"intValue": "10"}),
                ("gen_ai.usage.output_tokens", {"intValue": "5"}),
            )
        ],
    }
    export = tmp_path / "traces.json"
    export.write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}))
    home = tmp_path / "home"
    out = _run(spendwatch, "--home", home, "import-otel", export, cwd=tmp_path)
    assert "imported 1 call events from 1 spans in 1 file(s)" in out
    assert len(list((home / "landing" / "calls" / "date=2026-03-02" / "hour=10").iterdir())) == 1

    env = {**os.environ, "SPENDWATCH_HOME": str(home)}
    done = subprocess.run(
        [spendwatch, "materialize", "--start", "2026-03-02T10:00Z"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 2
    assert "spendwatch[warehouse]" in done.stderr
