"""Fault injection for the ingest (issue 13, items 2, 3, 4, 6, 7, 8): files that vanish, break,
grow while read, repeat events, bend the contract or try to exhaust memory. Each test says
what the ingest did before (main at 101730d) and fails there."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import query

from orchestration.lib.ingest import load_window
from spendwatch.landing import hour_dir, landing_file

HOUR = datetime(2026, 11, 3, 10, tzinfo=UTC)
NEXT = HOUR + timedelta(hours=1)
NOW = HOUR + timedelta(hours=3)


def event(event_id: str, at: datetime = HOUR, **change) -> dict:
    base = {
        "event_id": event_id,
        "occurred_at": (at + timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 100,
        "output_tokens": 20,
        "feature": "smart-reply",
    }
    base.update(change)
    return base


def jsonl(*events: dict) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def write(landing: Path, hour: datetime, name: str, content: bytes) -> Path:
    folder = hour_dir(landing, hour)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    return folder / name


def load(tmp_path: Path, start: datetime = HOUR, end: datetime = NEXT, **kwargs):
    return load_window(tmp_path / "warehouse.duckdb", tmp_path / "landing", start, end,
                       now=NOW, **kwargs)  # fmt: skip


def raw_suite(tmp_path: Path, start: datetime = HOUR, end: datetime = NEXT) -> dict:
    from orchestration.lib.quality import run_raw_suites

    (outcome,) = run_raw_suites(tmp_path / "warehouse.duckdb", start, end, NOW)
    return {o.check_name: o for o in outcome.outcomes}


def test_item2_an_hour_whose_files_vanished_keeps_its_rows(tmp_path: Path) -> None:
    """Main deleted the hour's 3 rows and committed it empty, silently, when its folder was
    gone (an unmounted volume, a retention job, and the late-data sensor asks for exactly that
    reload); no check named the hour."""
    landing = tmp_path / "landing"
    write(landing, HOUR, "app.jsonl", jsonl(event("a"), event("b"), event("c")))
    write(landing, NEXT, "app.jsonl", jsonl(event("d", NEXT)))
    load(tmp_path, HOUR, NEXT + timedelta(hours=1))
    for path in hour_dir(landing, HOUR).iterdir():
        path.unlink()
    hour_dir(landing, HOUR).rmdir()

    result = load(tmp_path, HOUR, NEXT + timedelta(hours=1))
    ids = query(tmp_path / "warehouse.duckdb", "select event_id from raw.llm_calls order by 1")
    assert ids == [("a",), ("b",), ("c",), ("d",)]
    assert result.kept_hours == {HOUR: 3}
    assert result.warnings()[0].startswith(
        "landing files for 2026-11-03T10 are missing; 3 rows kept"
    )
    assert query(tmp_path / "warehouse.duckdb",
                 "select file_error, lines from raw.load_log where partition_hour = ?",
                 [HOUR.replace(tzinfo=None)]) == [("landing_files_missing", 3)]  # fmt: skip
    checks = raw_suite(tmp_path, HOUR, NEXT + timedelta(hours=1))
    present = checks["landing_files_present"]
    assert not present.passed and present.severity == "error"
    assert present.failing_hours == [HOUR.replace(tzinfo=None)]
    assert checks["broken_files"].passed  # a vanished file is not a broken one

    # only when asked for: the hour is emptied
    result = load(tmp_path, HOUR, NEXT + timedelta(hours=1), allow_empty=True)
    assert result.kept_hours == {}
    assert query(tmp_path / "warehouse.duckdb", "select event_id from raw.llm_calls") == [("d",)]


def test_item2_the_asset_reads_allow_empty_from_config_or_environment(monkeypatch) -> None:
    """Main had no way to ask for the deletion (it always deleted)."""
    from orchestration.defs.assets.raw import RawLoadConfig, allow_empty_reload
    from spendwatch.cli import build_parser

    monkeypatch.delenv("SPENDWATCH_ALLOW_EMPTY_RELOAD", raising=False)
    assert not allow_empty_reload(RawLoadConfig())
    assert allow_empty_reload(RawLoadConfig(allow_empty_reload=True))
    monkeypatch.setenv("SPENDWATCH_ALLOW_EMPTY_RELOAD", "1")
    assert allow_empty_reload(RawLoadConfig())
    args = build_parser().parse_args(["materialize", "--start", "2026-11-03T10", "--allow-empty"])
    assert args.allow_empty


def test_item3_a_broken_file_is_quarantined_and_the_others_load(tmp_path: Path) -> None:
    """Main stopped the whole window at the truncated gzip with `EOFError: Compressed file
    ended before the end-of-stream marker was reached`, naming no file; the other files of the
    window (and of a 28-day backfill) did not load."""
    landing = tmp_path / "landing"
    write(landing, HOUR, "good.jsonl", jsonl(event("good-1"), event("good-2")))
    whole = gzip.compress(
        jsonl(*(event(f"gz-{i}", feature="f" + "x" * (i % 7)) for i in range(2000)))
    )
    cut = write(landing, HOUR, "cut.jsonl.gz", whole[: len(whole) * 2 // 3])
    utf16 = write(landing, HOUR, "utf16.jsonl", jsonl(event("u-1")).decode().encode("utf-16"))
    unreadable = hour_dir(landing, HOUR) / "unreadable.jsonl"
    unreadable.mkdir()  # a name the ingest lists but cannot open (chmod 000 does not stop root)
    write(landing, NEXT, "next.jsonl", jsonl(event("next-1", NEXT)))

    result = load(tmp_path, HOUR, NEXT + timedelta(hours=1))

    errors = dict(query(tmp_path / "warehouse.duckdb",
                        "select source_file, file_error from raw.load_log"))  # fmt: skip
    assert errors[str(landing / "date=2026-11-03/hour=10/good.jsonl")] is None
    assert errors[str(cut)].startswith(f"corrupt_gzip: {cut}: ")
    assert errors[str(utf16)] == f"not_utf8: {utf16}: a UTF-16 byte order mark"
    assert errors[str(unreadable)].startswith(f"unreadable_file: {unreadable}: ")
    assert set(result.file_errors) == {str(cut), str(utf16), str(unreadable)}
    # the lines before the damage loaded; the bytes after it are the file error's
    n_cut, loaded_cut, rejected_cut = query(
        tmp_path / "warehouse.duckdb",
        "select lines, loaded, rejected from raw.load_log where source_file = ?",
        [str(cut)],
    )[0]
    assert loaded_cut > 500 and rejected_cut == 0 and n_cut == loaded_cut
    ids = {r[0] for r in query(tmp_path / "warehouse.duckdb", "select event_id from raw.llm_calls")}
    assert {"good-1", "good-2", "next-1"} <= ids and "gz-0" in ids
    checks = raw_suite(tmp_path, HOUR, NEXT + timedelta(hours=1))
    assert not checks["broken_files"].passed
    assert checks["broken_files"].failing_hours == [HOUR.replace(tzinfo=None)]
    assert checks["broken_files"].values_by_hour == {HOUR.replace(tzinfo=None): [3]}


def test_item4_the_load_log_describes_exactly_the_bytes_read(tmp_path: Path, monkeypatch) -> None:
    """Main hashed the bytes it read but stat-ed the file afterwards: a line appended between
    the two was counted in size_bytes but never read, so the late-data sensor (which trusts an
    unchanged size and mtime) never asked for it again."""
    from orchestration.defs.sensors import changed_hours

    landing = tmp_path / "landing"
    path = write(landing, HOUR, "app.jsonl", jsonl(event("first")))
    real_stat, appended = os.stat, []

    def stat_with_a_writer_racing(target, *args, **kwargs):
        if Path(target) == path and not appended:  # the writer appends right around the stat
            with open(path, "ab") as out:
                out.write(jsonl(event("racing")))
            appended.append(True)
        return real_stat(target, *args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(os, "stat", stat_with_a_writer_racing)
        load(tmp_path)
    data = path.read_bytes()
    size, checksum, lines = query(
        tmp_path / "warehouse.duckdb", "select size_bytes, checksum, lines from raw.load_log"
    )[0]
    assert hashlib.sha256(data[:size]).hexdigest() == checksum
    assert data[:size].count(b"\n") == lines
    loaded = {
        r[0] for r in query(tmp_path / "warehouse.duckdb", "select event_id from raw.llm_calls")
    }
    assert loaded == {"first", "racing"} or (size < len(data) and loaded == {"first"})

    # a file that grows after its load is found by the late-data sensor and reloaded
    with open(path, "ab") as out:
        out.write(jsonl(event("later")))
    assert set(changed_hours(tmp_path / "warehouse.duckdb", landing, {HOUR}, NOW)) == {HOUR}
    load(tmp_path)
    loaded = {
        r[0] for r in query(tmp_path / "warehouse.duckdb", "select event_id from raw.llm_calls")
    }
    assert loaded == {"first", "racing", "later"}
    assert changed_hours(tmp_path / "warehouse.duckdb", landing, {HOUR}, NOW) == {}


def test_item6_event_id_is_unique_in_the_warehouse_whatever_the_window(tmp_path: Path) -> None:
    """Main checked duplicates within the loaded window only: loading 11:00 alone accepted an
    event that 10:00 already held, so the same call was counted twice."""
    landing = tmp_path / "landing"
    write(landing, HOUR, "app.jsonl", jsonl(event("shared"), event("ten")))
    write(landing, NEXT, "app.jsonl",
          jsonl(event("shared", NEXT), event("eleven", NEXT)))  # fmt: skip
    warehouse = tmp_path / "warehouse.duckdb"

    def outcome() -> list[tuple]:
        return query(warehouse, """
            select partition_hour, event_id, null, null from raw.llm_calls
            union all
            select partition_hour, event_id, reason, reason_detail from raw.llm_calls_rejected
            order by 1, 2""")  # fmt: skip

    load(tmp_path, HOUR, NEXT)
    load(tmp_path, NEXT, NEXT + timedelta(hours=1))  # the hourly schedule
    one_by_one = outcome()
    assert one_by_one == [
        (datetime(2026, 11, 3, 10), "shared", None, None),
        (datetime(2026, 11, 3, 10), "ten", None, None),
        (datetime(2026, 11, 3, 11), "eleven", None, None),
        (datetime(2026, 11, 3, 11), "shared", "duplicate_event_id",
         f"already loaded in hour 2026-11-03 10:00 ({landing_file(landing, HOUR, 'app')})"),
    ]  # fmt: skip
    load(tmp_path, NEXT, NEXT + timedelta(hours=1))  # reloading an hour does not reject its own
    assert outcome() == one_by_one
    warehouse.unlink()
    load(tmp_path, HOUR, NEXT + timedelta(hours=1))  # a backfill over both hours
    assert [row[:3] for row in outcome()] == [row[:3] for row in one_by_one]


def test_item6_reimporting_a_growing_otlp_export_adds_no_duplicates(tmp_path: Path) -> None:
    """Main named the landing file by the export's content hash: importing an export again
    after the collector appended to it wrote a second file with every earlier span again, and
    the ingest rejected all of them as duplicate_event_id (rejected share 2/3 here)."""
    from spendwatch.otel import import_otel

    def request(span_id: str, minute: int) -> bytes:
        start = int((HOUR + timedelta(minutes=minute)).timestamp() * 1e9)
        span = {
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": span_id,
            "name": "chat gpt-4o", "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + 10**9),
            "attributes": [
                {"key": k, "value": v} for k, v in {
                    "gen_ai.operation.name": {"stringValue": "chat"},
                    "gen_ai.provider.name": {"stringValue": "openai"},
                    "gen_ai.request.model": {"stringValue": "gpt-4o"},
                    "gen_ai.usage.input_tokens": {"intValue": "100"},
                    "gen_ai.usage.output_tokens": {"intValue": "10"},
                }.items()
            ],
        }  # fmt: skip
        scope = {"resource": {"attributes": []}, "scopeSpans": [{"spans": [span]}]}
        return json.dumps({"resourceSpans": [scope]}).encode() + b"\n"

    home = tmp_path / "home"
    export = tmp_path / "traces.jsonl"
    export.write_bytes(request("a000000000000001", 1) + request("a000000000000002", 2))
    assert import_otel([export], home)["imported"] == 2
    with open(export, "ab") as out:  # the collector appends
        out.write(request("a000000000000003", 3))
    assert import_otel([export], home)["imported"] == 3
    result = load_window(home / "warehouse.duckdb", home / "landing" / "calls", HOUR, NEXT, now=NOW)
    assert (result.loaded, result.rejected) == (3, 0)


def _contract_rejects(line: str) -> bool:
    from pydantic import ValidationError

    from spendwatch.schema import CallEvent

    try:
        CallEvent.model_validate(json.loads(line))
    except ValidationError:
        return True
    return False


HOLES = [
    ("tokens over the BIGINT range", json.dumps(event("big", input_tokens=10**19)),
     "invalid_tokens"),
    ("a fraction in an integer field", json.dumps(event("frac", attempt=2.5)), "wrong_type"),
    ("an integral float in an integer field", json.dumps(event("two", attempt=2.0)), "wrong_type"),
    ("attempt over the INTEGER range", json.dumps(event("att", attempt=2**31)), "invalid_value"),
    ("a schema_version that wraps", json.dumps(event("wrap", schema_version=2**32 + 1)),
     "unknown_schema_version"),
    ("a whitespace-only event_id", json.dumps(event("   ")), "missing_required_field"),
    ("a whitespace-only feature", json.dumps(event("ws", feature="\u3000\t")),
     "missing_required_field"),
    ("a tag that is a number", json.dumps(event("tnum", tags={"a": 1})), "wrong_type"),
    ("a nested tag", json.dumps(event("tnest", tags={"a": {"b": "c"}})), "wrong_type"),
    ("a key twice", json.dumps(event("dupkey"))[:-1] + ', "model": "gpt-4o-mini"}',
     "duplicate_key"),
    ("a tag key twice", json.dumps(event("duptag"))[:-1] + ', "tags": {"k": "a", "k": "b"}}',
     "duplicate_key"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "line", "reason"), HOLES, ids=[h[0] for h in HOLES])
def test_item7_validation_holes_are_rejected_not_coerced(tmp_path, case, line, reason) -> None:
    """Main loaded every one of these: input_tokens 10^19 as NULL, attempt 2.5 as 3, a
    schema_version of 2^32+1 as 1 (wrapped), '   ' as an event_id, {"a": 1} as tags, and a
    repeated key with DuckDB's first value (Python readers take the last)."""
    write(tmp_path / "landing", HOUR, "app.jsonl",
          b"\xef\xbb\xbf" + jsonl(event("bom-first")) + line.encode() + b"\n")  # fmt: skip
    result = load(tmp_path)
    rows = query(tmp_path / "warehouse.duckdb",
                 "select line_number, reason from raw.llm_calls_rejected")  # fmt: skip
    assert rows == [(2, reason)], case
    # the BOM at the start of the file is accepted: the first line loads
    assert query(tmp_path / "warehouse.duckdb", "select event_id from raw.llm_calls") == [
        ("bom-first",)
    ]
    assert (result.loaded, result.rejected) == (1, 1)
    # the contract (tracker, OTel import) agrees; a repeated key never reaches it from Python
    if reason != "duplicate_key":
        assert _contract_rejects(line), case


