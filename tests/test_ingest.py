"""The ingest: every landing line loaded or quarantined with its reason; counts reconcile;
re-running is safe; a crash mid-load leaves the previous state."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import query

from orchestration.lib.ingest import MAX_LINE_BYTES, load_window
from spendwatch.landing import hour_dir, landing_file

HOUR = datetime(2026, 11, 3, 14, tzinfo=UTC)
NOW = HOUR + timedelta(minutes=20)  # "now" for the load: 14:20 UTC


def event(event_id: str, **change) -> dict:
    base = {
        "event_id": event_id,
        "occurred_at": "2026-11-03T14:05:00Z",
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 100,
        "output_tokens": 20,
        "feature": "smart-reply",
    }
    base.update(change)
    return {k: v for k, v in base.items() if v is not None}


def line(**kwargs) -> bytes:
    return json.dumps(event(**kwargs), ensure_ascii=False).encode()


# (raw line, expected reason or None when it must load)
CORPUS: list[tuple[bytes, str | None]] = [
    (line(event_id="ok-plain"), None),
    (line(event_id="ok-unicode", feature="résumé-✨", team_id="équipe"), None),
    (line(event_id="ok-zero", input_tokens=0, output_tokens=0), None),
    (
        line(
            event_id="ok-large", input_tokens=10**12, output_tokens=10**11, cache_read_tokens=10**11
        ),
        None,
    ),  # fmt: skip
    (line(event_id="ok-offset", occurred_at="2026-11-03T16:30:00+02:00"), None),
    (line(event_id="ok-nulls", endpoint=None, tags={"k": "v"}, status="error", attempt=3), None),
    (b'{"event_id": "broken", "provider": ', "invalid_json"),
    (b"[1, 2, 3]", "not_an_object"),
    (line(event_id="no-model", model=None), "missing_required_field"),
    (line(event_id="empty-feature", feature=""), "missing_required_field"),
    (line(event_id="str-tokens", input_tokens="100"), "wrong_type"),
    (line(event_id="tags-list", tags=["a"]), "wrong_type"),
    (line(event_id="obj-tokens", input_tokens={"n": 1}), "wrong_type"),  # crashed the load once
    (line(event_id="bool-tokens", output_tokens=True), "wrong_type"),
    (line(event_id="neg-tokens", output_tokens=-5), "invalid_tokens"),
    (line(event_id="frac-tokens", input_tokens=10.5), "invalid_tokens"),
    (line(event_id="bad-status", status="failed"), "invalid_value"),
    (line(event_id="v2", schema_version=2), "unknown_schema_version"),
    (line(event_id="no-offset", occurred_at="2026-11-03T14:10:00"), "timestamp_without_offset"),
    (line(event_id="garbage-ts", occurred_at="yesterday at noon"), "timestamp_unparseable"),
    (
        line(event_id="cache-over", cache_read_tokens=80, cache_write_tokens=30),
        "cache_tokens_exceed_input",
    ),  # fmt: skip
    (line(event_id="reason-over", reasoning_tokens=21), "reasoning_exceeds_output"),
    (line(event_id="next-hour", occurred_at="2026-11-03T15:10:00Z"), "timestamp_outside_partition"),
    (line(event_id="future", occurred_at="2026-11-03T14:50:00Z"), "timestamp_in_future"),
    (b'{"event_id": "latin1", "feature": "caf\xe9"}', "invalid_utf8"),
    (b'{"pad": "' + b"x" * MAX_LINE_BYTES + b'"}', "line_too_long"),
    (b"   ", "empty_line"),
    (line(event_id="ok-plain", input_tokens=999), "duplicate_event_id"),
]


def write_hour(landing: Path, hour: datetime, name: str, content: bytes) -> Path:
    folder = hour_dir(landing, hour)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(gzip.compress(content) if name.endswith(".gz") else content)
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path]:
    landing = tmp_path / "landing"
    write_hour(landing, HOUR, "app-1.jsonl", b"\n".join(raw for raw, _ in CORPUS) + b"\n")
    gz_lines = [line(event_id="gz-1"), line(event_id="gz-2")]
    write_hour(landing, HOUR, "app-2.jsonl.gz", b"\n".join(gz_lines) + b"\n")
    # a writer still writing: its last line has no newline yet
    write_hour(
        landing, HOUR, "app-3.jsonl", line(event_id="w-1") + b"\n" + line(event_id="w-2")[:40]
    )
    return tmp_path / "warehouse.duckdb", landing


def test_each_bad_line_is_quarantined_with_its_reason(corpus) -> None:
    warehouse, landing = corpus
    result = load_window(warehouse, landing, HOUR, HOUR + timedelta(hours=1), now=NOW)
    rejected = dict(
        query(
            warehouse,
            "select line_number, reason from raw.llm_calls_rejected "
            "where source_file like '%app-1.jsonl' order by 1",
        )
    )
    expected = {i + 1: reason for i, (_, reason) in enumerate(CORPUS) if reason}
    assert rejected == expected
    loaded = {r[0] for r in query(warehouse, "select event_id from raw.llm_calls")}
    assert loaded == {"ok-plain", "ok-unicode", "ok-zero", "ok-large", "ok-offset", "ok-nulls",
                      "gz-1", "gz-2", "w-1"}  # fmt: skip
    truncated = query(warehouse, "select reason, line_number from raw.llm_calls_rejected "
                                 "where source_file like '%app-3.jsonl'")  # fmt: skip
    assert truncated == [("truncated_line", 2)]
    assert (result.lines, result.loaded, result.rejected) == (len(CORPUS) + 4, 9, len(expected) + 1)


def test_details_say_what_was_wrong(corpus) -> None:
    warehouse, landing = corpus
    load_window(warehouse, landing, HOUR, HOUR + timedelta(hours=1), now=NOW)
    details = dict(query(warehouse, "select event_id, reason_detail from raw.llm_calls_rejected "
                                    "where event_id is not null"))  # fmt: skip
    assert details["no-model"] == "missing: model"
    assert details["str-tokens"] == "wrong type: input_tokens"
    assert details["cache-over"] == "80 + 30 > 100"
    assert "not in the hour" in details["next-hour"]
    (raw_line,) = query(warehouse, "select raw_line from raw.llm_calls_rejected "
                                   "where reason = 'line_too_long'")[0]  # fmt: skip
    assert len(raw_line) == 4096  # bounded


def test_values_are_typed_and_defaulted(corpus) -> None:
    warehouse, landing = corpus
    load_window(warehouse, landing, HOUR, HOUR + timedelta(hours=1), now=NOW)
    rows = query(
        warehouse,
        """select event_id, occurred_at, environment, status, attempt,
        cache_read_tokens, feature, tags::varchar from raw.llm_calls order by event_id""",
    )
    by_id = {r[0]: r[1:] for r in rows}
    assert by_id["ok-offset"][0] == datetime(2026, 11, 3, 14, 30)  # stored in UTC
    assert by_id["ok-plain"][1:5] == ("production", "ok", 1, 0)
    assert by_id["ok-nulls"][2:4] == ("error", 3)
    assert by_id["ok-unicode"][5] == "résumé-✨"
    assert by_id["ok-large"][4] == 10**11
    assert json.loads(by_id["ok-nulls"][6]) == {"k": "v"}


def test_lines_reconcile_per_file(corpus) -> None:
    warehouse, landing = corpus
    load_window(warehouse, landing, HOUR, HOUR + timedelta(hours=1), now=NOW)
    log = query(
        warehouse, "select source_file, lines, loaded, rejected, checksum from raw.load_log"
    )
    assert len(log) == 3
    for source_file, lines, loaded, rejected, checksum in log:
        assert lines == loaded + rejected
        in_tables = query(warehouse, f"""
            select (select count(*) from raw.llm_calls where source_file = '{source_file}'),
                   (select count(*) from raw.llm_calls_rejected where source_file = '{source_file}')
        """)[0]  # fmt: skip
        assert in_tables == (loaded, rejected)
        assert len(checksum) == 64


def test_reloading_replaces_the_partition(corpus) -> None:
    warehouse, landing = corpus
    window = (HOUR, HOUR + timedelta(hours=1))
    load_window(warehouse, landing, *window, now=NOW)
    snapshot = query(warehouse, "select * exclude (loaded_at) from raw.llm_calls order by all")
    load_window(warehouse, landing, *window, now=NOW)
    assert (
        query(warehouse, "select * exclude (loaded_at) from raw.llm_calls order by all") == snapshot
    )
    landing_file(landing, HOUR, "app-1").unlink()
    load_window(warehouse, landing, *window, now=NOW)
    assert query(warehouse, "select count(*) from raw.llm_calls") == [(3,)]
    assert query(warehouse, "select count(*) from raw.llm_calls_rejected") == [(1,)]
    assert query(warehouse, "select count(*) from raw.load_log") == [(2,)]


def test_other_hours_are_untouched(corpus) -> None:
    warehouse, landing = corpus
    other = HOUR - timedelta(hours=1)
    write_hour(landing, other, "app-1.jsonl",
               line(event_id="earlier", occurred_at="2026-11-03T13:30:00Z") + b"\n")  # fmt: skip
    load_window(warehouse, landing, other, HOUR + timedelta(hours=1), now=NOW)
    load_window(warehouse, landing, HOUR, HOUR + timedelta(hours=1), now=NOW)
    assert query(warehouse, "select count(*) from raw.llm_calls where event_id = 'earlier'") == [
        (1,)
    ]


CRASH_SCRIPT = """
import os, signal, sys
from datetime import datetime, timedelta
from pathlib import Path
from orchestration.lib.ingest import load_window
hour = datetime.fromisoformat(sys.argv[3])
load_window(Path(sys.argv[1]), Path(sys.argv[2]), hour, hour + timedelta(hours=1),
            now=hour + timedelta(minutes=20),
            before_commit=[lambda: os.kill(os.getpid(), signal.SIGKILL)])
