"""Token usage read from provider responses and streams, by shape (the SDKs are never imported).

One implementation of the token rules for every source of call events: the tracker reads
responses and stream chunks here, and the OpenTelemetry import (`spendwatch.otel.mapping`) uses
the same `token_count`, `token_fields` and `service_tier` for span attributes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from spendwatch.schema import TOKEN_PARTS

__all__ = ["StreamUsage", "service_tier", "token_count", "token_fields", "usage_from_response"]

#: Provider service-tier names -> the call event's (standard, batch, flex, priority).
SERVICE_TIERS = {
    "default": "standard",
    "auto": "standard",
    "standard": "standard",
    "flex": "flex",
    "priority": "priority",
    "fast": "priority",
    "batch": "batch",
}


def service_tier(value: Any) -> str | None:
    """The call event's tier for a provider's tier name; None when unknown or absent."""
    return SERVICE_TIERS.get(value) if isinstance(value, str) else None


@functools.cache
def _kind_of_type(cls: type) -> str:
    """mapping / pydantic / other, cached per type (isinstance against an ABC is slow)."""
    if issubclass(cls, Mapping):
        return "mapping"
    return "pydantic" if hasattr(cls, "__pydantic_fields__") else "other"


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    kind = _kind_of_type(type(obj))
    if kind == "mapping":
        return obj.get(name)
    if kind == "pydantic":
        # Fields live in __dict__, unknown fields (an SDK older than the API) in the extras; a
        # miss through getattr would raise and catch an AttributeError, slowly.
        value = obj.__dict__.get(name)
        if value is not None:
            return value
        extra = getattr(obj, "__pydantic_extra__", None)
        if extra and name in extra:
            return extra[name]
        if not hasattr(type(obj), name):
            return None
    return getattr(obj, name, None)


def token_count(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"token count is a bool: {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ValueError(f"token count is not an integer: {value!r}")


def _has(obj: Any, name: str) -> bool:
    if obj is not None and _kind_of_type(type(obj)) == "mapping":
        return name in obj
    return _get(obj, name) is not None


def _provider_of(obj: Any) -> str | None:
    """openai / anthropic / google from the object's type, or from its shape for dicts."""
    root = type(obj).__module__.partition(".")[0]
    if root in ("openai", "anthropic", "google"):
        return root
    if isinstance(obj, Mapping):
        kind, typ = obj.get("object"), obj.get("type")
        if isinstance(kind, str) and (
            kind.startswith("chat.completion") or kind in ("response", "text_completion")
        ):
            return "openai"
        if isinstance(typ, str) and (typ == "message" or typ.startswith("message_")):
            return "anthropic"
        if isinstance(typ, str) and typ.startswith("response."):
            return "openai"
        if "usage_metadata" in obj or "usageMetadata" in obj:
            return "google"
    usage = _get(obj, "usage")
    if _has(usage, "prompt_tokens") or _has(usage, "input_tokens_details"):
        return "openai"
    if _has(usage, "cache_read_input_tokens") or _has(usage, "cache_creation_input_tokens"):
        return "anthropic"
    return None


def token_fields(
    input_tokens: int,
    output_tokens: int,
    read: int = 0,
    write: int = 0,
    reasoning: int = 0,
    *,
    cache_outside: bool = False,
    reasoning_outside: bool = False,
) -> dict:
    """Token fields that satisfy the contract's part-of-total rules (`schema.TOKEN_PARTS`).

    The warehouse counts cache reads and writes inside `input_tokens` and reasoning inside
    `output_tokens`. A source that reports them outside (Anthropic's usage; some OTel
    instrumentations) says so with `cache_outside` / `reasoning_outside`, and they are added in;
    otherwise parts larger than their total (providers round oddly) are clamped to it, in the
    order the rule lists them.
    """
    values = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": max(read, 0),
        "cache_write_tokens": max(write, 0),
        "reasoning_tokens": max(reasoning, 0),
    }
    outside = {"input_tokens": cache_outside, "output_tokens": reasoning_outside}
    for rule in TOKEN_PARTS:
        if outside[rule.total]:
            values[rule.total] += sum(values[n] for n in rule.parts)
        room = values[rule.total]
        for name in rule.parts:
            values[name] = min(values[name], room)
            room -= values[name]
    return values


def _anthropic_tokens(raw_input: int, read: int, write: int, output: int, thinking: int) -> dict:
    # Anthropic reports cache reads and writes OUTSIDE input_tokens; the warehouse counts them in.
    return token_fields(raw_input, output, read, write, thinking, cache_outside=True)


def _count(obj: Any, *path: str) -> int:
    """The token count at `obj.<path...>` (0 when any step is absent)."""
    for name in path:
        obj = _get(obj, name)
    return token_count(obj)


def _openai_tokens(usage: Any, given: str, produced: str) -> dict:
    """OpenAI's usage: `<given>_tokens` in, `<produced>_tokens` out, cache and reasoning parts
    in their `_details` (Chat Completions say prompt/completion, the Responses API input/output)."""
    return token_fields(
        _count(usage, f"{given}_tokens"),
        _count(usage, f"{produced}_tokens"),
        _count(usage, f"{given}_tokens_details", "cached_tokens"),
        _count(usage, f"{given}_tokens_details", "cache_write_tokens"),
        _count(usage, f"{produced}_tokens_details", "reasoning_tokens"),
    )


