"""The call event, schema version 1: the one definition of what an application records.

One JSON object per line in the landing folder. This pydantic model is the contract: the
tracker and the traffic generator build events with it, the ingest derives its column list,
types and required fields from it (`WAREHOUSE_COLUMNS`, `REQUIRED_FIELDS`), and
`call_event.schema.json` beside this file is generated from it for non-Python writers
(`python -m spendwatch.schema > spendwatch/call_event.schema.json`; a test keeps the two equal).
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, model_validator

SCHEMA_VERSION = 1

Tokens = Annotated[StrictInt, Field(ge=0, json_schema_extra={"warehouse_type": "BIGINT"})]


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

    @model_validator(mode="after")
    def _token_parts_fit(self) -> CallEvent:
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                "cache_read_tokens + cache_write_tokens exceed input_tokens; input_tokens must "
                "include cached tokens (add Anthropic's cache_* counts to its input_tokens)"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError("reasoning_tokens exceed output_tokens, which must include them")
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