def test_item7_the_token_part_rule_is_one_definition() -> None:
    """Main wrote the rule five times (the pydantic validator, the ingest's SQL check and its
    detail, the OTel import's outside-the-total guess, the tracker's clamping)."""
    from orchestration.lib.ingest.validate import validate_sql
    from spendwatch.otel.mapping import span_to_event
    from spendwatch.schema import TOKEN_PARTS, CallEvent, token_parts_exceeding
    from spendwatch.tracker.usage import token_fields

    assert [r.reason for r in TOKEN_PARTS] == ["cache_tokens_exceed_input",
                                               "reasoning_exceeds_output"]  # fmt: skip
    sql = validate_sql(NOW)
    for rule in TOKEN_PARTS:
        assert f"when {' + '.join(rule.parts)} > {rule.total} then '{rule.reason}'" in sql
    fields = token_fields(100, 10, 80, 30, 11)
    assert token_parts_exceeding(fields) == []
    assert fields == {"input_tokens": 100, "output_tokens": 10, "cache_read_tokens": 80,
                      "cache_write_tokens": 20, "reasoning_tokens": 10}  # fmt: skip
    with pytest.raises(ValueError, match="cache_read_tokens \\+ cache_write_tokens exceed"):
        CallEvent.model_validate(event("x", cache_read_tokens=90, cache_write_tokens=20))
    start = int(HOUR.timestamp() * 1e9)
    mapped, _ = span_to_event({
        "traceId": "7" * 32, "spanId": "5" * 16, "startTimeUnixNano": str(start),
        "attributes": [
            {"key": "gen_ai.provider.name", "value": {"stringValue": "anthropic"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "claude-3-5-haiku"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "10"}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "5"}},
            {"key": "gen_ai.usage.cache_read.input_tokens", "value": {"intValue": "90"}},
        ]}, {})  # fmt: skip
    assert (mapped["input_tokens"], mapped["cache_read_tokens"]) == (100, 90)  # added in


