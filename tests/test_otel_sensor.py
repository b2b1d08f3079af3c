"""The `otel_exports` sensor follows the Collector's file exporter: a file that grows while the
sensor ticks (half-written last lines included), is rotated, gzipped, or written as zstd frames
lands every span exactly once, and the hours touched are re-run."""

from __future__ import annotations

import gzip
import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import zstandard
from helpers import isolated_home, query

from orchestration.defs.otel import otel_exports
from orchestration.defs.project import HOUR, window_tags
from orchestration.defs.resources import SpendwatchHome
from orchestration.defs.sensors import late_landing_files
from orchestration.lib.ingest import load_window
from spendwatch.landing import ALL_FILES
from spendwatch.otel import watch
from spendwatch.otel.watch import read_records, watch_exports

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
START = NOW - timedelta(hours=5)  # the spans fall in two hours the schedule has already run
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def request(first: int, count: int) -> dict:
    """One ExportTraceServiceRequest as the Collector writes it: hex ids, enum numbers."""
    spans = []
    for n in range(first, first + count):
        start = START + timedelta(minutes=7 * n)  # n >= 9 falls in the second hour
        nanos = int(start.timestamp() * 1e9)
        spans.append({
            "traceId": TRACE, "spanId": f"{n + 1:016x}", "parentSpanId": "", "kind": 3,
            "name": "chat gpt-4o-mini", "startTimeUnixNano": str(nanos),
            "endTimeUnixNano": str(nanos + 800_000_000), "status": {"code": 1},
            "attributes": [
                {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
                {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": str(1000 + n)}},
                {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "50"}},
            ],
        })  # fmt: skip
    return {
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "helpdesk"}}]},
            "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2"},
                            "spans": spans}],
        }]
    }  # fmt: skip


def line(first: int, count: int) -> bytes:
    return json.dumps(request(first, count), separators=(",", ":")).encode() + b"\n"


def frame(first: int, count: int) -> bytes:
    """`compression: zstd`: each request compressed, behind its 4-byte big-endian length."""
    packed = zstandard.ZstdCompressor().compress(line(first, count)[:-1])
    return len(packed).to_bytes(4, "big") + packed


def landed(home) -> Counter:
    return Counter(
        json.loads(text)["event_id"]
        for path in home.landing.glob(ALL_FILES)
        for text in path.read_text().splitlines()
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):
    with isolated_home(tmp_path_factory.mktemp("otel_sensor") / "home") as home:
        yield home


