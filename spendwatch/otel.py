"""Import OpenTelemetry GenAI spans (OTLP/JSON exports) as call events.

Applications already instrumented with OpenTelemetry (OpenLLMetry, OpenInference-to-OTel
bridges, the official `opentelemetry-instrumentation-openai-v2`, ...) need not add the tracker:
export spans as OTLP/JSON (the collector's `file` exporter, or any OTLP/JSON dump) and run
`spendwatch import-otel FILE...`. Spans that follow the GenAI semantic conventions become call
events in the landing folder; every other span is skipped and counted.

Re-importing is idempotent: an event's id is the span's traceId + spanId, and the output file of
one input file is named by the input's content hash and replaced atomically, so importing the
same export twice leaves exactly the same landing files.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from spendwatch.config import paths
from spendwatch.schema import CallEvent

__all__ = ["import_otel", "main_import_otel", "span_to_event"]

WRITER_ID = "otel"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# GenAI provider names (gen_ai.provider.name, legacy gen_ai.system) -> spendwatch provider ids
# (the ids of the price list: openai, anthropic, google, aws, azure, mistral, x-ai, ...).
_PROVIDERS = {
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "gemini": "google",
    "vertex_ai": "google",
    "google": "google",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.openai": "azure",
    "az.ai.inference": "azure",
    "mistral_ai": "mistral",
    "x_ai": "x-ai",
    "xai": "x-ai",
}
_MODEL_CALL_OPERATIONS = {"chat", "text_completion", "generate_content", "embeddings"}
_AGENT_OPERATIONS = {"invoke_agent", "create_agent"}
_SERVICE_TIERS = {"default": "standard", "auto": "standard", "fast": "priority"}

# Token attributes, newest convention first.
_INPUT = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
_OUTPUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
_CACHE_READ = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.input_tokens.cached",
)
_CACHE_WRITE = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "gen_ai.usage.input_tokens.cache_write",
)
_REASONING = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.output_tokens.reasoning",
    "gen_ai.usage.reasoning_tokens",
)


# --------------------------------------------------------------------------------------------
# OTLP/JSON decoding
# --------------------------------------------------------------------------------------------


def _field(obj: dict, camel: str) -> Any:
    """OTLP JSON uses lowerCamelCase; protobuf JSON parsers also accept the snake_case names."""
    if camel in obj:
        return obj[camel]
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
    return obj.get(snake)


def _any_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    for kind in ("stringValue", "boolValue", "bytesValue"):
        got = _field(value, kind)
        if got is not None:
            return got
    got = _field(value, "intValue")
    if got is not None:
        return int(got)  # a string in OTLP JSON (64-bit integers)
    got = _field(value, "doubleValue")
    if got is not None:
        return float(got)
    array = _field(value, "arrayValue")
    if array is not None:
        return [_any_value(v) for v in array.get("values", [])]
    kvlist = _field(value, "kvlistValue")
    if kvlist is not None:
        return _attributes(kvlist.get("values", []))
    return None


def _attributes(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        if isinstance(item, dict) and "key" in item:
            out[item["key"]] = _any_value(item.get("value"))
    return out


def _read_requests(data: bytes) -> list[dict]:
    """ExportTraceServiceRequest objects from one file: a JSON document or JSON lines."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    text = data.decode("utf-8-sig")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None
        requests = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    requests.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"line {number} is not JSON: {exc.msg}") from None
    else:
        requests = document if isinstance(document, list) else [document]
    for request in requests:
        if not isinstance(request, dict) or _field(request, "resourceSpans") is None:
            raise ValueError(
                "not an OTLP/JSON trace export (expected objects with resourceSpans); export "
                "spans with the OpenTelemetry collector's file exporter or an OTLP/JSON exporter"
            )
    return requests


def _spans(requests: Iterable[dict]) -> Iterator[tuple[dict, dict]]:
    """(span, resource attributes) for every span of the export."""
    for request in requests:
        for resource_spans in _field(request, "resourceSpans") or ():
            resource = _attributes((_field(resource_spans, "resource") or {}).get("attributes"))
            scopes = _field(resource_spans, "scopeSpans")
            if scopes is None:
                scopes = _field(resource_spans, "instrumentationLibrarySpans") or ()
            for scope_spans in scopes:
                for span in _field(scope_spans, "spans") or ():
                    if isinstance(span, dict):
                        yield span, resource


# --------------------------------------------------------------------------------------------
# One span -> one call event
# --------------------------------------------------------------------------------------------


def _first(attrs: dict, names: Sequence[str]) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None and value != "":
            return value
    return None