def test_item7_whitespace_is_what_the_contract_strips() -> None:
    """The ingest trims (and reads as empty) exactly the characters pydantic strips."""
    from spendwatch.schema import WHITESPACE, CallEvent

    stripped = "".join(
        c for c in map(chr, range(0x3001))
        if CallEvent.model_validate(event("e", feature=f"{c}x{c}")).feature == "x"
    )  # fmt: skip
    assert stripped == WHITESPACE


MEMORY_SCRIPT = """
import resource, sys
from datetime import datetime, timedelta
from pathlib import Path
from orchestration.lib.ingest import load_window
hour = datetime.fromisoformat(sys.argv[3])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
r = load_window(Path(sys.argv[1]), Path(sys.argv[2]), hour, hour + timedelta(hours=1),
                now=hour + timedelta(hours=3))
grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024
errors = sorted(getattr(r, "file_errors", {}).values())
print(grew, r.loaded, r.rejected, sorted(r.rejected_by_reason), errors)
"""


def test_item8_a_gzip_bomb_and_an_oversized_line_are_stopped_by_size(tmp_path: Path) -> None:
    """Main decompressed the whole file and held every line of the window in Python lists:
    this 512 MiB bomb (500 KiB on disk) alone took well over 1 GiB; the 20 MiB line was read
    whole before being flagged."""
    landing = tmp_path / "landing"
    folder = hour_dir(landing, HOUR)
    folder.mkdir(parents=True)
    with gzip.open(folder / "bomb.jsonl.gz", "wb", compresslevel=9) as out:
        block = b" " * (1 << 20)
        for _ in range(512):
            out.write(block)
    write(landing, HOUR, "long.jsonl",
          jsonl(event("before")) + b'{"pad": "' + b"x" * (20 << 20) + b'"}\n'
          + jsonl(event("after")))  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "w.duckdb"), str(landing),
         HOUR.replace(tzinfo=None).isoformat()],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    grew, loaded, rejected, reasons, errors = proc.stdout.strip().split(" ", 4)
    assert int(grew) < 200, f"peak RSS grew {grew} MiB while loading"
    assert (int(loaded), int(rejected)) == (2, 1)  # the bomb is a file error, not a line
    assert reasons == "['line_too_long']"
    assert "gzip_too_large: " in errors and "bomb.jsonl.gz" in errors
    (raw_line,) = query(tmp_path / "w.duckdb", "select raw_line from raw.llm_calls_rejected "
                                               "where reason = 'line_too_long'")[0]  # fmt: skip
    assert len(raw_line) == 4096