def _tokens_from_usage(usage: Any, provider: str | None) -> dict:
    """Token fields from a usage object or dict of any supported provider shape."""
    if _has(usage, "prompt_tokens"):  # OpenAI Chat Completions, Completions, Embeddings
        return _openai_tokens(usage, "prompt", "completion")
    if (
        provider == "anthropic"
        or _has(usage, "cache_read_input_tokens")
        or _has(usage, "cache_creation_input_tokens")
    ):  # Anthropic Messages
        return _anthropic_tokens(
            _count(usage, "input_tokens"),
            _count(usage, "cache_read_input_tokens"),
            _count(usage, "cache_creation_input_tokens"),
            _count(usage, "output_tokens"),
            _count(usage, "output_tokens_details", "thinking_tokens"),
        )
    if _has(usage, "input_tokens") or _has(usage, "output_tokens"):  # OpenAI Responses API
        return _openai_tokens(usage, "input", "output")
    if _has(usage, "prompt_token_count") or _has(usage, "candidates_token_count"):  # Gemini
        thoughts = _count(usage, "thoughts_token_count")
        return token_fields(
            _count(usage, "prompt_token_count") + _count(usage, "tool_use_prompt_token_count"),
            _count(usage, "candidates_token_count") + thoughts,
            _count(usage, "cached_content_token_count"),
            0,
            thoughts,
        )
    raise ValueError(f"no token counts found in usage of type {type(usage).__name__}")


def usage_from_response(response: Any) -> dict[str, Any]:
    """CallEvent fields (provider, model, tokens, service tier) read from a provider response.

    Understands the OpenAI Chat Completions and Responses objects, Anthropic Messages, Gemini
    `usage_metadata`, plain dicts of the same shapes, and a bare usage object/dict. Raises
    ValueError when the object carries no token counts.
    """
    provider = _provider_of(response)
    usage = _get(response, "usage")
    if usage is None:
        usage = _get(response, "usage_metadata")
        if usage is not None:
            provider = provider or "google"
        else:
            usage = response  # a bare usage object
    fields = _tokens_from_usage(usage, provider)
    if provider:
        fields["provider"] = provider
    model = _get(response, "model") or _get(response, "model_version")
    if isinstance(model, str) and model:
        fields["model"] = model
    tier = service_tier(_get(response, "service_tier") or _get(usage, "service_tier"))
    if tier:
        fields["service_tier"] = tier
    if _get(response, "status") == "failed":  # OpenAI Responses API
        fields["status"] = "error"
    return fields


class StreamUsage:
    """Accumulates usage from streamed chunks/events of any supported provider."""

    __slots__ = ("provider", "model", "fields", "anthropic", "final")

    def __init__(self) -> None:
        self.provider: str | None = None
        self.model: str | None = None
        self.fields: dict | None = None
        self.anthropic: dict | None = None
        self.final = False

    def observe(self, chunk: Any) -> None:
        kind = _get(chunk, "type")
        if kind == "message_start":  # Anthropic: input and cache counts arrive first
            message = _get(chunk, "message")
            self.provider = "anthropic"
            self.model = _get(message, "model") or self.model
            self.anthropic = {}
            self._anthropic_usage(_get(message, "usage"))
        elif kind == "message_delta":  # Anthropic: cumulative counts, output at the end
            self.provider = "anthropic"
            self.anthropic = self.anthropic if self.anthropic is not None else {}
            self._anthropic_usage(_get(chunk, "usage"))
        elif kind == "message_stop":
            self.final = self.anthropic is not None
        elif kind in ("response.completed", "response.failed", "response.incomplete"):
            self.fields = usage_from_response(_get(chunk, "response"))
            self.provider = self.fields.get("provider") or "openai"
            self.final = True
        elif isinstance(kind, str) and kind.startswith("response."):
            self.model = _get(_get(chunk, "response"), "model") or self.model
        else:  # OpenAI chat chunks (usage on the last one), Gemini chunks (cumulative)
            model = _get(chunk, "model") or _get(chunk, "model_version")
            if isinstance(model, str) and model:
                self.model = model
            usage = _get(chunk, "usage")
            if usage is not None:
                self.provider = self.provider or _provider_of(chunk)
                self.fields = _tokens_from_usage(usage, self.provider)
                self.final = True
            elif _get(chunk, "usage_metadata") is not None:
                self.provider = "google"
                self.fields = _tokens_from_usage(_get(chunk, "usage_metadata"), "google")

    def _anthropic_usage(self, usage: Any) -> None:
        if usage is None:
            return
        parts = {
            "raw_input": _get(usage, "input_tokens"),
            "read": _get(usage, "cache_read_input_tokens"),
            "write": _get(usage, "cache_creation_input_tokens"),
            "output": _get(usage, "output_tokens"),
            "thinking": _get(_get(usage, "output_tokens_details"), "thinking_tokens"),
        }
        self.anthropic.update({key: token_count(v) for key, v in parts.items() if v is not None})

    def result(self) -> dict | None:
        if self.fields is not None:
            out = dict(self.fields)
        elif self.anthropic:
            out = _anthropic_tokens(
                *(self.anthropic.get(k, 0) for k in ("raw_input", "read", "write", "output")),
                self.anthropic.get("thinking", 0),
            )
        else:
            return None
        if self.provider:
            out.setdefault("provider", self.provider)
        if self.model:
            out.setdefault("model", self.model)
        return out