def test_a_growing_rotated_compressed_export_lands_every_span_once(home) -> None:
    cursor = [None]
    requested: list[dg.RunRequest] = []

    def tick() -> str:
        """One evaluation; what it said (its skip reason, else its run requests)."""
        context = dg.build_sensor_context(
            instance=dg.DagsterInstance.get(), cursor=cursor[0],
            resources={"spendwatch": SpendwatchHome()},
        )  # fmt: skip
        result = otel_exports(context)
        if isinstance(result, dg.SkipReason):
            said = result.skip_message
        else:
            cursor[0] = result.cursor
            requested.extend(result.run_requests or [])
            said = (
                result.skip_reason.skip_message
                if result.skip_reason
                else f"runs for {[r.tags['spendwatch/window_start'] for r in result.run_requests]}"
            )
        print(f"tick: {sum(landed(home).values()):2d} span lines landed | {said}")
        return said

    assert "no OpenTelemetry export folder" in tick()
    exports = home.otel_exports
    assert exports == home.home / "landing" / "otel"
    exports.mkdir(parents=True)
    active = exports / "traces.json"

    # 0. the Collector has written half of its first request: nothing to take yet
    active.write_bytes(line(0, 3)[:50])
    assert tick() == f"nothing new in {exports}; waiting for the rest of traces.json"
    # 1. two requests and half of a third: the half line waits
    half = line(5, 3)
    active.write_bytes(line(0, 3) + line(3, 2) + half[:40])
    tick()
    assert len(landed(home)) == 5
    # 2. the line completes, another follows
    with open(active, "ab") as out:
        out.write(half[40:] + line(8, 2))
    tick()
    assert len(landed(home)) == 10
    assert tick().startswith("nothing new")  # no change: nothing again
    # 3. one more line, then the Collector rotates (rename + new file) before the sensor looks,
    #    and logrotate gzips the rotated file
    with open(active, "ab") as out:
        out.write(line(10, 2))
    rotated = exports / "traces-2026-11-28T10-00-00.000.json"
    active.rename(rotated)
    active.write_bytes(line(12, 1))
    with open(rotated, "rb") as raw, gzip.open(f"{rotated}.gz", "wb") as packed:
        packed.write(raw.read())
    rotated.unlink()
    tick()
    assert len(landed(home)) == 13
    # 4. a second exporter with `compression: zstd`, its last frame still being written
    zst = exports / "traces-zstd.json"
    second = frame(15, 2)
    zst.write_bytes(frame(13, 2) + second[:10])
    tick()
    assert len(landed(home)) == 15
    zst.write_bytes(frame(13, 2) + second)
    before = json.loads(cursor[0])
    tick()
    # a tick that died after writing its landing files but before its cursor was saved is
    # repeated from the old cursor: it rewrites the same files, adding nothing
    again = watch_exports(exports, home.landing, before)
    assert again.imported == 2 and json.loads(cursor[0]) == again.cursor

    counts = landed(home)
    assert set(counts) == {f"{TRACE}{n + 1:016x}" for n in range(17)}
    assert set(counts.values()) == {1}  # every span exactly once
    with pytest.MonkeyPatch.context() as mp:  # files unchanged since the last look: not read
        mp.setattr(watch, "_new_records", lambda *_: pytest.fail("an unchanged file was read"))
        assert tick().startswith("nothing new")
    # the runs asked for: the two hours the spans fell in, each time they got spans
    hours = sorted({r.tags["spendwatch/window_start"] for r in requested})
    assert hours == [f"{START:%Y-%m-%d %H:%M}", f"{START + timedelta(hours=1):%Y-%m-%d %H:%M}"]
    assert len({r.run_key for r in requested}) == len(requested)

    # what the requested runs load first (the ingest, called directly: the runs themselves are
    # the hourly pipeline's, tested elsewhere): all 17 spans, none rejected as a duplicate
    loaded = load_window(home.warehouse, home.landing, START, START + timedelta(hours=2))
    assert (loaded.loaded, loaded.rejected) == (17, 0)
    assert query(home.warehouse, "select count(*), count(distinct event_id) from raw.llm_calls") \
        == [(17, 17)]  # fmt: skip

    # a run of the first hour is waiting to start (queued) when more of its spans land: it reads
    # them when it starts, so neither this sensor nor the late-data sensor asks for another
    instance = dg.DagsterInstance.get()
    queued = dg.DagsterRun(job_name="hourly_pipeline", run_id=str(uuid.uuid4()),
                           status=dg.DagsterRunStatus.NOT_STARTED,
                           tags=window_tags(START, START + HOUR))  # fmt: skip
    instance.add_run(queued)
    with open(active, "ab") as out:
        out.write(line(17, 1))  # minute 119: the second hour; then one in the first
        out.write(line(0, 1).replace(b'"0000000000000001"', b'"00000000000000ff"'))
    requested.clear()
    said = tick()
    assert said == f"runs for ['{START + HOUR:%Y-%m-%d %H:%M}']"  # the first hour has its run
    late = late_landing_files(dg.build_sensor_context(
        instance=instance, resources={"spendwatch": SpendwatchHome()}))  # fmt: skip
    assert [r.tags["spendwatch/window_start"] for r in late] == [f"{START + HOUR:%Y-%m-%d %H:%M}"]
    instance.delete_run(queued.run_id)  # without the queued run, the late-data sensor asks
    late = late_landing_files(dg.build_sensor_context(
        instance=instance, resources={"spendwatch": SpendwatchHome()}))  # fmt: skip
    assert sorted(r.tags["spendwatch/window_start"] for r in late) == [
        f"{START:%Y-%m-%d %H:%M}", f"{START + HOUR:%Y-%m-%d %H:%M}"]  # fmt: skip


