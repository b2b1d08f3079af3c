"""The call-event contract: one pydantic model, the JSON Schema file generated from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from spendwatch.schema import REQUIRED_FIELDS, WAREHOUSE_COLUMNS, CallEvent, json_schema

GOOD = {
    "event_id": "e-1",
    "occurred_at": "2026-11-03T14:05:00+01:00",
    "provider": "openai",
    "model": "gpt-4o",
    "input_tokens": 1200,
    "output_tokens": 300,
    "feature": "smart-reply",
}


def test_schema_file_is_generated_from_the_model() -> None:
    committed = json.loads(
        (Path(__file__).parents[1] / "spendwatch" / "call_event.schema.json").read_text()
    )
    assert committed == json_schema(), (
        "spendwatch/call_event.schema.json is stale: run "
        "`python -m spendwatch.schema > spendwatch/call_event.schema.json`"
    )


def test_required_fields_and_columns_follow_design() -> None:
    assert REQUIRED_FIELDS == (
        "event_id", "occurred_at", "provider", "model", "input_tokens", "output_tokens", "feature",
    )  # fmt: skip
    assert WAREHOUSE_COLUMNS["input_tokens"] == "BIGINT"
    assert WAREHOUSE_COLUMNS["occurred_at"] == "TIMESTAMP"
    assert WAREHOUSE_COLUMNS["tags"] == "JSON"


def test_defaults_and_utc_line() -> None:
    event = CallEvent.model_validate(GOOD)
    assert (event.environment, event.status, event.attempt, event.service_tier) == (
        "production", "ok", 1, "standard",
    )  # fmt: skip
    line = json.loads(event.to_json_line())
    assert line["occurred_at"] == "2026-11-03T13:05:00Z"
    assert "endpoint" not in line  # absent optional fields stay absent


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"occurred_at": "2026-11-03T14:05:00"}, "timezone"),
        ({"input_tokens": -1}, "greater than or equal"),
        ({"input_tokens": 1.5}, "integer"),
        ({"cache_read_tokens": 1000, "cache_write_tokens": 300}, "exceed input_tokens"),
        ({"reasoning_tokens": 301}, "reasoning_tokens exceed"),
        ({"status": "failed"}, "'ok' or 'error'"),
        ({"attempt": 0}, "greater than or equal to 1"),
        ({"schema_version": 2}, "1"),
        ({"feature": ""}, "at least 1 character"),
    ],
)
def test_invalid_events_are_refused_with_a_reason(change: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CallEvent.model_validate({**GOOD, **change})


def test_missing_required_field_is_named() -> None:
    data = dict(GOOD)
    del data["model"]
    with pytest.raises(ValidationError, match="model"):
        CallEvent.model_validate(data)
