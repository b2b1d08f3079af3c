"""One OpenTelemetry GenAI span -> one call event (the GenAI semantic conventions, old and new
attribute names), and the events of a whole export (agent spans whose model calls are spans too
are skipped, so spend is counted once). Token rules are the tracker's (`spendwatch.tracker.usage`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from spendwatch.otel.otlp import attributes, field, hex_id, spans, status_code
from spendwatch.schema import CallEvent, token_parts_exceeding
from spendwatch.tracker.usage import service_tier, token_count, token_fields

__all__ = ["events_of", "span_to_event"]

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
    try:
        return token_count(float(value) if isinstance(value, str) else value)
    except ValueError:
        raise ValueError(f"{names[0]} is not a whole number: {value!r}") from None


def _time(nanos: Any) -> datetime | None:
    if nanos in (None, "", 0, "0"):
        return None
    return _EPOCH + timedelta(microseconds=int(nanos) // 1000)


def _is_error(span: dict) -> bool:
    return status_code(span) == 2


def span_key(span: dict) -> tuple[str, str]:
    """(trace id, span id) in lower-case hex, whichever way the export wrote them."""
    return (
        hex_id(field(span, "traceId"), 16, "traceId"),
        hex_id(field(span, "spanId"), 8, "spanId"),
    )


def span_to_event(span: dict, resource: dict) -> tuple[dict | None, str | None]:
    """(CallEvent fields, None) for a GenAI model-call span, else (None, reason skipped)."""
    attrs = attributes(field(span, "attributes"))
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
    trace_id, span_id = span_key(span)
    if not trace_id or not span_id:
        return None, "no_span_id"

    input_tokens, output_tokens = input_tokens or 0, output_tokens or 0
    # no cache attribute at all (not even 0): the instrumentation does not record prompt caching
    # (openai-v2 for chat), so the call may have read from the cache unseen
    no_cache_breakdown = (
        input_tokens > 0
        and operation != "embeddings"
        and _first(attrs, _CACHE_READ + _CACHE_WRITE) is None
    )
    cache_read = _tokens(attrs, _CACHE_READ) or 0
    cache_write = _tokens(attrs, _CACHE_WRITE) or 0
    reasoning = _tokens(attrs, _REASONING) or 0
    # The conventions say cache and reasoning counts SHOULD be part of the totals; some
    # instrumentations (Anthropic's own usage shape) report them outside. Parts larger than the
    # whole can only mean that, so they are added in.
    exceeded = {
        rule.total
        for rule in token_parts_exceeding({
            "input_tokens": input_tokens, "output_tokens": output_tokens,
            "cache_read_tokens": cache_read, "cache_write_tokens": cache_write,
            "reasoning_tokens": reasoning,
        })
    }  # fmt: skip
    tokens = token_fields(
        input_tokens,
        output_tokens,
        cache_read,
        cache_write,
        reasoning,
        cache_outside="input_tokens" in exceeded,
        reasoning_outside="output_tokens" in exceeded,
    )

    start, end = _time(field(span, "startTimeUnixNano")), _time(field(span, "endTimeUnixNano"))
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
    # the ids as the user's tracing backend shows them: a cost row leads back to its trace
    tags.update({"trace_id": trace_id, "span_id": span_id})
    if no_cache_breakdown:  # the warehouse counts it where the model prices cache reads apart
        tags["usage_detail"] = "no_cache_breakdown"
    event = {
        "event_id": f"{trace_id}{span_id}",
        "occurred_at": start,
        "provider": _PROVIDERS.get(provider, provider),
        "model": str(model),
        **tokens,
        "feature": _first(attrs, ("spendwatch.feature", "gen_ai.agent.name"))
        or resource.get("service.name")
        or "unknown",
        "endpoint": _first(attrs, ("spendwatch.endpoint", "http.route")),
        "environment": attrs.get("spendwatch.environment")
        or _first(resource, ("deployment.environment.name", "deployment.environment")),
        "team_id": attrs.get("spendwatch.team_id"),
        "user_id": _first(attrs, ("spendwatch.user_id", "user.id", "enduser.id")),
        "prompt_version": attrs.get("spendwatch.prompt_version"),
        "service_tier": (service_tier(tier) or tier) if isinstance(tier, str) else None,
        "status": "error" if error else "ok",
        "attempt": attrs.get("spendwatch.attempt"),
        "latency_ms": (end - start) / timedelta(milliseconds=1) if end and end >= start else None,
        "tags": tags,
    }
    return {k: v for k, v in event.items() if v is not None}, None


def events_of(
    requests: list[dict], skipped: Counter, covered: set[tuple[str, str]] | None = None
) -> tuple[list[CallEvent], int]:
    """Call events of one export; agent spans whose model calls are spans too are skipped.

    `covered` (trace id, span id) are spans known, from exports read before, to be ancestors of
    model-call spans (a span ends after its children, so its children reach the file first);
    the set is read and added to, for the next export of the same stream."""
    found = list(spans(requests))
    parent: dict[tuple[str, str], str] = {}
    converted: list[tuple[tuple[str, str], dict | None, str | None, str | None]] = []
    for span, resource in found:
        try:
            key = span_key(span)
            parent[key] = hex_id(field(span, "parentSpanId"), 8, "parentSpanId")
            fields, reason = span_to_event(span, resource)
        except (TypeError, ValueError) as exc:
            key = (str(field(span, "traceId") or ""), str(field(span, "spanId") or ""))
            fields, reason = None, f"invalid: {exc}"
        converted.append((key, fields, reason, (fields or {}).get("tags", {}).get("operation")))

    # Ancestors of model-call spans: an agent span among them only sums its children's usage.
    covered = set() if covered is None else covered

    def cover_up(trace: str, node: str) -> None:
        while node and (trace, node) not in covered:
            covered.add((trace, node))
            node = parent.get((trace, node), "")

    for key, fields, _, operation in converted:
        if fields is not None and operation not in _AGENT_OPERATIONS:
            cover_up(key[0], parent.get(key, ""))
    for key, up in list(parent.items()):  # covered in an earlier export: so are its ancestors
        if key in covered:
            cover_up(key[0], up)

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
    return events, len(found)