def _tokens(attrs: dict, names: Sequence[str]) -> int | None:
    value = _first(attrs, names)
    if value is None:
        return None
    if isinstance(value, str):
        value = float(value)
    if isinstance(value, bool) or not float(value).is_integer():
        raise ValueError(f"{names[0]} is not a whole number: {value!r}")
    return int(value)


def _time(nanos: Any) -> datetime | None:
    if nanos in (None, "", 0, "0"):
        return None
    return _EPOCH + timedelta(microseconds=int(nanos) // 1000)


def _is_error(span: dict) -> bool:
    code = (_field(span, "status") or {}).get("code")
    return code in (2, "2", "STATUS_CODE_ERROR")


def span_to_event(span: dict, resource: dict) -> tuple[dict | None, str | None]:
    """(CallEvent fields, None) for a GenAI model-call span, else (None, reason skipped)."""
    attrs = _attributes(_field(span, "attributes"))
    provider = _first(attrs, ("gen_ai.provider.name", "gen_ai.system"))
    operation = attrs.get("gen_ai.operation.name")
    if provider is None and operation is None:
        return None, "not_genai"
    input_tokens = _tokens(attrs, _INPUT)
    output_tokens = _tokens(attrs, _OUTPUT)
    error = _is_error(span)
    no_usage = input_tokens is None and output_tokens is None
    if no_usage and not (error and operation in _MODEL_CALL_OPERATIONS):
        return None, "no_usage"  # tool/agent spans, or an instrumentation without usage
    model = _first(attrs, ("gen_ai.response.model", "gen_ai.request.model"))
    if not model:
        return None, "no_model"
    if provider is None:
        return None, "no_provider"
    trace_id, span_id = _field(span, "traceId"), _field(span, "spanId")
    if not trace_id or not span_id:
        return None, "no_span_id"

    input_tokens, output_tokens = input_tokens or 0, output_tokens or 0
    cache_read = _tokens(attrs, _CACHE_READ) or 0
    cache_write = _tokens(attrs, _CACHE_WRITE) or 0
    reasoning = _tokens(attrs, _REASONING) or 0
    # The conventions say cache and reasoning counts SHOULD be part of the totals; some
    # instrumentations (Anthropic's own usage shape) report them outside. Parts larger than the
    # whole can only mean that, so add them in.
    if cache_read + cache_write > input_tokens:
        input_tokens += cache_read + cache_write
    if reasoning > output_tokens:
        output_tokens += reasoning

    start, end = _time(_field(span, "startTimeUnixNano")), _time(_field(span, "endTimeUnixNano"))
    if start is None:
        return None, "no_start_time"
    provider = str(provider).lower()
    tier = _first(
        attrs,
        (
            "openai.response.service_tier",
            "gen_ai.openai.response.service_tier",
            "openai.request.service_tier",
            "gen_ai.openai.request.service_tier",
        ),
    )
    tags = {"source": "otel"}
    if operation:
        tags["operation"] = str(operation)
    tags.update(
        {
            key.removeprefix("spendwatch.tags."): str(value)
            for key, value in attrs.items()
            if key.startswith("spendwatch.tags.") and value is not None
        }
    )
    event = {
        "event_id": f"{trace_id}{span_id}".lower(),
        "occurred_at": start,
        "provider": _PROVIDERS.get(provider, provider),
        "model": str(model),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "reasoning_tokens": reasoning,
        "feature": _first(attrs, ("spendwatch.feature", "gen_ai.agent.name"))
        or resource.get("service.name")
        or "unknown",
        "endpoint": _first(attrs, ("spendwatch.endpoint", "http.route")),
        "environment": attrs.get("spendwatch.environment")
        or _first(resource, ("deployment.environment.name", "deployment.environment")),
        "team_id": attrs.get("spendwatch.team_id"),
        "user_id": _first(attrs, ("spendwatch.user_id", "user.id", "enduser.id")),
        "prompt_version": attrs.get("spendwatch.prompt_version"),
        "service_tier": _SERVICE_TIERS.get(tier, tier) if isinstance(tier, str) else None,
        "status": "error" if error else "ok",
        "attempt": attrs.get("spendwatch.attempt"),
        "latency_ms": (end - start) / timedelta(milliseconds=1) if end and end >= start else None,
        "tags": tags,
    }
    return {k: v for k, v in event.items() if v is not None}, None


def _events(requests: list[dict], skipped: Counter) -> tuple[list[CallEvent], int]:
    """Call events of one export; agent spans whose model calls are spans too are skipped."""
    spans = list(_spans(requests))
    parent: dict[tuple[str, str], str] = {}
    converted: list[tuple[tuple[str, str], dict | None, str | None, str | None]] = []
    for span, resource in spans:
        key = (str(_field(span, "traceId") or ""), str(_field(span, "spanId") or ""))
        parent[key] = str(_field(span, "parentSpanId") or "")
        try:
            fields, reason = span_to_event(span, resource)
        except (TypeError, ValueError) as exc:
            fields, reason = None, f"invalid: {exc}"
        converted.append((key, fields, reason, (fields or {}).get("tags", {}).get("operation")))

    # Ancestors of model-call spans: an agent span among them only sums its children's usage.
    covered: set[tuple[str, str]] = set()
    for key, fields, _, operation in converted:
        if fields is not None and operation not in _AGENT_OPERATIONS:
            trace, node = key[0], parent.get(key, "")
            while node and (trace, node) not in covered:
                covered.add((trace, node))
                node = parent.get((trace, node), "")

    events: list[CallEvent] = []
    seen: set[str] = set()
    for key, fields, reason, operation in converted:
        if fields is not None and operation in _AGENT_OPERATIONS and key in covered:
            fields, reason = None, "agent_span_with_model_call_children"
        if fields is not None:
            try:
                event = CallEvent.model_validate(fields)
            except ValueError as exc:
                fields, reason = None, f"invalid: {' '.join(str(exc).split())[:200]}"
            else:
                if event.event_id in seen:
                    fields, reason = None, "duplicate_span"
                else:
                    seen.add(event.event_id)
                    events.append(event)
        if fields is None:
            skipped[reason.split(":")[0] if reason else "unknown"] += 1
    return events, len(spans)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _expand(files: Iterable[str | os.PathLike]) -> Iterator[Path]:
    for item in files:
        path = Path(item)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.name.endswith((".json", ".jsonl", ".json.gz")):
                    yield child
        else:
            yield path


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def import_otel(
    files: Iterable[str | os.PathLike], home: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Convert OTLP/JSON trace exports into landing files under `home` (default $SPENDWATCH_HOME).

    `files` may name files (JSON, JSON lines, optionally gzip) or folders (searched for *.json,
    *.jsonl, *.json.gz). Returns counts: files, spans, imported, skipped, skipped_by_reason,
    written (landing files) and errors (files that could not be read; the others still import).
    """
    landing = paths(home)
    skipped: Counter = Counter()
    stats: dict[str, Any] = {"files": 0, "spans": 0, "imported": 0, "errors": [], "written": []}
    for source in _expand(files):
        try:
            data = source.read_bytes()
            requests = _read_requests(data)
        except (OSError, ValueError, EOFError) as exc:
            stats["errors"].append(f"{source}: {exc}")
            continue
        stats["files"] += 1
        events, span_count = _events(requests, skipped)
        stats["spans"] += span_count
        digest = hashlib.sha256(data).hexdigest()[:16]
        by_hour: dict[Path, list[CallEvent]] = {}
        for event in events:
            folder = landing.partition_dir(event.occurred_at.astimezone(UTC))
            by_hour.setdefault(folder, []).append(event)
        for folder, hour_events in sorted(by_hour.items()):
            hour_events.sort(key=lambda e: (e.occurred_at, e.event_id))
            target = folder / f"{WRITER_ID}-{digest}.jsonl"
            try:
                _write_atomically(target, "".join(e.to_json_line() + "\n" for e in hour_events))
            except OSError as exc:
                stats["errors"].append(f"{target}: cannot write: {exc}")
                continue
            stats["imported"] += len(hour_events)
            stats["written"].append(str(target))
    stats["skipped"] = sum(skipped.values())
    stats["skipped_by_reason"] = dict(sorted(skipped.items()))
    return stats


def main_import_otel(argv: Sequence[str] | None = None) -> int:
    """`spendwatch import-otel FILE... [--home DIR]`; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="spendwatch import-otel",
        description="Import OpenTelemetry GenAI spans (OTLP/JSON trace exports) as call events.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="OTLP/JSON file or folder")
    parser.add_argument(
        "--home", help="spendwatch home (default: $SPENDWATCH_HOME or ./.spendwatch)"
    )
    args = parser.parse_args(argv)
    stats = import_otel(args.files, args.home)
    reasons = ", ".join(f"{k}: {v}" for k, v in stats["skipped_by_reason"].items())
    print(
        f"imported {stats['imported']} call events from {stats['spans']} spans in "
        f"{stats['files']} file(s) into {paths(args.home).landing}; skipped {stats['skipped']}"
        + (f" ({reasons})" if reasons else "")
    )
    for error in stats["errors"]:
        print(f"error: {error}", file=sys.stderr)
    return 1 if stats["errors"] else 0


if __name__ == "__main__":
    sys.exit(main_import_otel())
