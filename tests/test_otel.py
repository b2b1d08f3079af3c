"""spendwatch.otel: OTLP/JSON GenAI spans -> landing files, idempotently."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from spendwatch.cli import main
from spendwatch.landing import ALL_FILES, hour_dir
from spendwatch.otel import import_otel
from spendwatch.otel.otlp import hex_id
from spendwatch.schema import CallEvent

T0 = 1_741_651_200_000_000_000  # 2025-03-11T00:00:00Z in nanoseconds
TRACE_A = "5b8efff798038103d269b633813fc60c"
TRACE_B = "0af7651916cd43dd8448eb211c80319c"


def attr(key: str, value) -> dict:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}  # OTLP JSON: int64 as string
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": value}}


def span(trace, span_id, name, attrs, start_ms, duration_ms, parent="", status=None) -> dict:
    return {
        "traceId": trace,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": 3,
        "startTimeUnixNano": str(T0 + start_ms * 1_000_000),
        "endTimeUnixNano": str(T0 + (start_ms + duration_ms) * 1_000_000),
        "attributes": [attr(k, v) for k, v in attrs.items()],
        "status": status or {},
    }


def export() -> dict:
    """Two services; GenAI spans of both conventions mixed with HTTP, DB, tool and agent spans."""
    app_spans = [
        span(TRACE_A, "a000000000000001", "POST /api/chat",
             {"http.request.method": "POST", "http.route": "/api/chat"}, 0, 3000),
        span(TRACE_A, "a000000000000002", "invoke_agent support",
             {"gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai",
              "gen_ai.agent.name": "support", "gen_ai.request.model": "gpt-4.1",
              "gen_ai.usage.input_tokens": 1500, "gen_ai.usage.output_tokens": 240},
             5, 2900, parent="a000000000000001"),
        span(TRACE_A, "a000000000000003", "chat gpt-4.1",
             {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
              "gen_ai.request.model": "gpt-4.1", "gen_ai.response.model": "gpt-4.1-2025-04-14",
              "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 200,
              "gen_ai.usage.cache_read.input_tokens": 1024,
              "gen_ai.usage.reasoning.output_tokens": 64,
              "openai.response.service_tier": "default",
              "spendwatch.feature": "support-bot", "spendwatch.team_id": "team-cx",
              "spendwatch.attempt": 2, "user.id": "u-42"},
             10, 1234, parent="a000000000000002"),
        span(TRACE_A, "a000000000000004", "execute_tool lookup_order",
             {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order"},
             1300, 50, parent="a000000000000002"),
        span(TRACE_A, "a000000000000005", "SELECT orders",
             {"db.system.name": "postgresql", "db.query.text": "select 1"}, 1310, 20,
             parent="a000000000000004"),
        span(TRACE_A, "a000000000000006", "chat gpt-4.1",  # failed: no usage, still a call
             {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
              "gen_ai.request.model": "gpt-4.1", "spendwatch.feature": "support-bot"},
             1400, 80, parent="a000000000000002", status={"code": 2, "message": "429"}),
        span(TRACE_A, "a000000000000007", "embeddings text-embedding-3-small",
             {"gen_ai.operation.name": "embeddings", "gen_ai.provider.name": "openai",
              "gen_ai.request.model": "text-embedding-3-small",
              "gen_ai.usage.input_tokens": 64, "spendwatch.feature": "search"},
             2000, 15, parent="a000000000000001"),
    ]  # fmt: skip
    worker_spans = [
        span(TRACE_B, "b000000000000001", "anthropic.chat",  # legacy gen_ai.system, cache outside
             {"gen_ai.system": "anthropic", "gen_ai.operation.name": "chat",
              "gen_ai.request.model": "claude-sonnet-4-5",
              "gen_ai.response.model": "claude-sonnet-4-5-20250929",
              "gen_ai.usage.input_tokens": 20, "gen_ai.usage.output_tokens": 300,
              "gen_ai.usage.cache_read_input_tokens": 5000,
              "gen_ai.usage.cache_creation_input_tokens": 700},
             3_600_000 + 5, 2500),  # the next hour
        span(TRACE_B, "b000000000000002", "GET /healthz", {"http.route": "/healthz"}, 10, 1),
    ]  # fmt: skip
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        attr("service.name", "helpdesk"),
                        attr("deployment.environment.name", "staging"),
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "opentelemetry.instrumentation.openai_v2"},
                        "spans": app_spans,
                    }
                ],
            },  # fmt: skip
            {
                "resource": {"attributes": [attr("service.name", "summarizer")]},
                "scopeSpans": [{"scope": {"name": "anthropic"}, "spans": worker_spans}],
            },
        ]
    }


def read_landing(home: Path) -> dict[str, CallEvent]:
    events = {}
    for path in sorted((home / "landing" / "calls").glob(ALL_FILES)):
        assert path.name.startswith("otel-")
        for line in path.read_text().splitlines():
            event = CallEvent.model_validate_json(line)
            at = event.occurred_at.astimezone(UTC)
            assert path.parent == hour_dir(home / "landing" / "calls", at)
            assert event.event_id not in events
            events[event.event_id] = event
    return events


@pytest.fixture
def export_file(tmp_path: Path) -> Path:
    path = tmp_path / "traces.json"
    path.write_text(json.dumps(export()))
    return path


def test_genai_spans_become_call_events(tmp_path, export_file):
    home = tmp_path / "home"
    stats = import_otel([export_file], home)
    assert (stats["files"], stats["spans"], stats["imported"], stats["skipped"]) == (1, 9, 4, 5)
    assert stats["skipped_by_reason"] == {
        "agent_span_with_model_call_children": 1,
        "no_usage": 1,  # execute_tool
        "not_genai": 3,  # HTTP x2, DB
    }
    assert stats["errors"] == []
    events = read_landing(home)
    assert set(events) == {
        TRACE_A + "a000000000000003",
        TRACE_A + "a000000000000006",
        TRACE_A + "a000000000000007",
        TRACE_B + "b000000000000001",
    }

    chat = events[TRACE_A + "a000000000000003"]
    assert (chat.provider, chat.model, chat.feature, chat.environment) == (
        "openai",
        "gpt-4.1-2025-04-14",
        "support-bot",
        "staging",
    )
    assert (chat.input_tokens, chat.output_tokens) == (1200, 200)
    assert (chat.cache_read_tokens, chat.cache_write_tokens, chat.reasoning_tokens) == (1024, 0, 64)
    assert (chat.team_id, chat.user_id, chat.attempt, chat.service_tier) == (
        "team-cx",
        "u-42",
        2,
        "standard",
    )
    assert chat.occurred_at == datetime(2025, 3, 11, 0, 0, 0, 10_000, tzinfo=UTC)
    assert chat.latency_ms == pytest.approx(1234.0)
    assert chat.status == "ok"
    assert chat.tags == {
        "source": "otel", "operation": "chat", "trace_id": TRACE_A, "span_id": "a000000000000003"
    }  # fmt: skip

    failed = events[TRACE_A + "a000000000000006"]
    assert (failed.status, failed.input_tokens, failed.output_tokens) == ("error", 0, 0)

    embedding = events[TRACE_A + "a000000000000007"]
    assert (embedding.feature, embedding.input_tokens, embedding.output_tokens) == ("search", 64, 0)

    claude = events[TRACE_B + "b000000000000001"]
    assert (claude.provider, claude.model) == ("anthropic", "claude-sonnet-4-5-20250929")
    # cache counts larger than input_tokens: reported outside it, added in
    assert (claude.input_tokens, claude.cache_read_tokens, claude.cache_write_tokens) == (
        5720,
        5000,
        700,
    )
    assert (claude.feature, claude.environment) == ("summarizer", "production")
    assert claude.occurred_at.astimezone(UTC).hour == 1


def test_reimport_is_idempotent(tmp_path, export_file):
    home = tmp_path / "home"
    first = import_otel([export_file], home)
    files = {p: p.read_bytes() for p in (home / "landing").rglob("*") if p.is_file()}
    second = import_otel([export_file, export_file], home)
    assert second["imported"] == 2 * first["imported"]  # both passes rewrite the same files
    assert {p: p.read_bytes() for p in (home / "landing").rglob("*") if p.is_file()} == files
    assert len(files) == 2  # one per UTC hour, no temporary files left behind


def test_json_lines_export_and_folder_argument(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    requests = export()["resourceSpans"]
    lines = [json.dumps({"resourceSpans": [rs]}) for rs in requests]
    (folder / "collector.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "notes.txt").write_text("ignored")
    stats = import_otel([folder], tmp_path / "home")
    assert (stats["files"], stats["spans"], stats["imported"]) == (1, 9, 4)


def test_cli_reports_counts_and_bad_files(tmp_path, export_file, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "otlp"}')
    home = tmp_path / "home"
    code = main(["import-otel", str(export_file), str(bad), "--home", str(home)])
    out = capsys.readouterr()
    assert code == 1
    assert "imported 4 call events from 9 spans in 1 file(s)" in out.out
    assert "not_genai: 3" in out.out
    assert "bad.json" in out.err and "resourceSpans" in out.err
    assert len(read_landing(home)) == 4
    assert main(["import-otel", str(export_file), "--home", str(home)]) == 0


def protobuf_json_form(document: dict) -> dict:
    """The same export as protobuf's JSON mapping writes it (MessageToJson): ids in base64, enums
    by name; the test export above is the Collector's form (hex ids, enum numbers)."""
    kinds = {1: "SPAN_KIND_INTERNAL", 2: "SPAN_KIND_SERVER", 3: "SPAN_KIND_CLIENT"}
    codes = {0: "STATUS_CODE_UNSET", 1: "STATUS_CODE_OK", 2: "STATUS_CODE_ERROR"}
    out = json.loads(json.dumps(document))
    for resource_spans in out["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for s in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if s[key]:
                        s[key] = base64.b64encode(bytes.fromhex(s[key])).decode()
                s["kind"] = kinds[s["kind"]]
                if "code" in s["status"]:
                    s["status"]["code"] = codes[s["status"]["code"]]
    return out


def test_one_span_exported_both_ways_is_one_event(tmp_path):
    collector, protobuf = export(), protobuf_json_form(export())
    chat = protobuf["resourceSpans"][0]["scopeSpans"][0]["spans"][2]
    assert chat["traceId"] == "W47/95gDgQPSabYzgT/GDA==" and chat["spanId"] == "oAAAAAAAAAM="
    (tmp_path / "collector.json").write_text(json.dumps(collector))
    (tmp_path / "sdk.json").write_text(json.dumps(protobuf))
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    import_otel([tmp_path / "collector.json"], home_a)
    stats = import_otel([tmp_path / "sdk.json"], home_b)
    # the agent span is still recognised as its chat span's parent through base64 parent ids
    assert stats["skipped_by_reason"]["agent_span_with_model_call_children"] == 1
    a, b = read_landing(home_a), read_landing(home_b)
    assert set(a) == set(b) and len(a) == 4
    assert {e.model_dump_json() for e in a.values()} == {e.model_dump_json() for e in b.values()}
    failed = b[TRACE_A + "a000000000000006"]
    assert failed.status == "error"  # STATUS_CODE_ERROR by name
    assert (failed.tags["trace_id"], failed.tags["span_id"]) == (TRACE_A, "a000000000000006")


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        ("5B8EFFF798038103D269B633813FC60C", 16, TRACE_A),
        ("W47/95gDgQPSabYzgT/GDA==", 16, TRACE_A),
        ("W47_95gDgQPSabYzgT_GDA", 16, TRACE_A),  # url-safe, unpadded
        ("oAAAAAAAAAM=", 8, "a000000000000003"),
        ("a000000000000003", 8, "a000000000000003"),
    ],
)
def test_ids_decode_to_lower_case_hex(value, size, expected):
    assert hex_id(value, size) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [("abc", "neither 16 hex digits nor base64 of 8 bytes"), ("AAAAAAAAAAA=", "all zeros")],
)
def test_bad_ids_are_refused_with_the_reason(value, message):
    with pytest.raises(ValueError, match=message):
        hex_id(value, 8, "spanId")


def test_a_chat_span_without_cache_attributes_is_marked(tmp_path):
    """openai-v2 records no cached tokens for chat: the event says so (the warehouse counts it
    where the model prices cache reads apart); a span with a cache count, even 0, is complete."""
    document = export()
    app_spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    chat = app_spans[2]
    chat["attributes"] = [a for a in chat["attributes"] if "cache" not in a["key"]]
    embedding = app_spans[6]
    (tmp_path / "x.json").write_text(json.dumps(document))
    import_otel([tmp_path / "x.json"], tmp_path / "home")
    events = read_landing(tmp_path / "home")
    assert events[TRACE_A + "a000000000000003"].tags["usage_detail"] == "no_cache_breakdown"
    assert "usage_detail" not in events[TRACE_A + "a000000000000007"].tags  # embeddings
    assert "usage_detail" not in events[TRACE_A + "a000000000000006"].tags  # failed, no usage
    assert "usage_detail" not in events[TRACE_B + "b000000000000001"].tags  # cache reported
    assert embedding["spanId"] == "a000000000000007"