def test_records_of_each_format(tmp_path: Path) -> None:
    plain = line(0, 1) + line(1, 1)
    records, incomplete = read_records(plain + b'{"resourceSp')
    assert [(r.start, r.end) for r in records] == [(0, len(line(0, 1))), (len(line(0, 1)),
                                                   len(plain))] and incomplete  # fmt: skip
    gz_records, _ = read_records(gzip.compress(plain))
    assert [r.payload for r in gz_records] == [r.payload for r in records]
    framed, incomplete = read_records(frame(0, 1) + frame(1, 1))
    assert [json.loads(r.payload) for r in framed] == [request(0, 1), request(1, 1)]
    assert not incomplete
    with pytest.raises(ValueError, match="format: json"):
        read_records(b"\x12\x8b\x02binary protobuf")


def test_import_otel_reads_a_zstd_collector_export_too(tmp_path: Path) -> None:
    """`spendwatch import-otel` on a rotated `compression: zstd` file; a damaged one is named."""
    from spendwatch.otel import import_otel

    good, bad = tmp_path / "traces-1.json", tmp_path / "traces-2.json"
    good.write_bytes(frame(0, 2) + frame(2, 1))
    damaged = bytearray(frame(3, 1))
    damaged[12:20] = b"\x00" * 8
    bad.write_bytes(bytes(damaged))
    stats = import_otel([good, bad], tmp_path / "home")
    assert (stats["files"], stats["spans"], stats["imported"]) == (1, 3, 3)
    (error,) = stats["errors"]
    assert error.startswith(f"{bad}: damaged zstd frame at byte 0")


def test_an_agent_span_written_after_its_model_calls_is_not_counted_again(tmp_path: Path) -> None:
    """The agent span ends after its chat span, so the Collector may write it in a later batch,
    which the sensor reads in a later look: it is still known to cover the chat span's usage."""
    document = request(0, 1)
    chat = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    agent_id, step_id = "00000000000000aa", "00000000000000bb"
    chat["parentSpanId"] = step_id
    step = {
        **chat,
        "spanId": step_id,
        "parentSpanId": agent_id,
        "name": "step",
        "attributes": [{"key": "http.route", "value": {"stringValue": "/step"}}],
    }
    agent = {**chat, "spanId": agent_id, "parentSpanId": "", "name": "invoke_agent helper",
             "attributes": [*chat["attributes"][1:],
                            {"key": "gen_ai.operation.name",
                             "value": {"stringValue": "invoke_agent"}}]}  # fmt: skip
    landing, exports = tmp_path / "calls", tmp_path / "otel"
    exports.mkdir()

    def write(*spans) -> None:
        document["resourceSpans"][0]["scopeSpans"][0]["spans"] = list(spans)
        with open(exports / "traces.json", "ab") as out:
            out.write(json.dumps(document).encode() + b"\n")

    write(chat)
    first = watch_exports(exports, landing, None)
    write(step)  # the step between them arrives on its own
    second = watch_exports(exports, landing, first.cursor)
    write(agent)
    third = watch_exports(exports, landing, second.cursor)
    assert (first.imported, second.imported, third.imported) == (1, 0, 0)
    assert third.skipped["agent_span_with_model_call_children"] == 1
    # without the memory of the earlier looks, the agent's usage would be counted a second time
    alone = watch_exports(exports, tmp_path / "other", {"files": second.cursor["files"]})
    assert alone.imported == 1
    # `import-otel` of the rotated files in order: the same
    from spendwatch.otel import import_otel

    lines = (exports / "traces.json").read_bytes().splitlines(keepends=True)
    (tmp_path / "traces-1.json").write_bytes(b"".join(lines[:2]))
    (tmp_path / "traces-2.json").write_bytes(lines[2])
    stats = import_otel([tmp_path / "traces-1.json", tmp_path / "traces-2.json"], tmp_path / "h")
    assert (stats["imported"], stats["skipped_by_reason"]) == (
        1, {"agent_span_with_model_call_children": 1, "not_genai": 1}
    )  # fmt: skip