"""


def test_a_crash_mid_load_leaves_the_previous_state(corpus) -> None:
    warehouse, landing = corpus
    window = (HOUR, HOUR + timedelta(hours=1))
    load_window(warehouse, landing, *window, now=NOW)
    before = query(warehouse, "select * exclude (loaded_at) from raw.llm_calls order by all")
    write_hour(landing, HOUR, "app-4.jsonl", line(event_id="late-1") + b"\n")
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(warehouse), str(landing), HOUR.isoformat()],
        capture_output=True,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert (
        query(warehouse, "select * exclude (loaded_at) from raw.llm_calls order by all") == before
    )
    load_window(warehouse, landing, *window, now=NOW)
    ids = [r[0] for r in query(warehouse, "select event_id from raw.llm_calls")]
    assert ids.count("late-1") == 1 and len(ids) == len(set(ids)) == len(before) + 1


def test_lines_are_numbered_and_judged_across_chunk_boundaries(tmp_path: Path, monkeypatch) -> None:
    """Lines travel in pieces (a chunk's whole UTF-8 lines at once): with 100-byte chunks
    every line spans a boundary, CRLF endings are dropped, and the one line with a byte that
    is not UTF-8 is rejected alone, with its own number, in a plain and a gzip file."""
    from orchestration.lib.ingest import landing

    monkeypatch.setattr(landing, "CHUNK_BYTES", 100)
    lines = [line(event_id=f"e-{i}", feature=f"f{i}") for i in range(1, 41)]
    lines[16] = lines[16].replace(b'"f17"', b'"caf\xe9"')  # line 17: Latin-1, not UTF-8
    content = b"\r\n".join(lines) + b"\r\n"
    write_hour(tmp_path / "landing", HOUR, "crlf.jsonl", content)
    write_hour(tmp_path / "landing", HOUR, "crlf-gz.jsonl.gz", content.replace(b'"e-', b'"z-'))
    warehouse = tmp_path / "warehouse.duckdb"
    result = load_window(warehouse, tmp_path / "landing", HOUR, HOUR + timedelta(hours=1), now=NOW)
    assert (result.lines, result.loaded, result.rejected) == (80, 78, 2)
    loaded = query(warehouse, "select event_id, line_number, feature from raw.llm_calls "
                              "where source_file like '%crlf.jsonl' order by 2")  # fmt: skip
    assert loaded == [(f"e-{i}", i, f"f{i}") for i in range(1, 41) if i != 17]
    rejected = query(warehouse, "select source_file like '%.gz', line_number, reason, raw_line "
                                "from raw.llm_calls_rejected order by 1")  # fmt: skip
    assert [r[:3] for r in rejected] == [(False, 17, "invalid_utf8"), (True, 17, "invalid_utf8")]
    assert rejected[0][3].endswith('"feature": "caf\ufffd"}')  # no CR kept
    assert query(warehouse, "select count(*) from raw.llm_calls where contains(tags::varchar, "
                            "chr(13)) or contains(feature, chr(13))") == [(0,)]  # fmt: skip


def test_a_duplicate_is_looked_for_within_the_horizon_only(tmp_path: Path) -> None:
    """The cost of finding an event loaded before must not grow with the history: raw.llm_calls
    is searched within DUPLICATE_HORIZON of the batch's hours. Inside it the second copy is
    rejected; further away it loads, and a whole-table dbt test (`unique` on
    fct_llm_calls.event_id) is what names it (docs/architecture.md, "Ingest")."""
    from orchestration.lib.ingest.validate import DUPLICATE_HORIZON

    landing, warehouse = tmp_path / "landing", tmp_path / "warehouse.duckdb"
    inside = HOUR + DUPLICATE_HORIZON - timedelta(hours=1)
    beyond = HOUR + DUPLICATE_HORIZON + timedelta(hours=1)
    for at in (HOUR, inside, beyond):
        write_hour(
            landing,
            at,
            "app.jsonl",
            line(event_id="same", occurred_at=f"{at:%Y-%m-%dT%H}:05:00Z") + b"\n",
        )
    for at in (HOUR, inside, beyond):  # the hourly schedule, one hour at a time
        load_window(
            warehouse, landing, at, at + timedelta(hours=1), now=beyond + timedelta(hours=1)
        )
    assert query(warehouse, "select partition_hour from raw.llm_calls order by 1") == [
        (HOUR.replace(tzinfo=None),),
        (beyond.replace(tzinfo=None),),
    ]
    assert query(warehouse, "select partition_hour, reason, reason_detail "
                            "from raw.llm_calls_rejected") == [
        (inside.replace(tzinfo=None), "duplicate_event_id",
         f"already loaded in hour {HOUR:%Y-%m-%d %H}:00 ({landing_file(landing, HOUR, 'app')})")
    ]  # fmt: skip


def test_only_the_window_folders_are_listed(tmp_path: Path, monkeypatch) -> None:
    """An hourly load lists the window's date=/hour= folders, never the whole landing tree:
    other hours' folders are not listed, and nothing globs."""
    from orchestration.lib.ingest import landing_files

    landing = tmp_path / "landing"
    write_hour(landing, HOUR, "app.jsonl", line(event_id="a") + b"\n")
    for days in range(1, 30):
        write_hour(landing, HOUR - timedelta(days=days), "app.jsonl", b"{}\n")
    listed, iterdir = [], Path.iterdir

    def recording_iterdir(self):
        listed.append(self)
        return iterdir(self)

    def no_glob(self, *args, **kwargs):
        raise AssertionError(f"globbed {self}")

    monkeypatch.setattr(Path, "iterdir", recording_iterdir)
    monkeypatch.setattr(Path, "glob", no_glob)
    monkeypatch.setattr(Path, "rglob", no_glob)
    found = landing_files(landing, HOUR, HOUR + timedelta(hours=1))
    assert [path for _, path in found] == [landing_file(landing, HOUR, "app")]
    assert listed == [hour_dir(landing, HOUR)]
