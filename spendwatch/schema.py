"""The call event, schema version 1: the one definition of what an application records.

One JSON object per line in the landing folder. This pydantic model is the contract: the
tracker and the traffic generator build events with it, the ingest derives its column list,
types and required fields from it (`WAREHOUSE_COLUMNS`, `REQUIRED_FIELDS`), and
`call_event.schema.json` beside this file is generated from it for non-Python writers
(`python -m spendwatch.schema > spendwatch/call_event.schema.json`; a test keeps the two equal).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC
from typing import Annotated, Literal, NamedTuple

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1

#: The range of the warehouse's integer columns: a value outside it is rejected, never wrapped
#: or nulled (DuckDB's BIGINT and INTEGER).
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "BIGINT": (-(2**63), 2**63 - 1),
    "INTEGER": (-(2**31), 2**31 - 1),
}

#: What "surrounding whitespace" is: the characters pydantic's `str_strip_whitespace` strips
#: (Unicode White_Space). The ingest trims the same set, and reads a string of only these as
#: empty (tests/test_schema.py keeps the two equal).
WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)  # fmt: skip

Tokens = Annotated[
    StrictInt,
    Field(ge=0, le=INTEGER_RANGES["BIGINT"][1], json_schema_extra={"warehouse_type": "BIGINT"}),
]


class TokenPart(NamedTuple):
    """A rule of the token counts: the `parts` together are part of `total` (so never more)."""

    parts: tuple[str, ...]
    total: str
    reason: str  # the ingest's reason code when a line breaks it


#: The token-part rules, written once: the contract's validator, the ingest's SQL, the tracker's
#: and the OTel import's normalisation (`spendwatch.tracker.usage.token_fields`) all read them.
TOKEN_PARTS: tuple[TokenPart, ...] = (
    TokenPart(("cache_read_tokens", "cache_write_tokens"), "input_tokens",
              "cache_tokens_exceed_input"),
    TokenPart(("reasoning_tokens",), "output_tokens", "reasoning_exceeds_output"),
)  # fmt: skip


def token_parts_exceeding(tokens: Mapping[str, int | None]) -> list[TokenPart]:
    """The rules of TOKEN_PARTS that `tokens` break (absent counts are 0)."""
    return [
        rule
        for rule in TOKEN_PARTS
        if sum(tokens.get(n) or 0 for n in rule.parts) > (tokens.get(rule.total) or 0)
    ]


def _text(description: str, **kwargs) -> object:
    return Field(description=description, json_schema_extra={"warehouse_type": "VARCHAR"}, **kwargs)


class CallEvent(BaseModel):
    """One LLM call as an application recorded it."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    event_id: str = _text("Unique per call (a uuid); the de-duplication key.", min_length=1)
    occurred_at: AwareDatetime = Field(
        description="When the call started, RFC 3339 with an offset; stored in UTC.",
        json_schema_extra={"warehouse_type": "TIMESTAMP"},
    )
    provider: str = _text("openai, anthropic, google, ... (lower case).", min_length=1)
    model: str = _text("The model as the provider names it.", min_length=1)
    input_tokens: Tokens = Field(description="ALL input tokens, cached ones included.")
    output_tokens: Tokens = Field(description="All output tokens, reasoning included.")
    cache_read_tokens: Tokens = Field(0, description="Input tokens served from the prompt cache.")
    cache_write_tokens: Tokens = Field(0, description="Input tokens written to the prompt cache.")
    reasoning_tokens: Tokens = Field(0, description="Reasoning tokens (part of output_tokens).")
    feature: str = _text("Product feature, e.g. smart-reply.", min_length=1)
    endpoint: str | None = _text("Route, e.g. /api/v1/chat.", default=None)
    environment: str = _text("production, staging, dev, ...", default="production")
    team_id: str | None = _text("Team to attribute the spend to.", default=None)
    user_id: str | None = _text("End user, for attribution.", default=None)
    prompt_version: str | None = _text("Version of the prompt template.", default=None)
    service_tier: str = _text("standard, batch, flex or priority.", default="standard")
    status: Literal["ok", "error"] = Field(
        "ok", description="ok or error.", json_schema_extra={"warehouse_type": "VARCHAR"}
    )
    attempt: StrictInt = Field(
        1,
        ge=1,
        le=INTEGER_RANGES["INTEGER"][1],
        description="1 = first try; > 1 = a retry.",
        json_schema_extra={"warehouse_type": "INTEGER"},
    )
    latency_ms: float | None = Field(
        None,
        ge=0,
        description="Wall time of the call.",
        json_schema_extra={"warehouse_type": "DOUBLE"},
    )
    cost_usd_reported: float | None = Field(
        None,
        description="The caller's own cost estimate; the warehouse prices calls itself.",
        json_schema_extra={"warehouse_type": "DOUBLE"},
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="Free-form string dimensions.",
        json_schema_extra={"warehouse_type": "JSON"},
    )
    schema_version: Literal[1] = Field(
        SCHEMA_VERSION,
        description="Version of this schema.",
        json_schema_extra={"warehouse_type": "INTEGER"},
    )

    @field_validator("schema_version", mode="before")
    @classmethod
    def _version_is_an_integer(cls, value: object) -> object:
        # Literal[1] alone takes 1.0 and True; the ingest rejects both, so the contract does too
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"schema_version must be the integer {SCHEMA_VERSION}")
        return value

    @model_validator(mode="after")
    def _token_parts_fit(self) -> CallEvent:
        for rule in token_parts_exceeding(self.__dict__):
            hint = {
                "input_tokens": "; input_tokens must include cached tokens (add Anthropic's "
                "cache_* counts to its input_tokens)",
            }.get(rule.total, f", which must include {' and '.join(rule.parts)}")
            raise ValueError(f"{' + '.join(rule.parts)} exceed {rule.total}{hint}")
        return self

    def to_json_line(self) -> str:
        """The landing-file line for this event (UTC timestamp, no trailing newline)."""
        data = self.model_dump(mode="json", exclude_none=True)
        data["occurred_at"] = self.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


#: Field name -> warehouse column type, in schema order.
WAREHOUSE_COLUMNS: dict[str, str] = {
    name: (field.json_schema_extra or {})["warehouse_type"]
    for name, field in CallEvent.model_fields.items()
}
#: Fields every line must carry.
REQUIRED_FIELDS: tuple[str, ...] = tuple(
    name for name, field in CallEvent.model_fields.items() if field.is_required()
)
#: Defaults the warehouse applies to optional fields that are absent.
FIELD_DEFAULTS: dict[str, object] = {
    name: field.default
    for name, field in CallEvent.model_fields.items()
    if not field.is_required() and field.default is not None and field.default_factory is None
}


def json_schema() -> dict:
    schema = CallEvent.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://spendwatch.dev/schemas/call-event-v1.json"
    return schema


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
